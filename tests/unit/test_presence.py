"""Unit tests for mqtthub.presence: when a device is online or offline, and why.

Every test uses explicit times (seconds after T0): no clocks, no sleeps.
"""

from __future__ import annotations

import pytest

from mqtthub.messages import Accepted, Kind, Status, parse
from mqtthub.presence import DeviceState, PresenceEngine, PresenceReason, Transition

# 2023-11-14T22:13:20Z
T0 = 1_700_000_000.0
MAX_PAYLOAD = 65536


def heartbeat(device_id: str = "d1", *, at: float) -> Accepted:
    return Accepted(device_id, Kind.HEARTBEAT, at)


def sensor(device_id: str = "d1", *, at: float) -> Accepted:
    return Accepted(device_id, Kind.SENSOR, at, (("temp", 21.5, at),))


def status(device_id: str, value: Status, *, ts: float | None, at: float) -> Accepted:
    """A status message; ``ts=None`` means the payload carried no ts (e.g. a last will)."""
    return Accepted(
        device_id, Kind.STATUS, at if ts is None else ts, status=value, timed=ts is not None
    )


def parsed(topic: str, payload: bytes, *, at: float) -> Accepted:
    result = parse(topic, payload, received_at=at, prefix="devices", max_payload=MAX_PAYLOAD)
    assert isinstance(result, Accepted), result
    return result


def live(engine: PresenceEngine, message: Accepted, at: float) -> Transition | None:
    return engine.observe(message, received_at=at, retained=False)


def replayed(engine: PresenceEngine, message: Accepted, at: float) -> Transition | None:
    return engine.observe(message, received_at=at, retained=True)


def heartbeats(engine: PresenceEngine, *times: float, device_id: str = "d1") -> None:
    for at in times:
        live(engine, heartbeat(device_id, at=at), at)


def status_of(engine: PresenceEngine, device_id: str = "d1") -> Status:
    return engine.devices[device_id].status


# --- coming online ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [Kind.SENSOR, Kind.HEARTBEAT])
def test_first_message_from_a_new_device_brings_it_online_by_activity(kind: Kind) -> None:
    engine = PresenceEngine()
    message = sensor(at=T0) if kind is Kind.SENSOR else heartbeat(at=T0)

    transition = live(engine, message, T0)

    assert transition == Transition("d1", Status.ONLINE, PresenceReason.ACTIVITY, T0, str(kind))
    assert status_of(engine) is Status.ONLINE


def test_online_status_message_from_a_new_device_is_reason_status_message() -> None:
    engine = PresenceEngine()

    transition = live(engine, status("d1", Status.ONLINE, ts=T0, at=T0), T0)

    assert transition is not None
    assert (transition.status, transition.reason) == (Status.ONLINE, PresenceReason.STATUS_MESSAGE)


def test_any_message_from_an_offline_device_brings_it_back_online_by_activity() -> None:
    engine = PresenceEngine()
    live(engine, status("d1", Status.ONLINE, ts=T0, at=T0), T0)
    live(engine, status("d1", Status.OFFLINE, ts=T0 + 5, at=T0 + 5), T0 + 5)

    transition = live(engine, sensor(at=T0 + 60), T0 + 60)

    assert transition == Transition("d1", Status.ONLINE, PresenceReason.ACTIVITY, T0 + 60, "sensor")


def test_a_device_that_timed_out_comes_back_with_its_next_heartbeat() -> None:
    engine = PresenceEngine(default_timeout=30)
    heartbeats(engine, T0)
    assert len(engine.expire(T0 + 30)) == 1

    transition = live(engine, heartbeat(at=T0 + 45), T0 + 45)

    assert transition is not None
    assert (transition.status, transition.reason) == (Status.ONLINE, PresenceReason.ACTIVITY)
    assert transition.at == T0 + 45


# --- going offline: status messages and last wills ------------------------------------------


def test_offline_status_message_with_ts_is_reason_status_message() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0)
    payload = f'{{"status": "offline", "ts": {T0 + 10}}}'.encode()
    message = parsed("devices/d1/status", payload, at=T0 + 11)

    transition = live(engine, message, T0 + 11)

    assert transition == Transition("d1", Status.OFFLINE, PresenceReason.STATUS_MESSAGE, T0 + 11)


