"""``metadata.json``: what a model version is, what it expects, how good it was, its hash,
and the reference distributions that drift monitoring compares live traffic against.

Format 1 (version 1 of fraud-gbt) has only ``reference_scores``; later versions add
``reference_features`` (one histogram per model input). Both stay readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamer.features.layout import (
    CARD_DEFAULTS,
    CARD_FIELDS,
    MERCHANT_DEFAULTS,
    MERCHANT_FIELDS,
    defaults_vector,
)

if TYPE_CHECKING:
    from streamer.model.explainer import Explainer

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
"""Model names and versions: no path separators, no leading dot (so ``..`` is refused)."""


class Thresholds(BaseModel):
    """Scores from ``review`` are REVIEW, from ``decline`` DECLINE."""

    model_config = ConfigDict(frozen=True)
    review: float = Field(ge=0.0, le=1.0)
    decline: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.review > self.decline:
            raise ValueError(f"review {self.review} is above decline {self.decline}")
        return self


class ScoreHistogram(BaseModel):
    """Held-out score distribution: ``counts[i]`` scores in ``[bin_edges[i], bin_edges[i+1])``."""

    model_config = ConfigDict(frozen=True)
    bin_edges: tuple[float, ...]
    counts: tuple[int, ...]

    @model_validator(mode="after")
    def _consistent(self) -> ScoreHistogram:
        if len(self.bin_edges) != len(self.counts) + 1 or len(self.counts) == 0:
            raise ValueError("bin_edges must have exactly one more entry than counts")
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:], strict=False)):
            raise ValueError("bin_edges must increase")
        return self

    def as_reference(self) -> ReferenceHistogram:
        """The same bins as cut points; values outside ``[0, 1]`` join the outer bins."""
        return ReferenceHistogram(cuts=self.bin_edges[1:-1], counts=self.counts)


class ReferenceHistogram(BaseModel):
    """A reference distribution over open-ended bins: ``counts[0]`` values below ``cuts[0]``,
    ``counts[i]`` in ``[cuts[i-1], cuts[i])``, ``counts[-1]`` from ``cuts[-1]`` up.

    Open ends mean any live value lands in some bin: a shift beyond the training range
    shows up as mass in an outer bin instead of being dropped. ``by_hour`` (24 rows of
    counts, by UTC hour of event time) lets drift compare a window with the reference of
    the hours it actually covers: a ten-minute window at 03:00 is not a whole day.
    """

    model_config = ConfigDict(frozen=True)
    cuts: tuple[float, ...]
    counts: tuple[int, ...]
    by_hour: tuple[tuple[int, ...], ...] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceHistogram:
        if len(self.counts) != len(self.cuts) + 1:
            raise ValueError("counts must have exactly one more entry than cuts")
        if any(b <= a for a, b in zip(self.cuts, self.cuts[1:], strict=False)):
            raise ValueError("cuts must increase")
        if sum(self.counts) <= 0 or min(self.counts) < 0:
            raise ValueError("counts must be non-negative with a positive total")
        if self.by_hour is not None and (
            len(self.by_hour) != 24 or any(len(row) != len(self.counts) for row in self.by_hour)
        ):
            raise ValueError("by_hour must be 24 rows of counts, one per UTC hour")
        return self


class ExplainerRecord(BaseModel):
    """``explainer``: the file beside ``model.onnx`` that explains it (LightGBM's own model
    text, ``streamer.model.explainer``) and its sha256, verified at every load."""

    model_config = ConfigDict(frozen=True)
    file: str = Field(pattern=NAME.pattern)
    format: Literal["lightgbm-text"] = "lightgbm-text"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelMetadata(BaseModel):
    """``metadata.json``: what the model is, what it expects, how good it was, and its hash."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    format_version: int = 1
    name: str = Field(pattern=NAME.pattern)
    version: str = Field(pattern=NAME.pattern)
    created_at: datetime
    framework: str
    feature_names: tuple[str, ...] = Field(min_length=1)
    card_defaults: dict[str, float]
    merchant_defaults: dict[str, float]
    thresholds: Thresholds
    metrics: dict[str, float]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    input_name: str
    input_shape: tuple[int | None, int]
    output_names: tuple[str, ...]
    probability_output: str
    reference_scores: ScoreHistogram
    reference_score: ReferenceHistogram | None = None
    reference_features: dict[str, ReferenceHistogram] = Field(default_factory=dict)
    training: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    explainer: ExplainerRecord | None = None

    @model_validator(mode="after")
    def _references_name_inputs(self) -> ModelMetadata:
        stray = sorted(set(self.reference_features) - set(self.feature_names))
        if stray:
            raise ValueError(f"reference_features names non-inputs: {', '.join(stray)}")
        return self

    def drift_references(self) -> dict[str, ReferenceHistogram]:
        """What drift monitoring compares: ``"score"`` (by hour when recorded, else the
        format-1 ``reference_scores``) and every model input with a reference."""
        score = self.reference_score or self.reference_scores.as_reference()
        return {"score": score, **self.reference_features}

    def card_default_vector(self) -> npt.NDArray[np.float64]:
        """Card defaults in ``CARD_FIELDS`` order (layout defaults for fields not recorded)."""
        return defaults_vector(CARD_FIELDS, self.card_defaults, CARD_DEFAULTS)

    def merchant_default_vector(self) -> npt.NDArray[np.float64]:
        """Merchant defaults in ``MERCHANT_FIELDS`` order."""
        return defaults_vector(MERCHANT_FIELDS, self.merchant_defaults, MERCHANT_DEFAULTS)


@dataclass(frozen=True)
class LoadedModel:
    """A verified model: its metadata, where it came from, and the ONNX bytes that were hashed."""

    metadata: ModelMetadata
    path: Path
    onnx_bytes: bytes = field(repr=False)
    explainer: Explainer | None = field(default=None, repr=False, compare=False)

    @property
    def card_defaults(self) -> npt.NDArray[np.float64]:
        return self.metadata.card_default_vector()

    @property
    def merchant_defaults(self) -> npt.NDArray[np.float64]:
        return self.metadata.merchant_default_vector()
