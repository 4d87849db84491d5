"""The promotion gate's verdict: is a candidate version fit to replace the champion?

Pure: given both models' metadata and what each did on the same replayed events (scores,
decisions, the time of every batch), ``judge`` runs each check against its bound and
says why it passed or failed. The replay itself (``gate_replay``) does the I/O. The
report is JSON for machines (CI reads ``passed``; ``promote --require-gate`` checks that
it was made for exactly this candidate and this champion, by name, version and sha256)
and a table for people.

Checks, each with a bound a team can change:
- signature: both take the same features (any order) and the candidate loads verified;
- metrics: held-out ROC-AUC and PR-AUC not worse than the champion's beyond a tolerance;
- agreement: the share of events given the same decision;
- review / decline rates: how much the share of each decision moves, relative to the
  champion's share (with a small absolute floor);
- latency: the p99 time of the model run for one batch (the features are the same for
  both versions; timing them too would only add Redis noise).

Every check carries its bound twice: ``bound`` in words for people, and ``limit`` (a number)
with ``limit_kind`` (``min``: value >= limit, ``max``: value <= limit, ``max_abs``: |value|
<= limit) for machines. The report's ``rates`` holds each side's absolute REVIEW and DECLINE
shares, since a relative change alone hides whether 0.2% became 0.3% or 20% became 30%.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from streamer.errors import ConfigError
from streamer.model.gate_bounds import Bounds
from streamer.model.metadata import LoadedModel


@dataclass(frozen=True)
class Replay:
    """One model's run over the replayed events: decisions per event, ms per batch."""

    decisions: npt.NDArray[np.str_]
    batch_ms: tuple[float, ...]

    def rate(self, decision: str) -> float:
        return float(np.mean(self.decisions == decision)) if len(self.decisions) else 0.0

    def p99_ms(self) -> float:
        return float(np.percentile(self.batch_ms, 99)) if self.batch_ms else 0.0


class ModelRef(BaseModel):
    """Which exact model a report speaks of: its name and version, and the sha256 of the
    ONNX bytes that were actually loaded and scored (not a version number a cache trusted)."""

    model_config = ConfigDict(frozen=True)
    spec: str
    name: str
    version: str
    sha256: str

    @classmethod
    def of(cls, spec: str, model: LoadedModel) -> ModelRef:
        meta = model.metadata
        scored = hashlib.sha256(model.onnx_bytes).hexdigest()
        return cls(spec=spec, name=meta.name, version=meta.version, sha256=scored)

    def same_version(self, other: ModelRef) -> bool:
        return (self.name, self.version, self.sha256) == (other.name, other.version, other.sha256)

    def mismatch(self, other: ModelRef) -> str | None:
        """Why ``other`` (the model as it is now) is not the one this report scored."""
        if (self.name, self.version) != (other.name, other.version):
            return (
                f"it was made for {self.name}@{self.version}, "
                f"and {other.spec} is now {other.name}@{other.version}"
            )
        if self.sha256 != other.sha256:
            return f"it scored sha256 {self.sha256}, and {other.spec} is now sha256 {other.sha256}"
        return None


class Check(BaseModel):
    """One check: what was measured, the bound, and whether it held."""

    model_config = ConfigDict(frozen=True)
    name: str
    passed: bool
    value: float | str
    bound: str
    detail: str = ""
    limit: float | None = None  # the bound as a number (None: no number, e.g. signature)
    limit_kind: Literal["min", "max", "max_abs"] | None = None


class Shares(BaseModel):
    """Absolute shares of events given each flagging decision (0.061 is 6.1%)."""

    model_config = ConfigDict(frozen=True)
    review: float
    decline: float

    @classmethod
    def of(cls, run: Replay) -> Shares:
        return cls(review=round(run.rate("REVIEW"), 6), decline=round(run.rate("DECLINE"), 6))


class Rates(BaseModel):
    """Both sides' shares over the same replayed events."""

    model_config = ConfigDict(frozen=True)
    candidate: Shares
    champion: Shares


class GateReport(BaseModel):
    """The gate's verdict, written as JSON by ``streamer models gate --report``."""

    model_config = ConfigDict(frozen=True)
    passed: bool
    created_at: datetime
    events: int
    candidate: ModelRef
    champion: ModelRef
    checks: tuple[Check, ...]
    rates: Rates | None = None  # None only in reports written before it was recorded

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail or c.value}" for c in self.checks if not c.passed]

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n", encoding="utf-8")

    @classmethod
    def read(cls, path: Path) -> GateReport:
        try:
            return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError(
                f"gate report {path} does not exist; run `streamer models gate` first"
            ) from None
        except (ValueError, ValidationError):
            raise ConfigError(f"{path} is not a gate report; write one with --report") from None