@pytest.mark.parametrize("payload", [b"offline", b'"offline"', b'{"status": "offline"}'])
def test_offline_without_ts_is_the_last_will(payload: bytes) -> None:
    """The broker publishes the device's static will payload, which cannot carry a ts."""
    engine = PresenceEngine()
    heartbeats(engine, T0)
    message = parsed("devices/d1/status", payload, at=T0 + 1)

    transition = live(engine, message, T0 + 1)

    assert transition == Transition("d1", Status.OFFLINE, PresenceReason.LAST_WILL, T0 + 1)
    assert status_of(engine) is Status.OFFLINE


def test_a_live_last_will_flips_a_device_that_was_just_active() -> None:
    """A will has no ts, so it can never be 'late': the broker sends it when it happens."""
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10)

    transition = live(engine, status("d1", Status.OFFLINE, ts=None, at=T0 + 10.5), T0 + 10.5)

    assert transition is not None
    assert transition.reason is PresenceReason.LAST_WILL


def test_late_offline_older_than_the_last_activity_does_not_flip_the_device() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 100)

    late = status("d1", Status.OFFLINE, ts=T0 + 95, at=T0 + 101)

    assert live(engine, late, T0 + 101) is None
    assert status_of(engine) is Status.ONLINE


def test_offline_newer_than_the_last_activity_flips_the_device() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 100)

    transition = live(engine, status("d1", Status.OFFLINE, ts=T0 + 100, at=T0 + 101), T0 + 101)

    assert transition is not None
    assert (transition.status, transition.reason) == (Status.OFFLINE, PresenceReason.STATUS_MESSAGE)


def test_a_late_offline_does_not_block_a_later_real_offline() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0 + 100)
    assert live(engine, status("d1", Status.OFFLINE, ts=T0 + 50, at=T0 + 101), T0 + 101) is None

    transition = live(engine, status("d1", Status.OFFLINE, ts=T0 + 120, at=T0 + 121), T0 + 121)

    assert transition is not None
    assert transition.reason is PresenceReason.STATUS_MESSAGE


@pytest.mark.parametrize("ts", [None, T0 - 3600], ids=["retained_will", "retained_timed"])
def test_retained_offline_replayed_by_the_broker_does_not_flip_an_active_device(
    ts: float | None,
) -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10)

    transition = replayed(engine, status("d1", Status.OFFLINE, ts=ts, at=T0 + 11), T0 + 11)

    assert transition is None
    assert status_of(engine) is Status.ONLINE


# --- heartbeat deadlines ------------------------------------------------------------------


def test_device_heartbeating_every_10_s_goes_offline_after_30_s_not_before() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)
    assert engine.devices["d1"].learned_interval == 10

    assert engine.expire(T0 + 20 + 29.9) == []
    assert status_of(engine) is Status.ONLINE
    [transition] = engine.expire(T0 + 50)

    assert transition.device_id == "d1"
    assert transition.status is Status.OFFLINE
    assert transition.reason is PresenceReason.HEARTBEAT_TIMEOUT
    assert transition.at == T0 + 50
    assert "30.0 s" in transition.detail
    assert status_of(engine) is Status.OFFLINE


def test_a_heartbeat_before_the_deadline_pushes_it_back() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20, T0 + 45)  # one heartbeat late, not three

    assert engine.expire(T0 + 70) == []
    assert len(engine.expire(T0 + 45 + 30)) == 1  # learned interval: median(10, 10, 25) = 10


def test_any_message_counts_as_activity_for_the_deadline() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)
    live(engine, sensor(at=T0 + 40), T0 + 40)

    assert engine.expire(T0 + 69) == []
    assert len(engine.expire(T0 + 70)) == 1


def test_missed_intervals_is_configurable() -> None:
    engine = PresenceEngine(missed_intervals=5)
    heartbeats(engine, T0, T0 + 10, T0 + 20)

    assert engine.expire(T0 + 69) == []
    assert len(engine.expire(T0 + 70)) == 1


def test_learned_interval_is_the_median_so_one_late_heartbeat_does_not_stretch_it() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20, T0 + 80, T0 + 90)  # intervals 10, 10, 60, 10

    assert engine.devices["d1"].learned_interval == 10
    assert len(engine.expire(T0 + 120)) == 1


