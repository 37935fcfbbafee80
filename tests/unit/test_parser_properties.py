"""Property-based tests (hypothesis) for the parser and the batch builder.

Whatever bytes arrive on whatever topic, parsing answers Accepted or Rejected with a short
detail, never raises, and every message of a batch is either stored or dead-lettered.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqtthub.messages import (
    METRIC_PATTERN,
    Accepted,
    Kind,
    Rejected,
    group_readings,
    parse,
    valid_device_id,
)
from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine

T0 = 1_700_000_000.0
MAX_PAYLOAD = 65536
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

segments = st.one_of(
    st.sampled_from(["d1", "esp-8266", ".", "..", "", "+", "#", "a:b", "x" * 65, "x" * 64]),
    st.text(max_size=80),
)
kinds = st.one_of(st.sampled_from([k.value for k in Kind]), st.text(max_size=12))
topics = st.one_of(
    st.builds(lambda d, k: f"devices/{d}/{k}", segments, kinds),
    st.text(max_size=200),
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=70), children, max_size=5)
    ),
    max_leaves=30,
)
json_payloads = json_values.map(lambda v: json.dumps(v).encode())
payloads = st.one_of(
    st.binary(max_size=300),
    json_payloads,
    st.builds(
        lambda depth, open_, close: open_ * depth + close * depth,
        st.integers(0, 5000),
        st.sampled_from([b"[", b'{"a":']),
        st.sampled_from([b"]", b"}"]),
    ),
    st.sampled_from(
        [b"NaN", b"Infinity", b"-Infinity", b'{"t": 1e999}', b'{"t": NaN}', b"\xff\xfe"]
    ),
)


def _parse(topic: str, payload: bytes) -> Accepted | Rejected:
    return parse(topic, payload, received_at=T0, prefix="devices", max_payload=MAX_PAYLOAD)


@PROPERTY
@given(topic=topics, payload=payloads)
def test_any_message_is_accepted_or_rejected_with_a_short_detail(
    topic: str, payload: bytes
) -> None:
    """No topic or payload makes the parser raise; a rejection's detail stays short."""
    result = _parse(topic, payload)
    if isinstance(result, Rejected):
        assert len(result.detail) <= 400
    else:
        assert valid_device_id(result.device_id)
        for metric, value, ts in result.readings:
            assert METRIC_PATTERN.fullmatch(metric)
            assert math.isfinite(value)
            assert math.isfinite(ts)


@PROPERTY
@given(document=json_values)
def test_sensor_json_of_any_shape_never_raises(document: Any) -> None:
    """Any JSON document on a sensor topic is accepted with finite readings or rejected."""
    result = _parse("devices/d1/sensor", json.dumps(document).encode())
    assert isinstance(result, Accepted | Rejected)


@PROPERTY
@given(
    values=st.dictionaries(
        st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True).filter(
            lambda k: k not in {"device_id", "ts", "status"}
        ),
        st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-(2**53), 2**53),
        min_size=1,
        max_size=20,
    )
)
def test_valid_readings_are_stored_exactly(values: dict[str, float]) -> None:
    """A flat object of valid metric names and finite numbers gives exactly those readings."""
    result = _parse("devices/d1/sensor", orjson.dumps(values))
    assert isinstance(result, Accepted)
    assert {m: v for m, v, _ts in result.readings} == {k: float(v) for k, v in values.items()}
    assert result.samples == (("d1", T0, {k: float(v) for k, v in values.items()}),)


@PROPERTY
@given(topic=topics, payload=payloads)
def test_samples_are_the_readings_grouped_by_time(topic: str, payload: bytes) -> None:
    """What the pipeline stores (samples, built straight from the JSON) holds exactly the
    readings, grouped by time, a metric repeated at one time keeping its first value."""
    result = _parse(topic, payload)
    if isinstance(result, Accepted):
        assert result.samples == group_readings(result.device_id, result.readings)
        rebuilt = Accepted(result.device_id, result.kind, result.ts, result.readings)
        assert rebuilt.samples == result.samples


@PROPERTY
@given(messages=st.lists(st.tuples(topics, payloads, st.booleans()), max_size=30))
def test_every_message_of_a_batch_is_stored_or_dead_lettered(
    messages: list[tuple[str, bytes, bool]],
) -> None:
    """Counts add up: accepted + dead letters == messages, whatever the mix."""
    raws = [RawMessage(t, p, 1, retain, T0 + i) for i, (t, p, retain) in enumerate(messages)]
    batch = build_batch(
        parse_all(raws, prefix="devices", max_payload=MAX_PAYLOAD), presence=PresenceEngine()
    )
    assert batch.stored + len(batch.dead_letters) == len(messages)
