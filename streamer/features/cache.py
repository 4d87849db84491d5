"""Enrichment: one Redis round trip per micro-batch for the batch's unique cards and merchants
(on a Redis Cluster, one per node the batch touches: ``redis_cluster``).

Missing entities get the model's documented defaults and are flagged. A Redis error or
timeout opens a circuit breaker and the batch is scored with defaults, flagged
``DEGRADED``; while the breaker is open Redis is not called at all, so a dead cache never
stalls the consumer loop. A round trip that fails for want of time or a connection (a
stale pooled connection after a Redis restart, one slow reply on a busy host) is tried once
more when the batch's time budget allows: one slow reply must not degrade a whole batch.
Authentication failures are counted apart from outages: they need a person, not patience.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
import redis

from streamer.features.breaker import CircuitBreaker
from streamer.features.held_connection import hold, mget_of
from streamer.features.layout import card_key, merchant_key, unpack_rows
from streamer.features.redis_client import (
    REDIS_ERRORS,
    ErrorKind,
    attempt_timeout,
    classify,
    reachable,
)
from streamer.features.resp import Keys
from streamer.features.velocity import Outcome, VelocityBatch
from streamer.features.velocity_store import (
    TTL_S,
    PendingWrite,
    WriteResult,
    send_states,
    velocity_keys,
    write_states,
)

__all__ = ["FEATURE_STATUSES", "CacheStats", "FeatureCache", "Features", "feature_status"]

VelocityMode = Literal["off", "read", "read-write"]

log = logging.getLogger(__name__)

# Feature status codes, in the order of the ScoredEvent FeatureStatus enum.
FEATURE_STATUSES = ("COMPLETE", "PARTIAL", "DEFAULTED", "DEGRADED")
COMPLETE, PARTIAL, DEFAULTED, DEGRADED = range(4)


@dataclass(frozen=True)
class VelocityRead:
    """The packed velocity states of a batch's distinct cards, read in the same MGET as the
    snapshot (``None`` for a card without state). ``recorded``: whether the batch's events
    will be recorded (the stream, offline folds); a reader that records nothing (the
    scoring API) scores each event against the stored state alone."""

    cards: list[str]
    states: list[bytes | None]
    recorded: bool = True


@dataclass(frozen=True)
class Features:
    """Feature rows aligned with the batch's events (and, when the source keeps velocity
    state, the states of the batch's distinct cards)."""

    card: np.ndarray
    merchant: np.ndarray
    card_found: np.ndarray
    merchant_found: np.ndarray
    degraded: bool
    velocity: VelocityRead | None = None

    def take(self, rows: npt.NDArray[np.intp]) -> Features:
        """The rows ``rows`` of every matrix (the velocity read belongs to the whole batch)."""
        return Features(
            self.card[rows],
            self.merchant[rows],
            self.card_found[rows],
            self.merchant_found[rows],
            self.degraded,
        )

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
    ``errors`` counts round trips lost to an outage (refused, timed out, TLS), ``auth_errors``
    those Redis refused for credentials, ``retries`` second tries within a batch's budget.
    """

    lookups: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: int = 0
    auth_errors: int = 0
    retries: int = 0
    velocity: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Velocity state counts by (what, result): ("event", new|duplicate|replay|late),
    ("write", written|stale|failed), ("state", keys|bytes) of the states written."""

    def looked_up(self, entity: str, found: npt.NDArray[np.bool_]) -> None:
        """Count the lookups of ``entity``'s unique ids, ``found`` telling the hits."""
        hits = int(found.sum())
        self.lookups[entity, "hit"] += hits
        self.lookups[entity, "miss"] += len(found) - hits