def test_learned_interval_follows_a_changed_heartbeat_rate() -> None:
    engine = PresenceEngine()
    heartbeats(engine, *(T0 + 10 * i for i in range(10)))  # every 10 s
    last = T0 + 90
    heartbeats(engine, *(last + 60 * i for i in range(1, 9)))  # then every 60 s (8 intervals)

    assert engine.devices["d1"].learned_interval == 60


def test_a_single_heartbeat_teaches_no_interval() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0)

    assert engine.devices["d1"].learned_interval is None
    assert engine.expire(T0 + 60) == []  # no guessed deadline


def test_learning_needs_two_intervals() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10)  # one interval only
    assert engine.devices["d1"].learned_interval is None
    assert engine.expire(T0 + 40) == []

    heartbeats(engine, T0 + 20)
    assert engine.devices["d1"].learned_interval == 10


def test_sensor_messages_do_not_teach_a_heartbeat_interval() -> None:
    engine = PresenceEngine()
    for at in (T0, T0 + 10, T0 + 20, T0 + 30):
        live(engine, sensor(at=at), at)

    assert engine.devices["d1"].learned_interval is None


def test_default_timeout_applies_to_devices_without_heartbeats() -> None:
    engine = PresenceEngine(default_timeout=60)
    live(engine, sensor(at=T0), T0)

    assert engine.expire(T0 + 59.9) == []
    assert len(engine.expire(T0 + 60)) == 1


def test_configured_default_timeout_is_used_instead_of_the_learned_interval() -> None:
    """default_timeout=None means learn; a configured one is what the operator asked for."""
    engine = PresenceEngine(default_timeout=100)
    heartbeats(engine, T0, T0 + 10, T0 + 20)

    assert engine.expire(T0 + 119) == []
    assert len(engine.expire(T0 + 120)) == 1


@pytest.mark.parametrize("default_timeout", [None, 20.0], ids=["learned", "default"])
def test_per_device_timeout_beats_the_default_and_the_learned_interval(
    default_timeout: float | None,
) -> None:
    engine = PresenceEngine(default_timeout=default_timeout)
    engine.load("d1", DeviceState(Status.ONLINE, T0, heartbeat_timeout=100))
    heartbeats(engine, T0, T0 + 10, T0 + 20)  # would learn 10 s, i.e. a 30 s deadline
    assert engine.devices["d1"].learned_interval == 10

    assert engine.expire(T0 + 119.9) == []
    [transition] = engine.expire(T0 + 120)
    assert transition.reason is PresenceReason.HEARTBEAT_TIMEOUT
    assert "100.0 s" in transition.detail


def test_expire_reports_only_the_devices_past_their_deadline() -> None:
    engine = PresenceEngine(default_timeout=30)
    live(engine, sensor("early", at=T0), T0)
    live(engine, sensor("late", at=T0 + 20), T0 + 20)

    assert [t.device_id for t in engine.expire(T0 + 30)] == ["early"]
    assert status_of(engine, "late") is Status.ONLINE
    assert [t.device_id for t in engine.expire(T0 + 50)] == ["late"]


# --- every transition exactly once ------------------------------------------------------------


def test_expire_does_not_report_an_already_offline_device_again() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)

    assert len(engine.expire(T0 + 50)) == 1
    assert engine.expire(T0 + 51) == []
    assert engine.expire(T0 + 10_000) == []


@pytest.mark.parametrize("how", ["status_message", "last_will", "manual"])
def test_expire_does_not_report_a_device_that_already_went_offline(how: str) -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)
    if how == "manual":
        assert engine.set_manual("d1", Status.OFFLINE, T0 + 21) is not None
    else:
        ts = T0 + 21 if how == "status_message" else None
        assert live(engine, status("d1", Status.OFFLINE, ts=ts, at=T0 + 21), T0 + 21) is not None

    assert engine.expire(T0 + 10_000) == []


