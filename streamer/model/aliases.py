"""Aliases (``champion``, ``challenger``, any name) pointing at versions, with their history.

``models/<name>/aliases.json`` holds the current pointers and an append-only history:

    {"aliases": {"champion": "2"},
     "history": [{"at": "...", "alias": "champion", "from": "1", "to": "2", "reason": "..."}]}

Reading is cheap and lock-free (writers replace the file atomically); writing happens only
in ``streamer.model.promotion`` under the model's writer lock.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamer.errors import ModelError
from streamer.model.metadata import NAME

ALIASES_FILE = "aliases.json"
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
"""Alias names start with a letter, so ``name@2`` can never mean an alias called 2."""


class AliasChange(BaseModel):
    """One move of an alias: when, which alias, from which version (None: new), to which."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)
    at: datetime
    alias: str = Field(pattern=ALIAS.pattern)
    from_version: str | None = Field(default=None, alias="from")
    to_version: str = Field(alias="to", pattern=NAME.pattern)
    reason: str = ""


class Aliases(BaseModel):
    """The content of ``aliases.json``: current pointers and every change so far."""

    model_config = ConfigDict(frozen=True)
    aliases: dict[str, str] = Field(default_factory=dict)
    history: tuple[AliasChange, ...] = ()

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2) + "\n"


def aliases_path(model_dir: Path) -> Path:
    return model_dir / ALIASES_FILE


def read_aliases(model_dir: Path) -> Aliases:
    """The model's aliases (none when the file does not exist); ``ModelError`` if unreadable."""
    path = aliases_path(model_dir)
    todo = "restore it from version control"
    try:
        return Aliases.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return Aliases()
    except ValidationError as exc:
        first = exc.errors()[0]
        detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        raise ModelError(f"{path} is invalid ({detail}); {todo}") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} cannot be read ({exc}); {todo}") from None
