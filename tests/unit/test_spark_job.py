"""What a Spark job ships to its workers, and how a worker tells two jobs apart."""

from __future__ import annotations

import pickle
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from streamer.config.settings import Settings
from streamer.spark.job import Job

_HOSTS = st.from_regex(r"[a-z]{1,12}", fullmatch=True)


def _job(settings: Settings) -> Job:
    return Job("/models/fraud-gbt/2/model.onnx", "ab" * 32, settings, ("amount",))


@given(_HOSTS, _HOSTS)
def test_jobs_differing_only_in_a_secret_redis_url_have_different_worker_keys(
    one: str, other: str
) -> None:
    first = _job(Settings(redis_url=f"redis://:{one}@cache:6379/0"))
    second = _job(Settings(redis_url=f"redis://:{other}@cache:6379/0"))

    assert (first.key == second.key) == (one == other)
    assert "redis://" not in "".join(first.key)  # the URL enters as a digest only


def test_a_job_survives_pickling_with_its_key(tmp_path: Path) -> None:
    job = _job(Settings(redis_url="redis://:secret@cache:6379/0", models_dir=tmp_path))

    again = pickle.loads(pickle.dumps(job))

    assert again == job
    assert again.key == job.key
