"""``streamer dlq inspect``: dead letters rendered for a person (rich tables)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from streamer.kafka import dead_letters as dlq


def show(topic: str, letters: list[dlq.DeadLetter], limit: int) -> None:
    """The newest ``limit`` dead letters, then counts by stage and error class."""
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
