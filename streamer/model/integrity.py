"""How a registry file is refused: one line naming the model, the problem and what to do.

The ONNX file and the explainer beside it are both checked against the sha256 their
metadata records, with the same words."""

from __future__ import annotations

import hashlib
from pathlib import Path

from streamer.errors import ModelError

SETTING = "STREAMER_MODEL"


def model_error(spec: str, problem: str, todo: str) -> ModelError:
    return ModelError(f"model {spec!r}: {problem}; {todo} (setting {SETTING})")


def check_sha256(spec: str, path: Path, data: bytes, expected: str) -> None:
    """``ModelError`` unless ``data`` (read from ``path``) hashes to ``expected``."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != expected:
        raise model_error(
            spec,
            f"sha256 of {path} is {digest[:12]}…, metadata says {expected[:12]}…",
            "the file changed after registration: restore it or re-export with models/train.py",
        )
