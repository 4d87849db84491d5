"""``streamer produce``: synthetic TransactionEvents for demos, tests and load."""

from __future__ import annotations

from typing import Annotated

import typer

from streamer.cli.common import (
    Bootstrap,
    Cards,
    ConfigFile,
    Merchants,
    RegistryUrl,
    Seed,
    WireFormatOption,
    topic_command,
)


def produce(
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="[default: STREAMER_INPUT_TOPIC]")
    ] = None,
    bootstrap_servers: Bootstrap = None,
    count: Annotated[int, typer.Option("--count", "-n", min=0, help="Events to send.")] = 1000,
    rate: Annotated[
        float, typer.Option(min=0.0, help="Events per second (0: as fast as possible).")
    ] = 0.0,
    fmt: WireFormatOption = None,
    schema_registry_url: RegistryUrl = None,
    seed: Seed = 7,
    cards: Cards = 5000,
    merchants: Merchants = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    trace_sample_ratio: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events whose trace is sampled.")
    ] = 1.0,
    config: ConfigFile = None,
) -> None:
    """Send synthetic TransactionEvents (keyed by card id) with W3C traceparent headers."""
    from streamer.codec.schemas import transaction_schema
    from streamer.dev.generator import produce_synthetic
    from streamer.service.assembly import topic_encoder
    from streamer.service.checks import check_output_schema

    factory, target, registry = topic_command(
        config,
        topic,
        "input_topic",
        kafka_bootstrap_servers=bootstrap_servers,
        schema_registry_url=schema_registry_url,
        input_format=fmt,
    )
    s = factory.settings
    encoder = topic_encoder(s, registry, s.input_format, target, transaction_schema())
    check_output_schema(encoder)
    sent = produce_synthetic(
        factory.producer(**{"linger.ms": 10}),
        encoder,
        topic=target,
        count=count,
        rate=rate,
        seed=seed,
        n_cards=cards,
        n_merchants=merchants,
        progress=not quiet,
        trace_sample_ratio=trace_sample_ratio,
    )
    typer.echo(f"sent {sent} events to {target}", err=True)
