"""``streamer topics create``: the input, output and dead-letter topics, idempotently."""

from __future__ import annotations

from typing import Annotated

import typer

from streamer.cli.common import Bootstrap, ConfigFile, clients

topics_app = typer.Typer(help="Kafka topics streamer reads and writes.", no_args_is_help=True)


@topics_app.command("create")
def create(
    bootstrap_servers: Bootstrap = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of input and output.")] = 6,
    dlq_partitions: Annotated[int, typer.Option(min=1, help="Partitions of the DLQ.")] = 1,
    replication: Annotated[int, typer.Option(min=1, help="Replication factor.")] = 1,
    retention_hours: Annotated[
        float, typer.Option(min=0, help="Retention of input and output (0: broker default).")
    ] = 0,
    dlq_retention_hours: Annotated[
        float, typer.Option(min=0, help="Retention of the DLQ (0: broker default).")
    ] = 336,
    config: ConfigFile = None,
) -> None:
    """Create STREAMER_INPUT_TOPIC, STREAMER_OUTPUT_TOPIC and the DLQ; existing ones are kept."""
    from streamer.kafka.topics import TopicSpec, create_topics
    from streamer.service.checks import check_kafka

    factory = clients(
        config,
        kafka_bootstrap_servers=bootstrap_servers,
        require=("kafka_bootstrap_servers", "input_topic", "output_topic"),
    )
    s = factory.settings
    specs = [
        TopicSpec(s.input_topic, partitions, replication, retention_hours),
        TopicSpec(s.output_topic, partitions, replication, retention_hours),
        TopicSpec(s.dead_letter_topic, dlq_partitions, replication, dlq_retention_hours),
    ]
    admin = factory.admin()
    check_kafka(admin, s, {}, errors=factory.errors)  # a dead broker fails fast, in one line
    for name, outcome in create_topics(admin, specs, errors=factory.errors).items():
        typer.echo(f"{name}: {outcome}", err=True)
