"""What the decoder and encoder generators share: fresh names and module constants.

A generator writes Python source line by line; values that have no literal (a symbol
table, a default to copy) become module constants the compiled code refers to by name.
"""

from __future__ import annotations

from typing import Any


class SourceWriter:
    """Fresh names (``v1``, ``K2`` …) and the constants they name, for one generated module."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self._lines: list[str] = []
        self._counter = 0

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def _constant(self, value: Any) -> str:
        name = self._name("K")
        self.constants[name] = value
        return name
