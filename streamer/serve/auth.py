"""API keys for the scoring routes (``--api-keys-file``); mTLS is the ingress's job.

Keys come from a file, one per line (``#`` comments and blank lines ignored), so they can
be mounted from a Kubernetes Secret and never sit in an environment dump or a log. Only
their SHA-256 digests are kept, compared in constant time. A caller sends
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from streamer.errors import ConfigError

MIN_KEY_LENGTH = 16


def read_api_keys(path: Path) -> frozenset[str]:
    """The SHA-256 digests of the keys in ``path``; ``ConfigError`` naming what is wrong."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"--api-keys-file {path}: cannot read it ({type(exc).__name__}); "
            "give a readable UTF-8 file with one key per line"
        ) from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise ConfigError(f"--api-keys-file {path}: no key in it; add one key per line")
    short = [n for n, key in enumerate(keys, 1) if len(key) < MIN_KEY_LENGTH]
    if short:
        raise ConfigError(
            f"--api-keys-file {path}: key number {short[0]} is shorter than "
            f"{MIN_KEY_LENGTH} characters; use random keys (e.g. openssl rand -hex 24)"
        )
    return frozenset(_digest(key) for key in keys)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request presents, from either header."""
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None


def allowed(key: str | None, digests: frozenset[str]) -> bool:
    """True when no keys are configured, or ``key`` is one of them."""
    if not digests:
        return True
    if key is None:
        return False
    digest = _digest(key)
    found = False
    for known in digests:  # compare with every key: timing says nothing about which matched
        found |= hmac.compare_digest(digest, known)
    return found


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
