"""Running a ``streamer`` command in a child process that reports, as it exits, every
module it imported: what the fast-start tests check a command against."""

from __future__ import annotations

import json
from pathlib import Path

HEAVY = (
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "mlflow",
    "pyarrow",
    "pandas",
    "sklearn",
    "scipy",
    "lightgbm",
    "onnxmltools",
    "opentelemetry.exporter",
    "opentelemetry.sdk",
    "grpc",
    "rich",
)
"""Modules of paths a plain ``streamer run`` never takes (the scoring API, MLflow,
Parquet, training, trace export and OpenTelemetry's SDK behind it (redis-py's metrics
too), tables drawn for a terminal) or that cost seconds to import (LightGBM's Python
package imports scikit-learn, SciPy and pandas)."""


def command(report: Path, *args: str) -> list[str]:
    """``python -c`` running ``streamer ARGS`` and writing its modules to ``report`` at exit."""
    code = (
        "import atexit, json, pathlib, sys\n"
        f"report = pathlib.Path({str(report)!r})\n"
        "atexit.register(lambda: report.write_text(json.dumps(sorted(sys.modules))))\n"
        f"sys.argv = ['streamer', *{list(args)!r}]\n"
        "from streamer.cli.app import main\n"
        "main()\n"
    )
    return ["-c", code]


def imported(report: Path, prefixes: tuple[str, ...]) -> list[str]:
    """The modules in ``report`` that are, or are inside, one of ``prefixes``."""
    modules: list[str] = json.loads(report.read_text())
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)]