class FeatureCache:
    """Reads packed feature vectors for a batch with a single MGET.

    ``budget_s`` is how long one batch may spend on Redis: a failed round trip is tried once
    more only if a whole second try (the client's socket timeout) still fits in it.

    With ``velocity`` (the stream's and the API's cache), the same MGET also reads the
    velocity state of the batch's distinct cards, and ``record_velocity`` writes the new
    states back in one round trip (only when ``velocity == "read-write"``: the
    stream records transactions, the API only reads them), read back by
    ``velocity_written``.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        card_defaults: np.ndarray,
        merchant_defaults: np.ndarray,
        breaker: CircuitBreaker,
        budget_s: float = 0.25,
        now: Callable[[], float] = time.monotonic,
        velocity: VelocityMode = "off",
        velocity_ttl_s: int = TTL_S,
    ) -> None:
        self._client = client
        self._velocity = velocity
        self._velocity_ttl_s = velocity_ttl_s
        self._held = hold(client)  # the MGET and the velocity write take turns on it
        self._mget_keys = mget_of(client, self._held)
        self._prefix = prefix
        self._card_defaults = card_defaults
        self._merchant_defaults = merchant_defaults
        self._budget = budget_s
        self._attempt_s = attempt_timeout(client)
        self._now = now
        self._down_since: float | None = None
        self.breaker = breaker
        self.stats = CacheStats()
        self.last_error: ErrorKind | None = None
        self._writing: tuple[PendingWrite, Mapping[str, bytes], Mapping[str, int]] | None = None

    def use_defaults(self, card: np.ndarray, merchant: np.ndarray) -> None:
        """Defaults for missing entities from now on (a model swap brings its own)."""
        self._card_defaults, self._merchant_defaults = card, merchant

    def fetch(
        self,
        card_ids: Sequence[str],
        merchant_ids: Sequence[str],
        *,
        meanwhile: Callable[[], object] | None = None,
    ) -> Features:
        """Features for each event; never raises for a Redis problem (degrades instead).
        A velocity write still in flight is waited for first (``velocity_written``).
        ``meanwhile`` runs while the read's reply is awaited, on one Redis node
        (``HeldConnection.mget``); elsewhere it is not called (``FeatureSource.fetch``)."""
        self.velocity_written()
        n = len(card_ids)
        cards, card_inverse = _distinct(card_ids)
        merchants, merchant_inverse = _distinct(merchant_ids)
        states = cards if self._velocity != "off" else ()
        blobs = self._mget(cards, merchants, states, meanwhile)
        if blobs is None:
            self.stats.lookups["card", "degraded"] += len(cards)
            self.stats.lookups["merchant", "degraded"] += len(merchants)
            return _defaults(n, self._card_defaults, self._merchant_defaults)
        split = len(cards) + len(merchants)
        card_rows, card_found = unpack_rows(blobs[: len(cards)], self._card_defaults)
        merchant_rows, merchant_found = unpack_rows(
            blobs[len(cards) : split], self._merchant_defaults
        )
        recorded = self._velocity == "read-write"
        velocity = VelocityRead(cards, blobs[split:], recorded) if self._velocity != "off" else None
        self.stats.looked_up("card", card_found)
        self.stats.looked_up("merchant", merchant_found)
        return Features(
            card=card_rows[card_inverse],
            merchant=merchant_rows[merchant_inverse],
            card_found=card_found[card_inverse],
            merchant_found=merchant_found[merchant_inverse],
            degraded=False,
            velocity=velocity,
        )

    def record_velocity(self, batch: VelocityBatch) -> None:
        """Count a batch's velocity outcomes and send its new states (one round trip,
        only when this cache is read-write; a card's state only moves forward). The reply
        is read by ``velocity_written``, which the kernel calls once the batch is scored:
        Redis runs the write meanwhile. The next ``fetch`` calls it first if nobody did,
        so a state is always written before a later batch reads it."""
        counts = np.bincount(batch.outcomes, minlength=len(Outcome)).tolist()
        for outcome, count in zip(Outcome, counts, strict=True):
            if count:
                self.stats.velocity["event", outcome.name.lower()] += count
        updates, positions = batch.updates, batch.positions
        if self._velocity != "read-write" or not updates:
            return
        self.velocity_written()  # one write in flight at most
        sent = send_states(
            self._client, self._prefix, updates, positions, self._velocity_ttl_s, self._held
        )
        self._writing = (sent, updates, positions)

    def velocity_written(self) -> None:
        """Wait for the velocity write ``record_velocity`` sent, if one is in flight, and
        count what it did. A write lost to an outage (a timeout, a dropped connection) is
        sent once more: the compare-and-set makes that safe, states already written come
        back as stale. A failure is counted and logged, never raised: the batch is scored
        all the same."""
        if self._writing is None:
            return
        sent, updates, positions = self._writing
        self._writing = None
        done = sent.result()
        if done.failed and done.error == "outage":  # one slow reply: the CAS makes a retry safe
            self.stats.retries += 1
            done = write_states(
                self._client, self._prefix, updates, positions, self._velocity_ttl_s, self._held
            )
        _count_write(self.stats.velocity, done, updates)

    def available(self) -> bool:
        """True when Redis is usable now. While the breaker is open this is a cheap False;
        when a probe is due it PINGs, so a loop that paused consumption (Redis required)
        still notices within one probe interval that Redis is back."""
        if self.breaker.state == "closed" and self.last_error is None:
            return True
        if not self.breaker.allow():
            return False
        try:
            self._client.ping()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return False
        self._recovered()
        return True

    def _mget(
        self,
        cards: Sequence[str],
        merchants: Sequence[str],
        velocity: Sequence[str],
        meanwhile: Callable[[], object] | None,
    ) -> list[bytes | None] | None:
        if not (cards or merchants or velocity):  # nothing to read: MGET refuses no keys
            return []
        if not self.breaker.allow():
            return None
        keys = (
            Keys(card_key(self._prefix, ""), cards),
            Keys(merchant_key(self._prefix, ""), merchants),
            velocity_keys(self._prefix, velocity),
        )
        start = self._now()
        try:
            blobs = self._mget_keys(keys, meanwhile)
        except REDIS_ERRORS as exc:
            left = self._budget - (self._now() - start)
            if classify(exc) != "outage" or left < self._attempt_s:
                self._failed(exc)
                return None
            self.stats.retries += 1
            try:
                blobs = self._mget_keys(keys, None)
            except REDIS_ERRORS as again:
                self._failed(again)
                return None
        self._recovered()
        return blobs

    def _failed(self, exc: BaseException) -> None:
        kind = classify(exc)
        if kind == "auth":
            self.stats.auth_errors += 1
        else:
            self.stats.errors += 1
        self.breaker.failure()
        if self._down_since is None or kind != self.last_error:
            # One line when an outage starts (or changes kind), not one per probe.
            log.warning(
                "feature cache %s (%s); batches are scored with defaults until it recovers",
                "refused our credentials" if kind == "auth" else f"unavailable, {kind}",
                type(exc).__name__,
            )
        if self._down_since is None:
            self._down_since = self._now()
        self.last_error = kind

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.info("feature cache reachable again after %.1f s", self._now() - self._down_since)
            self._down_since = None
        self.last_error = None
        self.breaker.success()

    def ping(self) -> bool:
        """True when Redis answers now (for start-up checks)."""
        return reachable(self._client)


def _defaults(n: int, card: np.ndarray, merchant: np.ndarray) -> Features:
    """``n`` events' features when Redis was not asked: the defaults, DEGRADED."""
    return Features(
        card=np.broadcast_to(card, (n, card.size)),
        merchant=np.broadcast_to(merchant, (n, merchant.size)),
        card_found=np.zeros(n, dtype=bool),
        merchant_found=np.zeros(n, dtype=bool),
        degraded=True,
    )


