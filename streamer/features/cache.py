"""Enrichment: one Redis round trip per micro-batch for the batch's unique cards and merchants.

Missing entities get the model's documented defaults and are flagged. A Redis error or
timeout opens a circuit breaker and the batch is scored with defaults, flagged
``DEGRADED``; while the breaker is open Redis is not called at all, so a dead cache never
stalls the consumer loop. The client is built fail-fast: short timeouts, no retries.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streamer.features.breaker import CircuitBreaker
from streamer.features.layout import card_key, merchant_key, unpack_rows

log = logging.getLogger(__name__)

# Feature status codes, in the order of the ScoredEvent FeatureStatus enum.
FEATURE_STATUSES = ("COMPLETE", "PARTIAL", "DEFAULTED", "DEGRADED")
COMPLETE, PARTIAL, DEFAULTED, DEGRADED = range(4)


def make_redis_client(
    url: str, *, password: str | None, timeout_ms: float, ssl_ca_certs: str | None = None
) -> redis.Redis:
    """A client that fails in ``timeout_ms`` instead of redis-py's default minute of retries."""
    timeout = timeout_ms / 1000.0
    kwargs: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
        "health_check_interval": 0,
        # A small pool connects lazily: a Redis that is down at start-up degrades scoring
        # instead of failing the constructor (single_connection_client connects eagerly).
        "max_connections": 4,
    }
    if password:
        kwargs["password"] = password
    if ssl_ca_certs:
        kwargs["ssl_ca_certs"] = ssl_ca_certs
    return redis.Redis.from_url(url, **kwargs)


@dataclass(frozen=True)
class Features:
    """Feature rows aligned with the batch's events."""

    card: np.ndarray
    merchant: np.ndarray
    card_found: np.ndarray
    merchant_found: np.ndarray
    degraded: bool

    def status(self) -> np.ndarray:
        """Per-event FeatureStatus code (int8)."""
        return feature_status(self.card_found, self.merchant_found, degraded=self.degraded)


def feature_status(
    card_found: np.ndarray, merchant_found: np.ndarray, *, degraded: bool
) -> np.ndarray:
    """COMPLETE when both entities were found, PARTIAL for one, DEFAULTED for none."""
    if degraded:
        return np.full(card_found.shape, DEGRADED, dtype=np.int8)
    found = card_found.astype(np.int8) + merchant_found.astype(np.int8)
    return (2 - found).astype(np.int8)  # 2 found → 0 COMPLETE, 1 → 1 PARTIAL, 0 → 2 DEFAULTED


@dataclass
class CacheStats:
    """Counters for metrics: lookups of unique entities by (entity, result), failed round trips.

    ``result`` is ``hit``, ``miss`` (defaults used) or ``degraded`` (Redis not asked).
    """

    lookups: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: int = 0


class FeatureCache:
    """Reads packed feature vectors for a batch with a single MGET."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        card_defaults: np.ndarray,
        merchant_defaults: np.ndarray,
        breaker: CircuitBreaker,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._card_defaults = card_defaults
        self._merchant_defaults = merchant_defaults
        self.breaker = breaker
        self.stats = CacheStats()

    def use_defaults(self, card: np.ndarray, merchant: np.ndarray) -> None:
        """Defaults for missing entities from now on (a model swap brings its own)."""
        self._card_defaults, self._merchant_defaults = card, merchant

    def fetch(self, card_ids: Sequence[str], merchant_ids: Sequence[str]) -> Features:
        """Features for each event; never raises for a Redis problem (degrades instead)."""
        n = len(card_ids)
        cards, card_inverse = np.unique(np.asarray(card_ids, dtype=object), return_inverse=True)
        merchants, merchant_inverse = np.unique(
            np.asarray(merchant_ids, dtype=object), return_inverse=True
        )
        blobs = self._mget(cards, merchants)
        if blobs is None:
            self.stats.lookups["card", "degraded"] += len(cards)
            self.stats.lookups["merchant", "degraded"] += len(merchants)
            return Features(
                card=np.broadcast_to(self._card_defaults, (n, self._card_defaults.size)),
                merchant=np.broadcast_to(
                    self._merchant_defaults, (n, self._merchant_defaults.size)
                ),
                card_found=np.zeros(n, dtype=bool),
                merchant_found=np.zeros(n, dtype=bool),
                degraded=True,
            )
        card_rows, card_found = unpack_rows(blobs[: len(cards)], self._card_defaults)
        merchant_rows, merchant_found = unpack_rows(blobs[len(cards) :], self._merchant_defaults)
        card_hits, merchant_hits = int(card_found.sum()), int(merchant_found.sum())
        self.stats.lookups["card", "hit"] += card_hits
        self.stats.lookups["card", "miss"] += len(cards) - card_hits
        self.stats.lookups["merchant", "hit"] += merchant_hits
        self.stats.lookups["merchant", "miss"] += len(merchants) - merchant_hits
        return Features(
            card=card_rows[card_inverse],
            merchant=merchant_rows[merchant_inverse],
            card_found=card_found[card_inverse],
            merchant_found=merchant_found[merchant_inverse],
            degraded=False,
        )

    def _mget(self, cards: np.ndarray, merchants: np.ndarray) -> list[bytes | None] | None:
        if not self.breaker.allow():
            return None
        keys = [card_key(self._prefix, c) for c in cards]
        keys += [merchant_key(self._prefix, m) for m in merchants]
        try:
            blobs: list[bytes | None] = self._client.mget(keys)  # type: ignore[assignment]
        except (redis.RedisError, OSError) as exc:
            self.stats.errors += 1
            self.breaker.failure()
            # One line per failed round trip (at most one per cooldown while the breaker is open).
            log.warning(
                "feature cache round trip failed (%s); this batch is scored with defaults, "
                "breaker %s",
                type(exc).__name__,
                self.breaker.state,
            )
            return None
        if self.breaker.state != "closed":
            log.info("feature cache reachable again")
        self.breaker.success()
        return blobs

    def ping(self) -> bool:
        """True when Redis answers now (for start-up checks)."""
        return reachable(self._client)


def reachable(client: redis.Redis) -> bool:
    """True when ``client``'s Redis answers a PING now."""
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
