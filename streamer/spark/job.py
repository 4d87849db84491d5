"""What the driver ships to the Python workers: where the model is, never the model.

An ONNX Runtime session cannot be pickled, and a model shipped inside every task would
cost its size per task. The driver resolves and verifies the model once (``prepare``: the
same ``offline_kernel`` that ``score-file`` builds, so a model failing its sha256 and an
unreachable Redis stop the job there, before any task runs) and ships a ``Job``: the
resolved location, the sha256 the workers must find, the settings and the degraded flag.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pydantic import SecretStr

from streamer.clients import Clients
from streamer.config.settings import Settings
from streamer.model.registry import LoadedModel

# score-file's and features build's words when the feature cache goes away midway.
DEGRADED = (
    "the feature cache is unreachable; check STREAMER_REDIS_URL, or pass "
    "--allow-degraded (allow_degraded=True) to {what} with default features"
)


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to build the kernel ``score-file`` uses (picklable)."""

    location: str  # a model.onnx path, or an MLflow models:/ URI
    sha256: str
    settings: Settings
    feature_names: tuple[str, ...]
    allow_degraded: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        """The per-worker cache key: the model and every setting, secrets included (two jobs
        that differ only in the Redis URL, which is secret, must not share a client); the
        settings enter as a digest, so the key itself holds no secret."""
        return (self.location, self.sha256, fingerprint(self.settings))


def fingerprint(settings: Settings) -> str:
    """A sha256 of every setting's value, secrets revealed (they are masked in dumps)."""

    def reveal(value: object) -> object:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {k: reveal(v) for k, v in value.items()}
        return value

    values = {name: reveal(getattr(settings, name)) for name in type(settings).model_fields}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def location_of(spec: str, model: LoadedModel) -> str:
    """Where workers load ``model`` from: its resolved file (an alias that moves while the
    job runs cannot change what it scores with), or its MLflow URI."""
    return spec if spec.startswith("models:/") else str(model.path)


def prepare(settings: Settings, *, allow_degraded: bool = False) -> Job:
    """Verify the model and reach Redis on the driver, as ``score-file`` does first.

    Raises ``ModelError`` (sha256, inputs, outputs) or ``DependencyError`` (Redis down and
    not ``allow_degraded``) before Spark is asked to run anything."""
    from streamer.service.assembly import offline_kernel

    kernel = offline_kernel(Clients(settings), allow_degraded=allow_degraded)
    model = kernel.model
    location = location_of(settings.models.spec, model)
    names = tuple(model.metadata.feature_names)
    return Job(location, model.metadata.sha256, settings, names, allow_degraded)


def degraded(job: Job, what: str) -> None:
    """Stop the task (and so the job) when Redis went away and degraded is not allowed."""
    from streamer.errors import DependencyError

    if not job.allow_degraded:
        raise DependencyError(DEGRADED.format(what=what))
