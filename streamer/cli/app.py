"""The ``streamer`` command line (Typer): run, produce, consume, features, version."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from streamer import __version__
from streamer.codec.wire import WireFormat
from streamer.errors import StreamerError

app = typer.Typer(
    help="Real-time card-payment fraud scoring on Kafka, Redis and ONNX Runtime.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
features_app = typer.Typer(help="The Redis feature cache.", no_args_is_help=True)
app.add_typer(features_app, name="features")
dlq_app = typer.Typer(help="Dead letters: inspect and replay.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
models_app = typer.Typer(help="The model registry in STREAMER_MODELS_DIR.", no_args_is_help=True)
app.add_typer(models_app, name="models")
ModelsDir = Annotated[Path, typer.Option("--models-dir", envvar="STREAMER_MODELS_DIR")]

_state = {"debug": False}

Bootstrap = Annotated[
    str,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        envvar="STREAMER_KAFKA_BOOTSTRAP_SERVERS",
        help="Kafka bootstrap servers.",
    ),
]
Format = Annotated[
    str,
    typer.Option(
        "--format", "-f", envvar="STREAMER_INPUT_FORMAT", help="confluent | single-object | raw"
    ),
]
RedisPassword = Annotated[
    str,
    typer.Option(envvar="STREAMER_REDIS_PASSWORD", show_default=False, help="Redis AUTH password."),
]
RegistryUrl = Annotated[
    str, typer.Option("--schema-registry-url", envvar="STREAMER_SCHEMA_REGISTRY_URL")
]
Seed = Annotated[int, typer.Option(help="Seed of the synthetic population (cards, merchants).")]
Cards = Annotated[int, typer.Option(help="Cards in the synthetic population.")]
Merchants = Annotated[int, typer.Option(help="Merchants in the synthetic population.")]


def _wire_format(value: str) -> WireFormat:
    if value not in ("confluent", "single-object", "raw"):
        raise typer.BadParameter(f"{value!r}: use confluent, single-object or raw")
    return value  # type: ignore[return-value]


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["debug"] = debug


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings file.")
    ] = None,
) -> None:
    """Consume, score and publish until SIGTERM/SIGINT (settings: STREAMER_* variables)."""
    from streamer import service
    from streamer.config.settings import load_settings
    from streamer.observability import logs

    settings = load_settings(config)
    logs.configure(settings.log_level)
    service.run(settings)


@app.command()
def produce(
    topic: Annotated[str, typer.Option("--topic", "-t", envvar="STREAMER_INPUT_TOPIC")],
    bootstrap_servers: Bootstrap,
    count: Annotated[int, typer.Option("--count", "-n", help="Events to send.")] = 1000,
    rate: Annotated[float, typer.Option(help="Events per second (0: as fast as possible).")] = 0.0,
    fmt: Format = "single-object",
    schema_registry_url: RegistryUrl = "",
    seed: Seed = 7,
    cards: Cards = 5000,
    merchants: Merchants = 500,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    trace_sample_ratio: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of events whose trace is sampled.")
    ] = 1.0,
) -> None:
    """Send synthetic TransactionEvents (keyed by card id) with W3C traceparent headers."""
    from streamer.config.settings import client_properties
    from streamer.dev.generator import produce_synthetic

    sent = produce_synthetic(
        producer_config=client_properties(),
        topic=topic,
        bootstrap_servers=bootstrap_servers,
        count=count,
        rate=rate,
        fmt=_wire_format(fmt),
        schema_registry_url=schema_registry_url,
        seed=seed,
        n_cards=cards,
        n_merchants=merchants,
        progress=not quiet,
        trace_sample_ratio=trace_sample_ratio,
    )
    typer.echo(f"sent {sent} events to {topic}", err=True)


@app.command()
def consume(
    topic: Annotated[str, typer.Option("--topic", "-t", envvar="STREAMER_OUTPUT_TOPIC")],
    bootstrap_servers: Bootstrap,
    fmt: Annotated[
        str, typer.Option("--format", "-f", envvar="STREAMER_OUTPUT_FORMAT")
    ] = "single-object",
    schema: Annotated[
        str, typer.Option(help="Reader schema: scored_event, transaction_event or a path.")
    ] = "",
    schema_registry_url: RegistryUrl = "",
    count: Annotated[
        int, typer.Option("--count", "-n", help="Stop after this many (0: follow).")
    ] = 0,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
) -> None:
    """Tail a topic, decoded, one JSON object per line (for people, and for jq)."""
    from streamer.cli.consume import tail

    tail(
        topic=topic,
        bootstrap_servers=bootstrap_servers,
        fmt=_wire_format(fmt),
        schema=schema,
        schema_registry_url=schema_registry_url,
        count=count,
        from_beginning=from_beginning,
    )


@features_app.command("load")
def features_load(
    redis_url: Annotated[
        str, typer.Option(envvar="STREAMER_REDIS_URL")
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[str, typer.Option(envvar="STREAMER_REDIS_KEY_PREFIX")] = "",
    file: Annotated[Path | None, typer.Option("--file", help="JSON Lines feature file.")] = None,
    synthetic: Annotated[bool, typer.Option(help="Generate the synthetic set instead.")] = False,
    seed: Seed = 7,
    cards: Cards = 5000,
    merchants: Merchants = 500,
    redis_password: RedisPassword = "",
) -> None:
    """Write card and merchant features to Redis, from a file or the synthetic population."""
    from streamer.features.loader import load_command

    if (file is None) == (not synthetic):
        raise typer.BadParameter("give exactly one of --file or --synthetic")
    written = load_command(
        redis_url=redis_url,
        prefix=prefix,
        file=file,
        seed=seed,
        n_cards=cards,
        n_merchants=merchants,
        password=redis_password,
    )
    typer.echo(f"wrote {written}", err=True)


DlqTopic = Annotated[
    str, typer.Option("--topic", "-t", envvar="STREAMER_DLQ_TOPIC", help="Dead-letter topic.")
]


@dlq_app.command("inspect")
def dlq_inspect(
    topic: DlqTopic,
    bootstrap_servers: Bootstrap,
    limit: Annotated[int, typer.Option(help="Dead letters to list (newest last).")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per dead letter.")
    ] = False,
) -> None:
    """List dead letters with their reasons, and counts by stage and error class."""
    from streamer.cli.dlq_view import inspect

    inspect(bootstrap_servers, topic, limit=limit, as_json=as_json)


@dlq_app.command("replay")
def dlq_replay(
    topic: DlqTopic,
    bootstrap_servers: Bootstrap,
    to: Annotated[
        str, typer.Option(help="Target topic (default: each record's original topic).")
    ] = "",
    error_class: Annotated[str, typer.Option(help="Only dead letters of this error class.")] = "",
    from_offset: Annotated[int | None, typer.Option(help="Lowest original input offset.")] = None,
    to_offset: Annotated[int | None, typer.Option(help="Highest original input offset.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, send nothing.")] = False,
) -> None:
    """Send dead letters back to the input topic (after a fix), optionally filtered."""
    from confluent_kafka import Producer

    from streamer.config.settings import client_properties
    from streamer.kafka import dead_letters as dlq

    properties = client_properties()
    keep = dlq.selector(error_class or None, from_offset, to_offset)
    letters = [d for d in dlq.read(bootstrap_servers, topic, config=properties) if keep(d)]
    if dry_run:
        typer.echo(f"would replay {len(letters)} dead letters from {topic}", err=True)
        return
    producer = Producer(
        {"bootstrap.servers": bootstrap_servers, "enable.idempotence": True, **properties}
    )
    sent = dlq.replay(letters, producer, target=to or None, dlq_topic=topic)
    typer.echo(f"replayed {sent} dead letters from {topic}", err=True)


@app.command("score-file")
def score_file(
    source: Annotated[Path, typer.Argument(help="Avro container file of TransactionEvents.")],
    target: Annotated[Path, typer.Argument(help="Avro container file of ScoredEvents to write.")],
    rejects: Annotated[
        Path | None,
        typer.Option(help="JSON Lines of invalid events (default: <target>.rejects.jsonl)."),
    ] = None,
    redis_url: Annotated[
        str, typer.Option(envvar="STREAMER_REDIS_URL")
    ] = "redis://127.0.0.1:6379/0",
    prefix: Annotated[str, typer.Option(envvar="STREAMER_REDIS_KEY_PREFIX")] = "",
    model: Annotated[str, typer.Option(envvar="STREAMER_MODEL")] = "fraud-gbt",
    models_dir: ModelsDir = Path("models"),
    chunk: Annotated[
        int, typer.Option(min=1, help="Events per Redis round trip and model run.")
    ] = 5000,
    allow_degraded: Annotated[
        bool, typer.Option(help="Score with default features if Redis is unreachable.")
    ] = False,
    redis_password: RedisPassword = "",
) -> None:
    """Batch deployment: score a file (backfills, replays) with the stream's code and model."""
    from streamer.backfill import score_file as run_file
    from streamer.features.breaker import CircuitBreaker
    from streamer.features.cache import FeatureCache, make_redis_client
    from streamer.model.registry import load_model
    from streamer.model.scorer import Scorer

    loaded = load_model(model, models_dir)
    cache = FeatureCache(
        make_redis_client(redis_url, password=redis_password or None, timeout_ms=2000),
        prefix=prefix,
        card_defaults=loaded.card_defaults,
        merchant_defaults=loaded.merchant_defaults,
        breaker=CircuitBreaker(),
    )
    result = run_file(
        source,
        target,
        cache=cache,
        scorer=Scorer(loaded),
        rejects=rejects,
        chunk_size=chunk,
        allow_degraded=allow_degraded,
    )
    rate = result.read / result.seconds if result.seconds else 0.0
    typer.echo(
        f"{result.read} read, {result.scored} scored {result.decisions}, "
        f"{result.rejected} rejected, {result.degraded} degraded, "
        f"{result.seconds:.1f}s ({rate:,.0f} events/s)",
        err=True,
    )


