"""``streamer dlq inspect``: dead letters rendered for a person (rich) or for jq (JSON)."""

from __future__ import annotations

import sys

import orjson
from rich.console import Console
from rich.table import Table

from streamer.config.settings import client_properties
from streamer.kafka import dead_letters as dlq


def inspect(bootstrap_servers: str, topic: str, *, limit: int = 20, as_json: bool = False) -> None:
    letters = list(dlq.read(bootstrap_servers, topic, config=client_properties()))
    if as_json:
        for d in letters:
            line = {
                "partition": d.partition,
                "offset": d.offset,
                "stage": d.stage,
                "error_class": d.error_class,
                "message": d.header("streamer.error.message"),
                "original_topic": d.original_topic,
                "original_offset": d.original_offset,
                "original_partition": d.header("streamer.original.partition"),
                "consumer_group": d.header("streamer.consumer.group"),
                "value_bytes": len(d.value or b""),
            }
            sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        return
    console = Console()
    table = Table(title=f"{topic}: last {min(limit, len(letters))} of {len(letters)} dead letters")
    for column in ("dlq offset", "original", "stage", "error class", "message", "bytes"):
        table.add_column(column)
    for d in letters[-limit:] if limit else []:
        original = (
            f"{d.original_topic}[{d.header('streamer.original.partition')}]@{d.original_offset}"
        )
        table.add_row(
            f"{d.partition}@{d.offset}",
            original,
            d.stage,
            d.error_class,
            d.header("streamer.error.message")[:80],
            str(len(d.value or b"")),
        )
    console.print(table)
    summary = Table(title="dead letters by reason")
    for column in ("stage", "error class", "count"):
        summary.add_column(column)
    for (stage, error_class), n in dlq.counts(letters).most_common():
        summary.add_row(stage, error_class, str(n))
    console.print(summary)
