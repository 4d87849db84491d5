"""A backlog's batches overlap: the reason codes of a full batch are found in the kernel's
explainer thread while the main thread scores the next batch. Outputs still go out in
input order, each once, each with its reasons; a pending batch goes out without waiting
for more input, and before anything commits on a rebalance, a loss or a stop.

The consumer is a queue of waiting messages (``test_adaptive_loop``); the broker's side,
exactly-once and kill -9 are the integration and fault tests'.
"""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from confluent_kafka import TopicPartition
from fastavro import schemaless_reader

from streamer.codec.schemas import scored_schema, without_logical_types
from streamer.model.scorer import Scorer
from streamer.scoring.reasons import ReasonSettings
from tests.unit.fakes import TOPIC, avro_raw, make_event, make_message
from tests.unit.test_adaptive_loop import WaitingQueue

WAIT_S = 10.0  # far beyond any scoring of a 500-event batch: only a missing overlap waits


class GatedExplainer:
    """The model's explainer, whose call for batch ``k`` in the explainer thread returns
    only once the features of batch ``k + 1`` were read: it passes only if the next batch
    is scored while it runs. Calls on the main thread (a batch explained at once) pass."""

    def __init__(
        self, inner: Any, reads: list[int], read: threading.Condition, *, gate: bool
    ) -> None:
        self.inner, self.width = inner, inner.width
        self._reads, self._read, self._gate = reads, read, gate
        self.threads: list[str] = []

    def contributions(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        name = threading.current_thread().name
        self.threads.append(name)
        if self._gate and name != "MainThread":
            k = len(self.threads)
            with self._read:
                if not self._read.wait_for(lambda: self._reads[0] > k, WAIT_S):
                    raise AssertionError(f"batch {k + 1} was not scored while {k} was explained")
        return self.inner.contributions(matrix)  # type: ignore[no-any-return]

    def margins(self, matrix: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        return self.inner.margins(matrix)  # type: ignore[no-any-return]


def _backlog(
    build: Any, n: int, *, gate: bool = False, wrap: bool = True
) -> tuple[Any, WaitingQueue, Any, GatedExplainer]:
    """A loop over ``n`` waiting events in batches of 500, reasons on every event, its
    explainer recording its threads (and ``gate``d), or the model's own (not ``wrap``)."""
    pipeline, committer, producer = build([])  # the commit strategy's consumer: ``committed``
    pipeline.committer = committer
    queue = WaitingQueue([make_message(i, avro_raw(make_event(i))) for i in range(n)])
    pipeline.consumer, pipeline.max_wait_ms, pipeline.max_batch_size = queue, 0, 500
    kernel = pipeline.kernel
    kernel.reasons.settings = ReasonSettings(mode="all")
    reads, read = [0], threading.Condition()
    fetch = kernel.features.fetch

    def counted(*args: Any, **kwargs: Any) -> Any:
        with read:
            reads[0] += 1
            read.notify_all()
        return fetch(*args, **kwargs)

    kernel.features.fetch = counted
    gated = GatedExplainer(kernel.model.explainer, reads, read, gate=gate)
    if wrap:
        model = replace(kernel.model, explainer=gated)
        kernel.use(model, Scorer(model))
    return pipeline, queue, producer, gated


def _outputs(producer: Any) -> list[dict[str, Any]]:
    schema = without_logical_types(scored_schema())
    return [
        schemaless_reader(io.BytesIO(value), schema, None)  # type: ignore[arg-type]
        for topic, value, *_ in producer.delivered
        if topic == "scored"
    ]


def _committed(pipeline: Any) -> int:
    """The last offset committed for partition 0."""
    return [tp.offset for c in pipeline.committer.commits for tp in c if tp.partition == 0][-1]  # type: ignore[no-any-return]


def _run_until_idle(pipeline: Any, queue: WaitingQueue, steps: int = 20) -> None:
    for _ in range(steps):
        pipeline.step()
        if not queue.waiting and not pipeline._pending:
            return
    raise AssertionError("the loop did not go idle")


def test_a_full_batch_is_explained_while_the_next_one_is_scored_and_outputs_keep_order(
    build: Any,
) -> None:
    pipeline, queue, producer, gated = _backlog(build, 1200, gate=True)

    _run_until_idle(pipeline, queue)
    pipeline.publisher.flush(5)

    assert gated.threads[:2] == ["explainer_0", "explainer_0"]  # the two full batches
    assert gated.threads[2] == "MainThread"  # the last 200: nothing after them to wait for
    outputs = _outputs(producer)
    assert [o["transaction_id"] for o in outputs] == [f"tx-{i}" for i in range(1200)]
    assert all(o["reasons"] for o in outputs)


def test_with_the_c_treeshap_a_backlog_gets_the_reasons_batch_by_batch_scoring_gives(
    build: Any,
) -> None:
    """The model's own explainer starts its C thread (``Explainer.start``); every output
    has the reasons the same batches get from ``ScoringKernel.score``, in input order."""
    pipeline, queue, producer, _ = _backlog(build, 1200, wrap=False)
    _run_until_idle(pipeline, queue)
    pipeline.publisher.flush(5)

    reference, _, _ = build([])
    reference.kernel.reasons.settings = ReasonSettings(mode="all")
    events = [make_event(i) for i in range(1200)]
    expected = []
    for first in range(0, 1200, 500):
        chunk = events[first : first + 500]
        scored = reference.kernel.score(chunk, [(0, first + i) for i in range(len(chunk))])
        expected += scored.records
    outputs = _outputs(producer)
    assert [o["transaction_id"] for o in outputs] == [e["transaction_id"] for e in expected]
    assert [o["reasons"] for o in outputs] == [e["reasons"] for e in expected]
    assert all(o["reasons"] for o in outputs)


def test_a_pending_batch_goes_out_at_the_next_step_without_waiting_for_input(
    build: Any,
) -> None:
    pipeline, queue, producer, _ = _backlog(build, 500)
    pipeline.step()  # the one full batch: scored, explained in the thread, pending
    assert pipeline._pending
    waits = len(queue.waits)

    pipeline.step()  # nothing more arrives
    pipeline.publisher.flush(5)

    assert all(timeout == 0 for _, timeout in queue.waits[waits:])
    assert [o["transaction_id"] for o in _outputs(producer)] == [f"tx-{i}" for i in range(500)]


def test_a_revocation_publishes_the_pending_batch_and_commits_it(build: Any) -> None:
    pipeline, queue, producer, _ = _backlog(build, 600)
    pipeline.step()  # 500 pending; 100 still waiting

    pipeline.revoked(queue, [TopicPartition(TOPIC, 0)])

    outputs = _outputs(producer)
    assert [o["transaction_id"] for o in outputs] == [f"tx-{i}" for i in range(500)]
    assert _committed(pipeline) == 500  # with its outputs, nothing past them


def test_a_loss_publishes_the_pending_batch_before_forgetting_its_partitions(
    build: Any,
) -> None:
    pipeline, queue, producer, _ = _backlog(build, 600)
    pipeline.step()

    pipeline.lost(queue, [TopicPartition(TOPIC, 0)])
    pipeline.publisher.flush(5)

    assert len(_outputs(producer)) == 500  # at least once: the new owner may score them too
    assert pipeline.commits.tracker.pending == 0  # nothing of the lost partition is tracked


def test_a_stop_publishes_and_commits_the_pending_batch(build: Any) -> None:
    pipeline, _, producer, _ = _backlog(build, 500)
    steps = iter([False, True])  # one step: the full batch is pending when the stop comes

    pipeline.run(lambda: next(steps))

    assert [o["transaction_id"] for o in _outputs(producer)] == [f"tx-{i}" for i in range(500)]
    assert _committed(pipeline) == 500


def test_light_traffic_is_not_held_back(build: Any) -> None:
    """A batch that is not full (no backlog) is published in the step that took it."""
    pipeline, _, producer, gated = _backlog(build, 20)

    pipeline.step()
    pipeline.publisher.flush(5)

    assert not pipeline._pending
    assert gated.threads == ["MainThread"]
    assert len(_outputs(producer)) == 20


def test_the_batch_before_last_completes_while_the_next_features_are_read(build: Any) -> None:
    """The work the loop gives the kernel (``meanwhile``) completes batch k while the
    features of batch k + 2 are being read: Redis answers while it is published."""
    pipeline, queue, producer, _ = _backlog(build, 2000)
    fetch = pipeline.kernel.features.fetch
    published: list[tuple[int, int]] = []  # outputs before and after each read's wait

    def splitting(cards: Any, merchants: Any, *, meanwhile: Any = None) -> Any:
        before = pipeline.stats.scored
        if meanwhile is not None:
            meanwhile()
        published.append((before, pipeline.stats.scored))
        return fetch(cards, merchants)

    pipeline.kernel.features.fetch = splitting
    _run_until_idle(pipeline, queue)
    pipeline.publisher.flush(5)

    assert published == [(0, 0), (0, 0), (0, 500), (500, 1000)]
    outputs = _outputs(producer)
    assert [o["transaction_id"] for o in outputs] == [f"tx-{i}" for i in range(2000)]
    assert all(o["reasons"] for o in outputs)


def test_a_stage_s_time_leaves_out_the_batch_completed_inside_it(monkeypatch: Any) -> None:
    """The metrics' per-stage time is the batch's own: a backlog's enrich stage holds the
    completion of the batch before last (``resume``), whose time is not counted in it."""
    from streamer.observability import metrics

    clock = [0.0]
    monkeypatch.setattr(metrics.time, "perf_counter", lambda: clock[0])
    telemetry = metrics.Telemetry()

    with telemetry.stage("enrich"):
        clock[0] += 0.001
        with telemetry.resume(None), telemetry.stage("publish"):
            clock[0] += 0.050
        clock[0] += 0.002

    assert telemetry.stages["enrich"].total == pytest.approx(0.003)
    assert telemetry.stages["publish"].total == pytest.approx(0.050)
