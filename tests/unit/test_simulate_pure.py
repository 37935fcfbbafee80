"""Unit tests for mqtthub.simulation_values: the pure half of ``mqtthub simulate``."""

from __future__ import annotations

import math
import random
import ssl
import statistics
from collections import Counter

import orjson
import pytest
from gmqtt.mqtt.handler import MQTTConnectError

from mqtthub import simulation_values as sv
from mqtthub.config import BrokerEndpoint, MqttVersion
from mqtthub.messages import Accepted, Kind, Rejected, Status, parse

ENDPOINT = BrokerEndpoint("127.0.0.1", 1883, False, None, None)
NOW = 1_700_000_000.0


def parsed(topic: str, payload: bytes) -> Accepted | Rejected:
    """What ``mqtthub serve`` makes of a simulated message."""
    return parse(topic, payload, received_at=NOW, prefix="devices", max_payload=65536)


def test_device_ids_are_numbered_with_at_least_four_digits() -> None:
    assert sv.device_ids(3, "sim") == ["sim0001", "sim0002", "sim0003"]
    ids = sv.device_ids(12_345, "esp")
    assert (ids[0], ids[-1], len(set(ids))) == ("esp00001", "esp12345", 12_345)


def test_client_ids_are_unique_unless_duplicates_are_asked_for() -> None:
    assert sv.client_ids(3, "sim", "site/a", 0) == [
        "sim-site-a-0001",
        "sim-site-a-0002",
        "sim-site-a-0003",
    ]
    shared = sv.client_ids(10, "sim", "devices", 3)
    assert len(shared) == 10
    assert shared[7:] == shared[:3]  # the last three reuse the first three
    assert len(set(shared)) == 7


def test_templates_fill_in_the_device_id_and_reject_other_placeholders() -> None:
    assert sv.render_template("dev-{device_id}", "sim0007") == "dev-sim0007"
    assert sv.render_template("shared-user", "sim0007") == "shared-user"
    assert sv.render_template(None, "sim0007") is None
    for bad in ("{user}", "{0}", "{device_id"):
        with pytest.raises(ValueError, match="may only use"):
            sv.render_template(bad, "sim0001")


def test_first_delays_spread_over_one_period_and_periods_vary_by_ten_percent() -> None:
    rng = random.Random(1)
    firsts = [sv.first_delay(5.0, rng) for _ in range(5000)]
    assert 0.0 <= min(firsts) < 0.1
    assert 4.9 < max(firsts) <= 5.0
    periods = [sv.jittered(5.0, rng) for _ in range(5000)]
    assert 4.5 <= min(periods) < 4.55
    assert 5.45 < max(periods) <= 5.5
    assert statistics.fmean(periods) == pytest.approx(5.0, rel=0.01)


def test_time_to_drop_matches_the_per_minute_probability() -> None:
    rng = random.Random(2)
    assert sv.time_to_drop(0.0, rng) == math.inf
    for probability in (0.1, 0.5, 0.9):
        samples = [sv.time_to_drop(probability, rng) for _ in range(20_000)]
        within_a_minute = sum(sample <= 60.0 for sample in samples) / len(samples)
        assert within_a_minute == pytest.approx(probability, abs=0.015)
    assert math.isfinite(sv.time_to_drop(1.0, rng))  # 1.0 means "very often", not "never"


def test_values_drift_slowly_around_the_device_baseline_within_bounds() -> None:
    rng = random.Random(3)
    home = values = sv.initial_values(rng)
    assert set(values) == set(sv.WALKS)
    seen: dict[str, list[float]] = {name: [] for name in values}
    for _ in range(20_000):
        previous, values = values, sv.drift(values, rng, home)
        for name, value in values.items():
            walk = sv.WALKS[name]
            assert walk.low <= value <= walk.high, (name, value)
            assert abs(value - previous[name]) < 6 * walk.step + 0.01 * (walk.high - walk.low)
            seen[name].append(value)
    for name, history in seen.items():
        walk = sv.WALKS[name]
        assert max(history) - min(history) > 10 * walk.step, name  # it really moves
        assert statistics.fmean(history) == pytest.approx(home[name], abs=4 * walk.step), name


def test_drift_reflects_off_the_bounds() -> None:
    rng = random.Random(8)
    edge = {name: walk.low for name, walk in sv.WALKS.items()}
    for _ in range(1000):
        edge = sv.drift(edge, rng, home={name: walk.low for name, walk in sv.WALKS.items()})
        assert all(
            sv.WALKS[name].low <= value <= sv.WALKS[name].high for name, value in edge.items()
        )


def test_drift_does_not_change_its_input() -> None:
    values = sv.initial_values(random.Random(4))
    before = dict(values)
    sv.drift(values, random.Random(5))
    assert values == before


