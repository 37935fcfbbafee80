"""Property-based tests (hypothesis) for the firmware profiles: whatever bytes arrive on
whatever topic, a profile answers None (not its topic) or a Decoded result, never raises,
and what it accepts is storable."""

from __future__ import annotations

import json
import math
from datetime import UTC

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mqtthub.messages import METRIC_PATTERN, Accepted, Rejected, group_readings, valid_device_id
from mqtthub.profiles.base import Decoded, Profile
from mqtthub.profiles.esphome import EsphomeProfile
from mqtthub.profiles.homie import HomieProfile
from mqtthub.profiles.mapping import load_mappings
from mqtthub.profiles.tasmota import TasmotaProfile
from support.profile_checks import LIMIT, T0

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MAPPINGS = load_mappings(
    """
[[mapping]]
topic = "acme/{device}/telemetry"
kind = "sensor"
metrics = { t = "env.temp", first = "$[0].v", all = "env" }
timestamp = "time"
[[mapping]]
topic = "flat/+/{device}/#"
kind = "heartbeat"
flatten = true
timestamp = "when"
timestamp_format = "%Y-%m-%d %H:%M"
timezone = "Europe/Berlin"
[[mapping]]
topic = "acme/{device}/presence"
kind = "status"
status = "state"
timestamp = "ts"
timestamp_format = "epoch_ms"
"""
)
PROFILES: tuple[Profile, ...] = (
    TasmotaProfile(UTC),
    EsphomeProfile(),
    HomieProfile(),
    HomieProfile("a/homie"),
    MAPPINGS,
)

segments = st.one_of(
    st.sampled_from(["d1", ".", "..", "", "+", "#", "$state", "$unit", "$name", "x" * 65]),
    st.sampled_from(["SENSOR", "STATE", "LWT", "status", "state", "sensor", "light", "switch"]),
    st.text(max_size=70),
)
topics = st.one_of(
    st.lists(segments, min_size=1, max_size=7).map("/".join),
    st.builds(
        lambda root, rest: "/".join([root, *rest]),
        st.sampled_from(["tele", "homie", "a/homie", "acme", "flat/x", "node"]),
        st.lists(segments, min_size=1, max_size=5),
    ),
    st.text(max_size=200),
)
# Firmware-shaped JSON: the keys and strings the profiles look at, among any others.
keys = st.sampled_from(["Time", "env", "temp", "state", "ts", "when", "v", "ENERGY"])
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["ON", "OFF", "2024-01-31T12:00:00", "2024-01-31 12:00", "nan", "12.5"]),
    st.text(max_size=20),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(keys | st.text(max_size=70), inner, max_size=5)
    ),
    max_leaves=30,
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from(
        [b"nan", b"NaN", b"inf", b"1e999", b"-0", b"ON", b"online", b"Offline", b"lost", b""]
    ),
    st.integers(0, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
)


def check(decoded: Decoded | None) -> None:
    """A dead letter has a short detail; an accepted message is storable as it is."""
    if decoded is None:
        return
    result = decoded.result
    if isinstance(result, Rejected):
        assert len(result.detail) <= 400
    elif isinstance(result, Accepted):
        assert valid_device_id(result.device_id)
        assert math.isfinite(result.ts)
        for metric, value, ts in result.readings:
            assert METRIC_PATTERN.fullmatch(metric)
            assert math.isfinite(value)
            assert math.isfinite(ts)
        assert result.samples == group_readings(result.device_id, result.readings)
    else:
        assert result is None
    for metric, info in decoded.info.items():
        assert METRIC_PATTERN.fullmatch(metric)
        assert len(info.unit or "") <= 32
        assert len(info.name or "") <= 128


@PROPERTY
@given(topic=topics, payload=payloads)
def test_no_profile_raises_on_any_message(topic: str, payload: bytes) -> None:
    """No topic or payload makes a profile raise; what it accepts can be stored."""
    for profile in PROFILES:
        check(profile.decode(topic, payload, received_at=T0, max_payload=LIMIT))


@PROPERTY
@given(document=json_values, profile=st.sampled_from(PROFILES), data=st.data())
def test_json_of_any_shape_on_a_profiles_own_topic_never_raises(
    document: object, profile: Profile, data: st.DataObject
) -> None:
    """Any JSON document on one of the profile's own topics is read or dead-lettered."""
    topic = data.draw(st.sampled_from(profile.subscriptions())).replace("+", "d1")
    topic = topic.replace("#", "x/y")
    check(profile.decode(topic, json.dumps(document).encode(), received_at=T0, max_payload=LIMIT))