def test_no_transition_when_the_state_does_not_change() -> None:
    engine = PresenceEngine()
    transitions = [
        live(engine, status("d1", Status.ONLINE, ts=T0, at=T0), T0),
        live(engine, status("d1", Status.ONLINE, ts=T0 + 1, at=T0 + 1), T0 + 1),
        live(engine, sensor(at=T0 + 2), T0 + 2),
        live(engine, heartbeat(at=T0 + 3), T0 + 3),
        live(engine, status("d1", Status.OFFLINE, ts=T0 + 4, at=T0 + 4), T0 + 4),
        live(engine, status("d1", Status.OFFLINE, ts=T0 + 5, at=T0 + 5), T0 + 5),
        live(engine, status("d1", Status.OFFLINE, ts=None, at=T0 + 6), T0 + 6),
        live(engine, sensor(at=T0 + 7), T0 + 7),
        live(engine, sensor(at=T0 + 8), T0 + 8),
    ]

    reported = [(t.status, t.reason) for t in transitions if t is not None]
    assert reported == [
        (Status.ONLINE, PresenceReason.STATUS_MESSAGE),
        (Status.OFFLINE, PresenceReason.STATUS_MESSAGE),
        (Status.ONLINE, PresenceReason.ACTIVITY),
    ]


# --- manual -----------------------------------------------------------------------------------


def test_manual_status_is_reported_once_with_reason_manual() -> None:
    engine = PresenceEngine()
    live(engine, sensor(at=T0), T0)

    transition = engine.set_manual("d1", Status.OFFLINE, T0 + 5)

    assert transition == Transition("d1", Status.OFFLINE, PresenceReason.MANUAL, T0 + 5)
    assert engine.set_manual("d1", Status.OFFLINE, T0 + 6) is None


def test_manual_status_of_an_unknown_device_does_nothing() -> None:
    engine = PresenceEngine()

    assert engine.set_manual("ghost", Status.ONLINE, T0) is None
    assert "ghost" not in engine.devices


def test_manual_online_starts_the_deadline_from_now() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)
    engine.expire(T0 + 50)

    transition = engine.set_manual("d1", Status.ONLINE, T0 + 1000)

    assert transition is not None
    assert transition.reason is PresenceReason.MANUAL
    assert engine.expire(T0 + 1029) == []
    [timeout] = engine.expire(T0 + 1030)
    assert timeout.reason is PresenceReason.HEARTBEAT_TIMEOUT


# --- retained messages ------------------------------------------------------------------------


def test_retained_online_status_registers_a_new_device_online() -> None:
    """A retained birth message is the broker's current record (a will would replace it)."""
    engine = PresenceEngine()

    transition = replayed(engine, status("d1", Status.ONLINE, ts=None, at=T0), T0)

    assert transition is not None
    assert (transition.status, transition.reason) == (Status.ONLINE, PresenceReason.STATUS_MESSAGE)


@pytest.mark.parametrize(
    ("ts", "reason"),
    [(None, PresenceReason.LAST_WILL), (T0 - 3600, PresenceReason.STATUS_MESSAGE)],
)
def test_retained_offline_registers_a_new_device_offline(
    ts: float | None, reason: PresenceReason
) -> None:
    engine = PresenceEngine()

    transition = replayed(engine, status("d1", Status.OFFLINE, ts=ts, at=T0), T0)

    assert transition == Transition("d1", Status.OFFLINE, reason, T0, "first seen")
    assert status_of(engine) is Status.OFFLINE


@pytest.mark.parametrize("kind", [Kind.SENSOR, Kind.HEARTBEAT])
def test_retained_reading_registers_a_new_device_without_claiming_it_is_online(
    kind: Kind,
) -> None:
    engine = PresenceEngine()
    old = T0 - 180 * 24 * 3600
    message = sensor(at=old) if kind is Kind.SENSOR else heartbeat(at=T0)

    transition = replayed(engine, message, T0)

    assert "d1" in engine.devices  # registered, so the pipeline can store it
    assert transition is None or transition.status is Status.OFFLINE
    assert status_of(engine) is Status.OFFLINE


def test_retained_reading_for_a_known_offline_device_does_not_bring_it_back() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10, T0 + 20)
    engine.expire(T0 + 50)

    assert replayed(engine, sensor(at=T0 + 5), T0 + 100) is None
    assert replayed(engine, status("d1", Status.ONLINE, ts=None, at=T0 + 100), T0 + 100) is None
    assert status_of(engine) is Status.OFFLINE
    assert engine.devices["d1"].last_activity == T0 + 20


def test_retained_heartbeat_for_a_known_device_teaches_nothing() -> None:
    engine = PresenceEngine()
    heartbeats(engine, T0, T0 + 10)
    replayed(engine, heartbeat(at=T0 + 11), T0 + 11)

    assert engine.devices["d1"].learned_interval is None
    assert engine.devices["d1"].last_heartbeat == T0 + 10


