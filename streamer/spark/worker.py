"""Per Python worker: the model loaded and verified once, one Redis client, reused by tasks.

Spark reuses a Python worker for many tasks (``spark.python.worker.reuse``, on by
default), so module state outlives a task. The model, its ONNX Runtime session and the
Redis feature cache are kept here, keyed by the job's model location, sha256 and settings;
a task builds only a fresh ``ScoringKernel`` around them with its own in-memory velocity
state, so a task retried on the same worker starts from nothing and gives the same output.

ONNX Runtime gets ``spark.task.cpus`` intra-op threads (1 by default): Spark already runs
one task per core, and more threads per session would oversubscribe the executor.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from streamer.clients import Clients
from streamer.errors import ModelError
from streamer.features.cache import FeatureCache
from streamer.features.enrichment import OfflineVelocity
from streamer.model.registry import LoadedModel, load_model
from streamer.model.scorer import Scorer
from streamer.scoring.kernel import ScoringKernel
from streamer.scoring.reasons import reason_settings
from streamer.service.assembly import feature_cache
from streamer.spark.job import Job


@dataclass(frozen=True)
class Loaded:
    """A worker's verified model, its session and its feature cache (one Redis client)."""

    model: LoadedModel
    scorer: Scorer
    cache: FeatureCache


_LOADED: dict[tuple[str, str, str], Loaded] = {}
_LOCK = threading.Lock()
LOADS: Counter[str] = Counter()
"""How many times this worker process loaded and verified each model location."""


def task_cpus() -> int:
    """The cores Spark gives this task (``spark.task.cpus``), 1 outside a task."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return max(1, int(context.cpus())) if context is not None else 1


def loaded(job: Job) -> Loaded:
    """The job's model and feature cache, loaded and verified on first use in this worker."""
    with _LOCK:
        found = _LOADED.get(job.key)
        if found is None:
            found = _load(job)
            _LOADED[job.key] = found
            LOADS[job.location] += 1
        return found


def _load(job: Job) -> Loaded:
    model = load_model(job.location, job.settings.models.models_dir)
    if model.metadata.sha256 != job.sha256:
        raise ModelError(
            f"model {job.location}: the worker found sha256 {model.metadata.sha256[:12]}…, "
            f"the driver verified {job.sha256[:12]}…; the model changed while the job ran"
        )
    scorer = Scorer(model, intra_op_threads=task_cpus())
    cache = feature_cache(Clients(job.settings), model, timeout_ms=2000)
    return Loaded(model, scorer, cache)


def task_kernel(job: Job) -> ScoringKernel:
    """A kernel for one task: the worker's model and Redis client, the velocity state of
    this task's own rows (``OfflineVelocity``, as ``score-file`` and ``features build``)."""
    found = loaded(job)
    s = job.settings
    source = OfflineVelocity(found.cache) if s.velocity_state else found.cache
    reasons = reason_settings(s.reasons, s.reasons_deny)
    return ScoringKernel(
        found.model,
        source,
        scorer=found.scorer,
        feature_logging=s.feature_logging,
        reasons=reasons,
    )
