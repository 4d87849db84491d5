"""``streamer monitor``: late labels joined to served scores, measured per model version.

``run`` consumes the scored topic and the labels topic (its own consumer group,
``STREAMER_MONITOR_GROUP_ID``) into the join state in Redis and serves the performance
gauges on the metrics port; ``report`` prints performance over an event-time range;
``export`` writes the labelled events of a range to Parquet, the next training set.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli.common import ConfigFile, clients

monitor_app = typer.Typer(help=__doc__.split("\n\n")[0], no_args_is_help=True)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
Since = Annotated[
    str,
    typer.Option(
        help="Start of the event-time range: ISO date/time (UTC), epoch ms, or an age (7d, 12h)."
    ),
]
Until = Annotated[str, typer.Option(help="End of the event-time range (same forms); default now.")]


def parse_when(text: str, now_ms: int) -> int:
    """Epoch millis of ``text``: an age before now (``7d``, ``36h``, ``2w``), epoch millis,
    or an ISO 8601 date or date-time (UTC unless it says otherwise)."""
    text = text.strip()
    relative = _RELATIVE.match(text)
    if relative:
        return now_ms - int(float(relative.group(1)) * _UNIT_MS[relative.group(2)])
    if text.isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a date/time, epoch ms or age (7d, 12h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _range(since: str, until: str) -> tuple[int, int]:
    now = time.time_ns() // 1_000_000
    start, end = parse_when(since, now), parse_when(until, now) if until else now
    if end <= start:
        raise typer.BadParameter("--until must be after --since", param_hint="--until")
    return start, end


def _state(config: Path | None, require: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """The client factory and the join state, Redis checked to answer (exit 3 if not)."""
    from streamer.config.redaction import redact_url
    from streamer.errors import DependencyError
    from streamer.features.redis_client import REDIS_ERRORS
    from streamer.monitor.state import JoinState

    factory = clients(config, require=require)
    s = factory.settings
    client = factory.redis(timeout_ms=5000)
    try:
        client.ping()
    except REDIS_ERRORS as exc:
        where = redact_url(s.redis_url.get_secret_value())
        raise DependencyError(
            f"Redis at {where}: {type(exc).__name__}: {exc}; check STREAMER_REDIS_URL"
        ) from None
    horizon_ms = int(s.label_horizon_days * 86_400_000)
    return factory, JoinState(client, s.redis_key_prefix, horizon_ms)


@monitor_app.command()
def run(
    window_hours: Annotated[
        float,
        typer.Option(min=1, help="Gauges compare this event-time window with the one before."),
    ] = 168.0,
    refresh_s: Annotated[
        float, typer.Option(min=0.1, help="Recompute the gauges this often.")
    ] = 60.0,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    config: ConfigFile = None,
) -> None:
    """Join labels to scored events until SIGTERM/SIGINT; gauges on the metrics port."""
    from prometheus_client import CollectorRegistry

    from streamer.observability import logs
    from streamer.service.runner import StopFlag

    factory, state = _state(config, require=("kafka_bootstrap_servers", "output_topic"))
    s = factory.settings
    logs.configure(s.log_level, json=s.log_format == "json")
    prometheus = CollectorRegistry()
    loop = _loop(factory, state, prometheus)
    loop.window_ms, loop.refresh_s = int(window_hours * 3_600_000), refresh_s
    loop.batch_size = batch_size
    server = _ops_server(s.metrics_port, prometheus, loop)
    stop = StopFlag()
    stop.install()
    typer.echo(
        f"monitor: {s.output_topic} + {s.labels_topic} as group {s.monitor_group_id}, "
        f"metrics on :{server.port}",
        err=True,
    )
    try:
        loop.run(stop)
    finally:
        server.close()


def _loop(factory: Any, state: Any, prometheus: Any) -> Any:
    """The monitor's loop on checked topics and registry: consumer, decoders, gauges."""
    from streamer.cli.consume import _decoder
    from streamer.monitor.gauges import MonitorMetrics
    from streamer.monitor.labels import make_label_decoder
    from streamer.monitor.loop import MonitorLoop
    from streamer.service.checks import check_kafka, check_schema_registry

    s = factory.settings
    topics = {"STREAMER_OUTPUT_TOPIC": s.output_topic, "STREAMER_LABELS_TOPIC": s.labels_topic}
    check_kafka(factory.admin(), s, topics, errors=factory.errors)
    registry = factory.schema_registry()
    check_schema_registry(s, registry)
    return MonitorLoop(
        consumer=factory.consumer(group_id=s.monitor_group_id),
        state=state,
        scored_decoder=_decoder(s.output_format, None, registry, s),
        label_decoder=make_label_decoder(
            s.input_format,
            registry=registry,
            max_bytes=s.max_message_bytes,
            unknown_id_ttl_s=s.schema_registry_unknown_id_ttl_s,
        ),
        scored_topic=s.output_topic,
        labels_topic=s.labels_topic,
        metrics=MonitorMetrics(prometheus),
        window_ms=168 * 3_600_000,
    )


def _ops_server(port: int, registry: Any, loop: Any) -> Any:
    from streamer.observability.health import OpsServer, Probes

    probes = Probes(
        heartbeat=lambda: loop.heartbeat,
        subscribed=lambda: True,
        assigned=lambda: 1,
        model_present=lambda: True,
        redis_reachable=lambda: True,
        breaker_state=lambda: "closed",
        stale_after_s=120.0,
    )
    return OpsServer(port, registry, probes)


@monitor_app.command()
def report(
    since: Since = "7d",
    until: Until = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    config: ConfigFile = None,
) -> None:
    """Precision, recall, ROC-AUC and PR-AUC per model version over an event-time range."""
    import orjson

    from streamer.monitor.report import read_window, render_table, report_json

    start, end = _range(since, until)
    _, state = _state(config)
    result = report_json(read_window(state, start, end), state.interner)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        return
    from rich.console import Console

    Console().print(render_table(result))


@monitor_app.command()
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    since: Since = "30d",
    until: Until = "",
    config: ConfigFile = None,
) -> None:
    """Write the labelled events of an event-time range to Parquet (the next training set)."""
    from streamer.monitor.export import export_window
    from streamer.monitor.report import read_window

    start, end = _range(since, until)
    factory, state = _state(config)
    done = export_window(read_window(state, start, end), state, out, factory.settings.models_dir)
    typer.echo(
        f"wrote {done.rows} labelled events to {out} ({done.with_features} with logged inputs)"
    )
    if done.rebuild:
        typer.echo(
            f"{done.rows - done.with_features} events have no logged inputs "
            "(STREAMER_FEATURE_LOGGING was off): rebuild these offline with "
            "`streamer features build`:"
        )
        for model, names in sorted(done.rebuild.items()):
            typer.echo(f"  {model}: {', '.join(names)}")