def judge(
    candidate: LoadedModel,
    champion: LoadedModel,
    runs: tuple[Replay, Replay],
    bounds: Bounds,
) -> list[Check]:
    """Every check, in the order people read them (candidate run first in ``runs``)."""
    cand, champ = runs
    return [
        _signature(candidate, champion),
        *_metrics(candidate, champion, bounds),
        _agreement(cand, champ, bounds),
        _rate("review_rate_change", "REVIEW", cand, champ, bounds),
        _rate("decline_rate_change", "DECLINE", cand, champ, bounds),
        _latency(cand, champ, bounds),
    ]


def _signature(candidate: LoadedModel, champion: LoadedModel) -> Check:
    new, old = set(candidate.metadata.feature_names), set(champion.metadata.feature_names)
    added, removed = sorted(new - old), sorted(old - new)
    detail = "; ".join(
        part
        for part in (
            f"features added: {', '.join(added)}" if added else "",
            f"features removed: {', '.join(removed)}" if removed else "",
        )
        if part
    )
    return Check(
        name="signature",
        passed=not detail,
        value=f"{len(new)} features",
        bound="same features as the champion",
        detail=detail,
    )


def _metrics(candidate: LoadedModel, champion: LoadedModel, bounds: Bounds) -> list[Check]:
    checks = []
    for metric, drop in (("roc_auc", bounds.roc_auc_drop), ("pr_auc", bounds.pr_auc_drop)):
        new = candidate.metadata.metrics.get(metric)
        old = champion.metadata.metrics.get(metric)
        bound = f">= champion - {drop:g}"
        if new is None or old is None:
            missing = "candidate" if new is None else "champion"
            checks.append(
                Check(
                    name=metric,
                    passed=False,
                    value="missing",
                    bound=bound,
                    detail=f"the {missing} records no held-out {metric}",
                )
            )
            continue
        passed = round(new, 6) >= round(old - drop, 6)  # the numbers the report shows
        detail = "" if passed else f"held-out {metric} {new:.4f} vs champion {old:.4f}"
        checks.append(
            Check(
                name=metric,
                passed=passed,
                value=round(new, 6),
                bound=f">= {old - drop:.4f} (champion {old:.4f} - {drop:g})",
                detail=detail,
                limit=round(old - drop, 6),
                limit_kind="min",
            )
        )
    return checks


def _agreement(cand: Replay, champ: Replay, bounds: Bounds) -> Check:
    share = float(np.mean(cand.decisions == champ.decisions)) if len(cand.decisions) else 0.0
    passed = round(share, 6) >= bounds.min_agreement and len(cand.decisions) > 0
    detail = "" if passed else f"same decision on {share:.2%} of events"
    return Check(
        name="decision_agreement",
        passed=passed,
        value=round(share, 6),
        bound=f">= {bounds.min_agreement:g}",
        detail=detail,
        limit=bounds.min_agreement,
        limit_kind="min",
    )


def _rate(name: str, decision: str, cand: Replay, champ: Replay, bounds: Bounds) -> Check:
    new, old = cand.rate(decision), champ.rate(decision)
    relative = bounds.review_rate_change if decision == "REVIEW" else bounds.decline_rate_change
    limit = max(relative * old, bounds.rate_floor)
    change = new - old
    passed = abs(round(change, 6)) <= round(limit, 6)
    detail = "" if passed else f"{decision} rate {new:.2%} vs champion {old:.2%}"
    bound = f"|change| <= {limit:.4f} ({relative:g} x champion)"
    return Check(
        name=name,
        passed=passed,
        value=round(change, 6),
        bound=bound,
        detail=detail,
        limit=round(limit, 6),
        limit_kind="max_abs",
    )


def _latency(cand: Replay, champ: Replay, bounds: Bounds) -> Check:
    p99 = cand.p99_ms()
    passed = round(p99, 3) <= bounds.p99_batch_ms
    detail = f"champion p99 {champ.p99_ms():.1f} ms over {len(champ.batch_ms)} batches"
    return Check(
        name="p99_batch_ms",
        passed=passed,
        value=round(p99, 3),
        bound=f"<= {bounds.p99_batch_ms:g}",
        detail=detail if not passed else "",
        limit=bounds.p99_batch_ms,
        limit_kind="max",
    )


def report(
    candidate: tuple[str, LoadedModel],
    champion: tuple[str, LoadedModel],
    runs: tuple[Replay, Replay],
    bounds: Bounds,
) -> GateReport:
    """The verdict: passed only when every check held and events were replayed."""
    checks = tuple(judge(candidate[1], champion[1], runs, bounds))
    events = len(runs[0].decisions)
    return GateReport(
        passed=events > 0 and all(c.passed for c in checks),
        created_at=datetime.now(UTC),
        events=events,
        candidate=ModelRef.of(*candidate),
        champion=ModelRef.of(*champion),
        checks=checks,
        rates=Rates(candidate=Shares.of(runs[0]), champion=Shares.of(runs[1])),
    )
