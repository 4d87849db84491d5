"""Columnar decoding: a batch of payloads straight into columns, no dict per event.

The fast path must decode exactly what decoding one payload at a time gives, for every
record it takes, and take nothing it is unsure of: a batch holding any payload that is not
a plain datum of the reader schema under the same header is left whole to ``decode``. The
kernel must score events held as columns exactly as the same events as dicts, rejections
included, and the batch-wide validation must never pass a batch holding an event that
``validate`` rejects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer import ScoringKernel, load_model
from streamer.codec import codegen, wire
from streamer.codec import schemas as avro
from streamer.codec.columns import Records, column_of, optional_column_of, take
from streamer.errors import Rejection
from streamer.kafka.batch import sort_batch
from streamer.model.registry import LoadedModel
from streamer.scoring.validation import all_plausible, validate
from streamer.testing import InMemoryFeatures, sample_event
from tests.fixtures.events import CURRENT_SCHEMA, REPO, V1_EVENT, V1_SCHEMA, avro_body
from tests.unit.test_codec_differential import mutations, records
from tests.unit.test_validation_fast_path import EVENT_FIELDS, NOW
from tests.unit.test_wire import FORMATS, CountingRegistry, decoder, encoded, frame

PLAIN = avro.without_logical_types(avro.transaction_schema())
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _c_decoder() -> Any:
    decode = codegen.reader_for(PLAIN, PLAIN)
    assert type(decode).__name__ == "Codec", "the C decoder is not in use"
    return decode


@pytest.fixture
def registry() -> CountingRegistry:
    return CountingRegistry()


def _events(n: int) -> list[dict[str, Any]]:
    return [
        sample_event(transaction_id=f"t{i}", card_id=f"card-{i % 7}", amount_minor=100 + i,
                     device_id=None if i % 3 else f"dev-{i}")
        for i in range(n)
    ]  # fmt: skip


def _as_dicts(records: Records) -> list[dict[str, Any]]:
    return [records[i] for i in range(len(records))]


# -- the C function ----------------------------------------------------------------------


@PROPERTY
@given(data=st.data())
def test_c_columns_hold_what_each_payload_decodes_to(data: st.DataObject) -> None:
    decode = _c_decoder()
    header = data.draw(st.binary(max_size=10), label="header")
    batch = data.draw(st.lists(records(PLAIN), min_size=1, max_size=8), label="records")
    payloads = [decode_encode(record, header) for record in batch]
    columns = decode.decode_columns(payloads, header, 1_000_000)
    assert columns is not None
    expected = [decode(payload, len(header))[0] for payload in payloads]
    assert [dict(zip(decode.fields, row, strict=True)) for row in zip(*columns, strict=True)] == (
        expected
    )
    for column, name in zip(columns, decode.fields, strict=True):  # the same types, too
        assert [type(v) for v in column] == [type(e[name]) for e in expected]


def decode_encode(record: dict[str, Any], header: bytes) -> bytes:
    return bytes(codegen.encoder_for(PLAIN)(record, header))


@PROPERTY
@given(data=st.data())
def test_one_payload_the_c_code_does_not_take_leaves_the_whole_batch(
    data: st.DataObject,
) -> None:
    decode = _c_decoder()
    good = [decode_encode(r, b"\x00") for r in data.draw(st.lists(records(PLAIN), max_size=4))]
    bad = data.draw(mutations(decode_encode(data.draw(records(PLAIN)), b"")), label="fuzzed")
    where = data.draw(st.integers(0, len(good)), label="where")
    payloads = [*good[:where], b"\x00" + bad, *good[where:]]
    columns = decode.decode_columns(payloads, b"\x00", 1_000_000)
    try:
        record, end = decode(payloads[where], 1)
        alone = end == len(payloads[where])
    except Exception:  # noqa: BLE001 - the generated decoder refuses it
        alone = False
    if not alone:
        assert columns is None
    if columns is not None:  # a mutation that is still one plain datum: decoded like the rest
        assert [c[where] for c in columns] == [record[name] for name in decode.fields]


@pytest.mark.parametrize(
    "payloads",
    [
        [b""],  # empty
        [None],  # a tombstone
        [bytearray(b"\x00")],  # not bytes
        ["text"],
    ],
    ids=["empty", "tombstone", "bytearray", "str"],
)
def test_payloads_that_are_not_plain_bytes_give_none(payloads: list[Any]) -> None:
    decode = _c_decoder()
    good = decode_encode(sample_event(), b"")
    assert decode.decode_columns([good, *payloads], b"", 1_000_000) is None
    assert decode.decode_columns([good], b"", 1_000_000) is not None


def test_a_payload_over_the_limit_or_under_another_header_gives_none() -> None:
    decode = _c_decoder()
    good = decode_encode(sample_event(), b"\x00\x00\x00\x00\x07")
    assert decode.decode_columns([good], good[:5], len(good)) is not None
    assert decode.decode_columns([good], good[:5], len(good) - 1) is None
    assert decode.decode_columns([good], b"\x00\x00\x00\x00\x08", len(good)) is None
    assert decode.decode_columns([good + b"\x00"], good[:5], 10**6) is None  # trailing byte
    assert decode.decode_columns([], b"", 10) == tuple([] for _ in decode.fields)
    with pytest.raises(TypeError):
        decode.decode_columns((good,), b"", 10)  # a tuple, not a list


# -- the decoders -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_framing_decodes_a_batch_as_columns_equal_to_one_by_one(
    fmt: wire.WireFormat, registry: CountingRegistry
) -> None:
    dec = decoder(fmt, registry)
    payloads = [encoded(fmt, registry, event) for event in _events(30)]
    one_by_one = [dec.decode(p) for p in payloads]  # also learns the schema id
    columns = dec.decode_columns(payloads)
    assert isinstance(columns, Records)
    assert _as_dicts(columns) == one_by_one


def test_a_batch_with_an_older_writer_schema_is_left_to_one_by_one(
    registry: CountingRegistry,
) -> None:
    dec = decoder("confluent", registry)
    current = encoded("confluent", registry, sample_event())
    old = frame("confluent", V1_SCHEMA, avro_body(V1_SCHEMA, V1_EVENT), registry)
    assert not isinstance(dec.decode(old), Rejection)  # resolvable, one by one
    assert dec.decode_columns([old]) is None  # Avro resolution: not the C decoder's
    dec.decode(current)
    assert dec.decode_columns([current, old]) is None  # two headers in one batch
    assert dec.decode_columns([current, current]) is not None


def test_an_unknown_schema_id_is_looked_up_one_by_one(registry: CountingRegistry) -> None:
    dec = decoder("confluent", registry)
    payload = frame(
        "confluent", CURRENT_SCHEMA, avro_body(CURRENT_SCHEMA, sample_event()), registry
    )
    assert dec.decode_columns([payload]) is None  # not looked up yet: no registry call here
    assert registry.gets == 0
    assert not isinstance(dec.decode(payload), Rejection)
    assert dec.decode_columns([payload]) is not None


def test_a_batch_with_a_rejection_is_sorted_one_by_one_and_loses_nothing() -> None:
    dec = wire.make_decoder("raw", reader_schema=avro.transaction_schema())
    encode = wire.make_encoder("raw", schema=avro.transaction_schema()).encode
    values = [encode(e) for e in _events(5)]
    values[2] = b"\xff garbage"
    messages = [Message(topic="t", partition=0, offset=i, value=v) for i, v in enumerate(values)]

    batch = sort_batch(messages, dec)

    assert [e["transaction_id"] for e in batch.events] == ["t0", "t1", "t3", "t4"]
    assert [(m.offset(), r.error_class) for m, r in batch.rejected] == [(2, "NotAvro")]
    assert batch.offsets == {("t", 0): [0, 1, 2, 3, 4]}

    clean = sort_batch([m for m in messages if m.offset() != 2], dec)
    assert isinstance(clean.events, Records)
    assert list(clean.events) == list(batch.events)
    assert clean.positions == [(("t", 0), o) for o in (0, 1, 3, 4)]
    assert clean.offsets == {("t", 0): [0, 1, 3, 4]}


# -- Records ---------------------------------------------------------------------------------


def test_records_read_as_a_sequence_of_dicts() -> None:
    events = _events(4)
    records = Records({k: [e[k] for e in events] for k in events[0]}, 4)
    assert list(records) == events
    assert records[-1] == events[-1]
    assert _as_dicts(records[1:3]) == events[1:3]
    with pytest.raises(IndexError):
        records[4]
    assert records.take([0, 1, 2, 3]) is records
    assert list(records.take([3, 1])) == [events[3], events[1]]
    assert list(take(records, [2])) == [events[2]]
    assert take(events, [2, 0]) == [events[2], events[0]]
    assert column_of(records, "card_id") == column_of(events, "card_id")
    assert optional_column_of(records, "no_such_field", 7) == [7] * 4
    assert optional_column_of([{"a": 1}, {}], "a") == [1, None]
    assert list(Records({}, 0)) == []


# -- the kernel ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("fraud-gbt", REPO / "models")


def test_the_kernel_scores_columns_as_it_scores_dicts(model: LoadedModel) -> None:
    events = _events(40)
    events[5]["amount_minor"] = -1  # rejected by validation
    events[9]["currency"] = "XXQ"
    records = Records({k: [e[k] for e in events] for k in events[0]}, len(events))
    kernel = ScoringKernel(model, InMemoryFeatures(model), clock=lambda: NOW)
    sources = [(0, i) for i in range(len(events))]

    as_dicts = kernel.score(events, sources)
    as_columns = kernel.score(records, sources)

    assert as_columns.rows == as_dicts.rows
    assert as_columns.rejected == as_dicts.rejected
    assert [r for r, _ in as_columns.rejected] == [5, 9]
    np.testing.assert_array_equal(as_columns.scores, as_dicts.scores)
    np.testing.assert_array_equal(as_columns.matrix, as_dicts.matrix)
    assert as_columns.records == as_dicts.records


# -- batch-wide validation -----------------------------------------------------------------------


def test_a_batch_of_plausible_events_passes_at_once() -> None:
    events = _events(50)
    columns = {k: [e[k] for e in events] for k in events[0]}
    assert all(validate(e, NOW) is None for e in events)
    assert all_plausible(columns, len(events), NOW)
    assert all_plausible({}, 0, NOW)


@settings(max_examples=2000, deadline=None)
@given(
    changes=st.lists(
        st.dictionaries(st.sampled_from(sorted(EVENT_FIELDS)), st.none(), max_size=2).flatmap(
            lambda keys: st.fixed_dictionaries({k: EVENT_FIELDS[k] for k in keys})
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_the_batch_check_never_passes_an_event_validate_rejects(
    changes: list[dict[str, Any]],
) -> None:
    events = [sample_event(**change) for change in changes]
    columns = {k: [e[k] for e in events] for k in events[0]}
    if all_plausible(columns, len(events), NOW):
        assert all(validate(e, NOW) is None for e in events)


def test_a_missing_column_or_an_unusual_type_is_left_to_validate() -> None:
    events = _events(3)
    columns: dict[str, list[Any]] = {k: [e[k] for e in events] for k in events[0]}
    assert all_plausible(columns, 3, NOW)
    for name, value in [
        ("amount_minor", 100.0),
        ("event_time", True),
        ("mcc", "5411"),
        ("device_id", b"dev"),
        ("merchant_country", ["DE"]),
        ("card_id", ""),
    ]:
        broken = {**columns, name: [*columns[name][:2], value]}
        assert not all_plausible(broken, 3, NOW), name
    assert not all_plausible({k: v for k, v in columns.items() if k != "mcc"}, 3, NOW)
    assert all_plausible({k: v for k, v in columns.items() if k != "device_id"}, 3, NOW)