@models_app.command("list")
def models_list(models_dir: ModelsDir = Path("models")) -> None:
    """Every registered model version with its held-out metrics and thresholds."""
    from rich.console import Console
    from rich.table import Table

    from streamer.model.registry import list_models

    table = Table(title=f"models in {models_dir}")
    for column in ("model", "created", "ROC-AUC", "PR-AUC", "review", "decline", "problem"):
        table.add_column(column)
    for entry in list_models(models_dir):
        meta = entry.metadata
        if meta is None:
            table.add_row(f"{entry.name}@{entry.version}", "", "", "", "", "", entry.problem or "")
            continue
        table.add_row(
            f"{meta.name}@{meta.version}",
            meta.created_at.date().isoformat(),
            f"{meta.metrics.get('roc_auc', float('nan')):.3f}",
            f"{meta.metrics.get('pr_auc', float('nan')):.3f}",
            f"{meta.thresholds.review:.4f}",
            f"{meta.thresholds.decline:.4f}",
            "",
        )
    Console().print(table)


@models_app.command("verify")
def models_verify(
    spec: Annotated[str, typer.Argument(help="name, name@version or a path")] = "fraud-gbt",
    models_dir: ModelsDir = Path("models"),
) -> None:
    """Load a model as `streamer run` would: hash, ONNX signature and features checked."""
    from streamer.model.registry import load_model
    from streamer.model.scorer import Scorer

    model = load_model(spec, models_dir)
    Scorer(model)  # ONNX Runtime accepts it
    meta = model.metadata
    typer.echo(
        f"{meta.name}@{meta.version} ok: sha256 {meta.sha256[:12]}…, "
        f"{len(meta.feature_names)} features, {model.path}"
    )


@app.command()
def version() -> None:
    """Print the version of streamer and of the libraries it runs on."""
    import confluent_kafka
    import onnxruntime

    typer.echo(
        f"streamer {__version__} (confluent-kafka {confluent_kafka.version()[0]}, "
        f"librdkafka {confluent_kafka.libversion()[0]}, onnxruntime {onnxruntime.__version__}, "
        f"python {sys.version.split()[0]})"
    )


def main() -> None:
    """Entry point: one clear line and a documented exit code for anything that stops us."""
    try:
        app(standalone_mode=False)
    except StreamerError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"streamer: {exc}", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.BadParameter as exc:  # a click.UsageError: show it like click would
        exc.show()
        sys.exit(2)
