"""Batch deployment: score a file of transactions with the stream's kernel.

Backfills, replays and model comparisons read a file of TransactionEvents (an Avro
container file, any compatible writer schema, or a Parquet file: ``formats``), score it in
chunks through the same ``ScoringKernel`` as the stream (``run``) and write ScoredEvents in
the format the target's extension names. Nothing is silently dropped: rejected events go
to a JSON Lines rejects file with their reason; a failed run leaves no output behind.
"""

from __future__ import annotations

from streamer.backfill.formats import check_source
from streamer.backfill.records import epoch_millis
from streamer.backfill.run import OFFLINE_PARTITION, FileScore, score_file

__all__ = ["OFFLINE_PARTITION", "FileScore", "check_source", "epoch_millis", "score_file"]
