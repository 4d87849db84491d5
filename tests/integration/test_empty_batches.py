"""A batch with nothing left to score asks Redis nothing and adds no rows.

A chunk whose every row is rejected (the last chunk of a history holding one bad row, a
micro-batch of undecodable messages) has no key to read: Redis refuses an MGET without
keys, which must not count as an outage, and ``features build`` must not add an empty
table that cannot be joined to the others.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from streamer.backfill.history import build
from streamer.clients import Clients
from streamer.config.settings import Settings
from streamer.service.assembly import offline_kernel
from tests.integration.backfill_files import REPO, as_written, synthetic_events


def test_a_chunk_of_rejected_rows_asks_redis_nothing_and_the_build_goes_on(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    rows = [as_written(e) for e in synthetic_events(6, seed=9)]
    rows.append(dict(rows[0], transaction_id="bad", currency="XXQ"))  # alone in the last chunk
    history = tmp_path / "history.parquet"
    pq.write_table(pa.Table.from_pylist(rows), history)
    models = REPO / "models"
    settings = Settings(redis_url=redis_url, redis_key_prefix=redis_prefix, models_dir=models)
    kernel = offline_kernel(Clients(settings), allow_degraded=False)

    result = build(history, tmp_path / "features.parquet", kernel=kernel, chunk_size=3)

    assert (result.read, result.built, result.rejected) == (7, 6, 1)
    assert pq.read_table(tmp_path / "features.parquet").num_rows == 6
    cache = kernel.features.inner  # type: ignore[attr-defined]
    assert cache.stats.errors == 0
    assert cache.breaker.state == "closed"
