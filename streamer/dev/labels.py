"""Synthetic fraud labels for the synthetic events (``synth.generate_labeled``). Pure.

What a labels topic carries in life, drawn from the events' hidden truth:

- confirmed fraud (``FRAUD``, source ``case-management``) a few days after the event;
- chargebacks (``CHARGEBACK``, source ``chargebacks``), slower: weeks;
- some fraud is never labelled (the cardholder never notices, the issuer writes it off);
- some genuine purchases are disputed anyway (friendly fraud: a ``CHARGEBACK`` on a
  legitimate event, source ``dispute``), noise no model can learn;
- a share of genuine events is confirmed ``LEGITIMATE`` once their dispute window closed
  (source ``maturity``), so precision can be measured on labelled events.

Delays are log-normal, in days; a label is never earlier than its event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

DAY_MS = 86_400_000


@dataclass(frozen=True)
class LabelMix:
    """How labels are drawn; the defaults look like a card issuer's feeds."""

    fraud_labelled: float = 0.85  # share of fraud that is ever labelled
    confirmed_share: float = 0.4  # of labelled fraud: FRAUD (case) rather than CHARGEBACK
    confirmed_median_days: float = 3.0
    chargeback_median_days: float = 21.0
    disputed: float = 0.002  # share of genuine events charged back anyway
    legitimate_confirmed: float = 0.3  # share of genuine events confirmed at maturity
    maturity_days: float = 45.0
    sigma: float = 0.6  # log-normal spread of every delay


def generate_labels(
    events: Sequence[dict[str, Any]],
    fraud: npt.ArrayLike,
    *,
    seed: int,
    mix: LabelMix | None = None,
) -> list[dict[str, Any]]:
    """``FraudLabel`` dicts for ``events`` (their ``fraud`` flags aligned), by label time."""
    m = mix or LabelMix()
    y = np.asarray(fraud, dtype=bool)
    n = y.size
    if n != len(events):
        raise ValueError(f"{len(events)} events but {n} fraud flags")
    rng = np.random.default_rng([seed, 11])
    draw = rng.random((3, n))
    fraud_labelled = y & (draw[0] < m.fraud_labelled)
    confirmed = fraud_labelled & (draw[1] < m.confirmed_share)
    disputed = ~y & (draw[0] < m.disputed)
    matured = ~y & ~disputed & (draw[2] < m.legitimate_confirmed)
    median = np.select(
        [confirmed, fraud_labelled | disputed, matured],
        [m.confirmed_median_days, m.chargeback_median_days, m.maturity_days],
        default=0.0,
    )
    delay_ms = (median * np.exp(rng.normal(0.0, m.sigma, n)) * DAY_MS).astype(np.int64)
    kind = np.select([confirmed, fraud_labelled | disputed], ["FRAUD", "CHARGEBACK"], "LEGITIMATE")
    source = np.select(
        [confirmed, fraud_labelled, disputed],
        ["case-management", "chargebacks", "dispute"],
        "maturity",
    )
    labelled = np.flatnonzero(fraud_labelled | disputed | matured)
    labels = [
        {
            "transaction_id": events[i]["transaction_id"],
            "card_id": events[i]["card_id"],
            "label": str(kind[i]),
            "label_time": int(events[i]["event_time"]) + max(int(delay_ms[i]), 1),
            "source": str(source[i]),
            "reason_code": "10.4" if kind[i] == "CHARGEBACK" else None,
            "event_time": int(events[i]["event_time"]),
        }
        for i in labelled.tolist()
    ]
    return sorted(labels, key=lambda label: label["label_time"])