def test_sensor_payload_has_the_seven_fields_and_is_accepted_by_serve() -> None:
    values = sv.initial_values(random.Random(6))
    payload = sv.sensor_payload("sim0001", values, 4242)
    document = orjson.loads(payload)
    assert list(document) == ["device_id", *sv.SENSOR_FIELDS]
    assert document["uptime"] == 4242
    assert isinstance(document["rssi"], int)
    assert isinstance(document["light"], int)
    result = parsed("devices/sim0001/sensor", payload)
    assert isinstance(result, Accepted)
    assert result.kind is Kind.SENSOR
    assert sorted(metric for metric, _, _ in result.readings) == sorted(sv.SENSOR_FIELDS)


def test_heartbeat_and_status_payloads_are_accepted_by_serve() -> None:
    heartbeat = sv.heartbeat_payload("sim0002", 77, -61.4)
    assert orjson.loads(heartbeat) == {"device_id": "sim0002", "uptime": 77, "rssi": -61}
    result = parsed("devices/sim0002/heartbeat", heartbeat)
    assert isinstance(result, Accepted)
    assert sorted(result.readings) == [("rssi", -61.0, NOW), ("uptime", 77.0, NOW)]
    goodbye = parsed("devices/sim0002/status", sv.goodbye_payload("sim0002", NOW - 1))
    assert isinstance(goodbye, Accepted)
    assert goodbye.status is Status.OFFLINE
    assert goodbye.timed  # so serve reports status_message, not last_will


def test_malformed_payloads_become_the_dead_letter_they_are_named_after() -> None:
    rng = random.Random(7)
    kinds: Counter[str] = Counter()
    for _ in range(300):
        values = sv.drift(sv.initial_values(rng), rng)
        kind, payload = sv.malformed_payload("sim0003", values, 99, rng)
        result = parsed("devices/sim0003/sensor", payload)
        assert isinstance(result, Rejected), (kind, payload)
        assert result.reason == kind, (kind, payload, result.detail)
        kinds[kind] += 1
    assert set(kinds) == set(sv.MALFORMED_KINDS)
    assert min(kinds.values()) > 60  # an even mix


def test_connect_failures_are_named() -> None:
    assert sv.connect_failure(ConnectionRefusedError(), mqtt5=False) == (
        "connection_refused",
        False,
    )
    assert sv.connect_failure(ssl.SSLError(), mqtt5=False) == ("tls_error", False)
    assert sv.connect_failure(TimeoutError(), mqtt5=False) == ("timeout", False)
    assert sv.connect_failure(OSError("unreachable"), mqtt5=False) == ("network_error", False)
    assert sv.connect_failure(MQTTConnectError(5), mqtt5=False) == ("not_authorized", True)
    assert sv.connect_failure(MQTTConnectError(0x87), mqtt5=True) == ("not_authorized", True)
    assert sv.connect_failure(MQTTConnectError(3), mqtt5=False) == ("server_unavailable", False)


def test_connect_pacer_hands_out_slots_at_the_rate() -> None:
    pacer = sv.ConnectPacer(rate=4.0)
    slots = [pacer.reserve(now=10.0) for _ in range(5)]
    assert slots == [10.0, 10.25, 10.5, 10.75, 11.0]
    assert pacer.reserve(now=20.0) == 20.0  # an idle pacer does not save up a burst


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"devices": 0}, "devices"),
        ({"sensor_interval": 0.0}, "intervals"),
        ({"qos": 2}, "qos"),
        ({"connect_rate": 0.0}, "connect rate"),
        ({"drop_rate": 1.5}, "drop rate"),
        ({"malformed_rate": -0.1}, "malformed rate"),
        ({"devices": 5, "duplicate_client_ids": 3}, "duplicate client ids: 0 to 2"),
        ({"mqtt_version": MqttVersion.AUTO}, "mqtt version"),
        ({"username_template": "{nope}"}, "may only use"),
    ],
)
def test_fleet_config_rejects_what_no_fleet_can_run_with(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        sv.FleetConfig(endpoint=ENDPOINT, **changes)  # type: ignore[arg-type]


def test_summary_lines_name_every_counter() -> None:
    summary = sv.FleetSummary(devices=20, elapsed=4.0, connected=18, connects=21, drops=1)
    summary.sent.update(status=21, sensor=30, heartbeat=10, malformed=3)
    summary.malformed.update(invalid_json=2, non_finite_number=1)
    summary.failure_reasons.update(connection_refused=2)
    summary.connect_failures = 2
    assert summary.messages == 64
    assert summary.errors == 2
    line = summary.progress_line(16.0)
    assert "connected 18/20" in line
    assert "16.0 msg/s" in line
    assert "errors 2" in line
    report = summary.report()
    assert "heartbeat 10, malformed 3, sensor 30, status 21" in report
    assert "16.0 msg/s" in report
    assert "chaos drops 1" in report
    assert "invalid_json 2, non_finite_number 1" in report
    assert "connection_refused 2" in report