# --- load -----------------------------------------------------------------------------------


def test_device_loaded_online_with_an_old_last_activity_expires_on_the_first_expire() -> None:
    engine = PresenceEngine()
    engine.load("d1", DeviceState(Status.ONLINE, T0 - 3600, learned_interval=10))

    [transition] = engine.expire(T0)

    assert transition.device_id == "d1"
    assert transition.reason is PresenceReason.HEARTBEAT_TIMEOUT
    assert transition.at == T0
    assert engine.expire(T0 + 1) == []


def test_device_loaded_online_recently_keeps_its_learned_deadline() -> None:
    engine = PresenceEngine()
    engine.load("d1", DeviceState(Status.ONLINE, T0, learned_interval=10))

    assert engine.expire(T0 + 29) == []
    assert len(engine.expire(T0 + 30)) == 1


def test_device_loaded_offline_is_not_reported_by_expire() -> None:
    engine = PresenceEngine()
    engine.load("d1", DeviceState(Status.OFFLINE, T0 - 3600, learned_interval=10))

    assert engine.expire(T0) == []


def test_loaded_learned_interval_survives_until_two_new_intervals_are_seen() -> None:
    engine = PresenceEngine()
    engine.load("d1", DeviceState(Status.ONLINE, T0, learned_interval=10))
    heartbeats(engine, T0 + 5, T0 + 65)  # one new interval (60 s) is not enough

    assert engine.devices["d1"].learned_interval == 10
    heartbeats(engine, T0 + 125)
    assert engine.devices["d1"].learned_interval == 60


# --- messages handled out of order (several workers) --------------------------------------


def test_an_older_status_handled_later_does_not_roll_the_status_back() -> None:
    """offline at ts T0+1 is handled first, online at ts T0 second (another worker was
    slower): the device stays offline."""
    engine = PresenceEngine()
    live(engine, sensor(at=T0 - 10), T0 - 10)
    assert live(engine, status("d1", Status.OFFLINE, ts=T0 + 1, at=T0 + 2), T0 + 2) is not None
    assert live(engine, status("d1", Status.ONLINE, ts=T0, at=T0 + 1), T0 + 2.5) is None
    assert status_of(engine) is Status.OFFLINE
    assert engine.devices["d1"].status_ts == T0 + 1


def test_an_older_offline_handled_later_does_not_roll_an_online_back() -> None:
    engine = PresenceEngine()
    live(engine, status("d1", Status.ONLINE, ts=T0 + 1, at=T0 + 1), T0 + 1)
    assert live(engine, status("d1", Status.OFFLINE, ts=T0, at=T0 + 1), T0 + 1) is None
    assert status_of(engine) is Status.ONLINE


def test_activity_received_before_the_offline_does_not_bring_the_device_back() -> None:
    """A reading received at T0+5, handled after an offline that happened at T0+6."""
    engine = PresenceEngine()
    live(engine, sensor(at=T0), T0)
    live(engine, status("d1", Status.OFFLINE, ts=T0 + 6, at=T0 + 6), T0 + 6)
    assert live(engine, sensor(at=T0 + 5), T0 + 5) is None
    assert status_of(engine) is Status.OFFLINE
    transition = live(engine, sensor(at=T0 + 7), T0 + 7)
    assert transition is not None
    assert transition.status is Status.ONLINE


def test_a_will_received_before_a_newer_online_is_ignored() -> None:
    engine = PresenceEngine()
    live(engine, status("d1", Status.ONLINE, ts=None, at=T0 + 3), T0 + 3)
    assert live(engine, status("d1", Status.OFFLINE, ts=None, at=T0 + 2), T0 + 2) is None
    assert status_of(engine) is Status.ONLINE


def test_expire_can_be_limited_to_some_devices() -> None:
    engine = PresenceEngine(default_timeout=10)
    for device_id in ("a", "b"):
        live(engine, sensor(device_id, at=T0), T0)
    assert [t.device_id for t in engine.expire(T0 + 20, ["b", "unknown"])] == ["b"]
    assert status_of(engine, "a") is Status.ONLINE
    assert engine.devices["b"].status_ts == T0 + 20
