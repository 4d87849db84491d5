"""``python -m streamer.spark score|features IN OUT``: the ``spark-submit`` entry point.

IN and OUT are Parquet (a file or a folder of files, local or in object storage: any path
Spark reads, ``s3a://``, ``abfss://``, ``gs://``, ``dbfs:/``), or Avro when the path ends
in ``.avro`` and the session has spark-avro (``--packages
org.apache.spark:spark-avro_2.13:<Spark version>`` on spark-submit). Settings come from the
``STREAMER_*`` environment (or ``--config``), as for every streamer command.

Run without ``spark-submit`` (``python -m streamer.spark`` alone), it starts a local
session (``--master``, default ``local[*]``) whose Python workers use this interpreter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

Source = Annotated[str, typer.Argument(help="TransactionEvents: Parquet, or .avro (spark-avro).")]
Target = Annotated[str, typer.Argument(help="Where to write; it must not exist yet.")]
Model = Annotated[str | None, typer.Option(help="Model spec; default STREAMER_MODEL.")]
Degraded = Annotated[
    bool, typer.Option(help="Go on with default features if Redis is unreachable.")
]
Master = Annotated[str, typer.Option(help="Spark master when not run by spark-submit.")]
Config = Annotated[Path | None, typer.Option(help="YAML settings file.")]


@app.command("score")
def score_command(
    source: Source,
    target: Target,
    model: Model = None,
    allow_degraded: Degraded = False,
    master: Master = "local[*]",
    config: Config = None,
) -> None:
    """Score every event: one row out per row in (rejections carry error_class)."""
    from streamer.spark.scoring import score

    _run(score, source, target, model, allow_degraded, master, config)


@app.command("features")
def features_command(
    source: Source,
    target: Target,
    model: Model = None,
    allow_degraded: Degraded = False,
    master: Master = "local[*]",
    config: Config = None,
) -> None:
    """Each event's model input, as `streamer features build` writes it."""
    from streamer.spark.features import build_features

    _run(build_features, source, target, model, allow_degraded, master, config)


def _run(
    job: Callable[..., Any],
    source: str,
    target: str,
    model: str | None,
    allow_degraded: bool,
    master: str,
    config: Path | None,
) -> None:
    """Read ``source``, run ``job`` on it with the settings, write ``target``."""
    from streamer.config.loader import load_settings

    spark = session(master)
    settings = load_settings(config)
    write(job(read(spark, source), model, settings, allow_degraded=allow_degraded), target)


def session(master: str) -> Any:
    """The spark-submit session, or a local one whose workers run this interpreter."""
    from pyspark import SparkConf, SparkContext
    from pyspark.sql import SparkSession

    SparkContext._ensure_initialized()  # under spark-submit: joins its JVM, which holds
    conf = SparkConf()  # its --master and --conf; alone: a fresh JVM, nothing set
    if not conf.contains("spark.master"):
        conf.setMaster(master)
    if conf.get("spark.master", "").startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return SparkSession.builder.config(conf=conf).appName("streamer").getOrCreate()


def read(spark: Any, path: str) -> Any:
    if path.rstrip("/").endswith(".avro"):
        return spark.read.format("avro").load(path)
    return spark.read.parquet(path)


def write(df: Any, path: str) -> None:
    """Parquet (zstd), or Avro (deflate: readable by fastavro, and so ``score-file``'s reader
    and ``streamer dlq``, without a snappy library)."""
    if path.rstrip("/").endswith(".avro"):
        df.write.format("avro").option("compression", "deflate").mode("errorifexists").save(path)
    else:
        df.write.option("compression", "zstd").mode("errorifexists").parquet(path)


def main() -> None:
    from streamer.errors import StreamerError

    try:
        app()
    except StreamerError as exc:
        typer.echo(f"streamer.spark: {exc}", err=True)
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