def _count_write(
    counts: Counter[tuple[str, str]], done: WriteResult, updates: Mapping[str, bytes]
) -> None:
    """A batch's velocity write into ``CacheStats.velocity``; a failure is logged."""
    if done.failed:
        counts["write", "failed"] += done.failed
        log.warning(
            "velocity state write failed (%s): %d cards miss this batch's events",
            done.error,
            done.failed,
        )
    counts["write", "written"] += done.written
    counts["write", "stale"] += done.stale
    counts["state", "keys"] += len(updates)
    counts["state", "bytes"] += sum(map(len, updates.values()))


def _distinct(ids: Sequence[str]) -> tuple[list[str], npt.NDArray[np.intp]]:
    """The distinct ids in first-seen order, and each id's index among them (one Redis key
    per distinct id; a dict beats ``np.unique``'s sort of Python strings at any size).
    Built by C iterators: ``last`` maps each id to its last position (keys in first-seen
    order); each event's id is found by that position, ranked among the distinct ids'."""
    n = len(ids)
    last = dict(zip(ids, range(n), strict=True))
    where = np.fromiter(map(last.__getitem__, ids), np.intp, n)
    rank = np.empty(n, np.intp)
    rank[np.fromiter(last.values(), np.intp, len(last))] = np.arange(len(last))
    return list(last), rank[where]
