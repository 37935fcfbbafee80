"""Unit tests for ``doctor --expect-traffic``'s topic census and its verdicts.

The census is fed messages as the probe hears them on ``#``; the rule reads its summary.
Payloads are written after each firmware's documentation, as in the profile tests.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from mqtthub.config import load_settings
from mqtthub.doctor.census import TopicCensus
from mqtthub.doctor.checks import Cause, Check, Outcome
from mqtthub.doctor.probes import build_census, subscribe_wide, traffic_evidence
from mqtthub.doctor.traffic_rules import (
    ProfileTraffic,
    TrafficEvidence,
    UnmatchedTopic,
    check_traffic,
    mapping_pattern,
)

NOW = 1_790_000_000.0
TASMOTA_SENSOR = json.dumps(
    {
        "Time": "2026-09-21T10:00:00",
        "AM2301": {"Temperature": 22.1, "Humidity": 45.3},
        "TempUnit": "C",
    }
).encode()


pytestmark = pytest.mark.usefixtures("clean_environment")


def census(monkeypatch: pytest.MonkeyPatch, profiles: str = "mqtthub", **env: str) -> TopicCensus:
    monkeypatch.setenv("MQTTHUB_PROFILES", profiles)
    monkeypatch.setenv("MQTTHUB_TASMOTA_TIMEZONE", "UTC")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return build_census(load_settings())


def feed(found: TopicCensus, *messages: tuple[str, bytes | str], retained: bool = False) -> None:
    for topic, payload in messages:
        data = payload.encode() if isinstance(payload, str) else payload
        found.add(topic, data, retained=retained, received_at=NOW)


def verdict(found: TopicCensus, registered: int = 0) -> Check:
    settings = load_settings()
    evidence = traffic_evidence(settings, 30.0, found, listened="#")
    evidence = TrafficEvidence(
        evidence.seconds,
        evidence.messages,
        evidence.devices,
        registered,
        evidence.endpoint,
        listened=evidence.listened,
        profiles=evidence.profiles,
        by_profile=evidence.by_profile,
        unmatched=evidence.unmatched,
        unmatched_topics=evidence.unmatched_topics,
        unmatched_messages=evidence.unmatched_messages,
    )
    return check_traffic(evidence)


def test_each_active_profile_says_how_many_messages_and_topics_it_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tasmota: 3 messages on 2 topics; mqtthub: 1 message; nothing unmatched: a pass."""
    found = census(monkeypatch, "mqtthub,tasmota")
    feed(
        found,
        ("tele/plug1/SENSOR", TASMOTA_SENSOR),
        ("tele/plug1/SENSOR", TASMOTA_SENSOR),
        ("tele/plug2/LWT", "Online"),
        ("devices/d1/sensor", '{"t": 1.5}'),
    )
    check = verdict(found)
    assert check.status is Outcome.PASS, check
    assert "4 messages from 3 devices" in check.detail
    assert "tasmota: 3 messages on 2 topics" in check.detail
    assert "mqtthub: 1 messages on 1 topics" in check.detail


def test_firmware_topics_a_profile_does_not_store_are_not_called_unmatched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tasmota's stat/ and INFO topics are Tasmota's own: counted, not a cause."""
    found = census(monkeypatch, "tasmota")
    feed(
        found,
        ("tele/plug1/SENSOR", TASMOTA_SENSOR),
        ("stat/plug1/RESULT", '{"POWER":"ON"}'),
        ("tele/plug1/INFO1", '{"Module":"Sonoff Basic"}'),
    )
    check = verdict(found)
    assert check.status is Outcome.PASS, check
    assert "tasmota: 1 messages on 1 topics (2 more on 2 topics it does not store)" in check.detail


def test_dead_letters_of_a_matched_profile_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    found = census(monkeypatch, "tasmota")
    feed(found, ("tele/plug1/SENSOR", "{broken"), ("tele/plug1/SENSOR", TASMOTA_SENSOR))
    check = verdict(found)
    assert "1 would be dead letters: invalid_json 1" in check.detail


@pytest.mark.parametrize(
    ("messages", "looks_like"),
    [
        ([("tele/plug1/SENSOR", TASMOTA_SENSOR), ("tele/plug1/LWT", "Online")], "tasmota"),
        ([("stat/plug1/RESULT", '{"POWER":"ON"}')], "tasmota"),
        ([("kitchen/status", "online"), ("kitchen/sensor/temp/state", "21.5")], "esphome"),
        ([("homie/weather/$state", "ready"), ("homie/weather/out/t", "18.5")], "homie"),
        (
            [
                (
                    "homeassistant/sensor/node1/temperature/config",
                    '{"state_topic": "z2m/hall", "value_template": "{{ value_json.t }}"}',
                ),
                ("z2m/hall", '{"t": 19.5}'),
            ],
            "homeassistant",
        ),
    ],
)
def test_topics_of_a_profile_not_enabled_name_it_and_the_setting(
    monkeypatch: pytest.MonkeyPatch, messages: Sequence[tuple[str, str | bytes]], looks_like: str
) -> None:
    """Only mqtthub is active and only another firmware publishes: profile_not_enabled."""
    found = census(monkeypatch)
    feed(found, *messages)
    unmatched, topics, _messages = found.unmatched()
    assert topics == len({topic for topic, _ in messages})
    assert {u.looks_like for u in unmatched} == {looks_like}
    check = verdict(found)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.PROFILE_NOT_ENABLED), check
    assert f"MQTTHUB_PROFILES=mqtthub,{looks_like}" in (check.fix or "")
    assert "match no active profile or mapping (MQTTHUB_PROFILES=mqtthub)" in check.detail


def test_mqtthub_messages_under_another_prefix_name_the_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = census(monkeypatch)
    feed(found, ("sensors/esp1/sensor", '{"temperature": 21.0}'), ("sensors/esp1/status", "online"))
    check = verdict(found)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.TOPIC_PREFIX_MISMATCH), check
    assert "MQTTHUB_TOPIC_PREFIX=sensors" in (check.fix or "")


def test_unknown_topics_beside_stored_ones_warn_with_a_mapping_to_add(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Devices are stored, and a vendor's topics are not: a warning with a mapping entry."""
    found = census(monkeypatch)
    feed(
        found,
        ("devices/d1/sensor", '{"t": 1.5}'),
        ("acme/pump-7/telemetry", '{"env": {"t": 4.5}}'),
        ("acme/pump-8/telemetry", '{"env": {"t": 4.6}}'),
    )
    check = verdict(found)
    assert (check.status, check.cause) == (Outcome.WARN, Cause.UNMATCHED_TOPICS), check
    assert 'topic = "acme/{device}/telemetry", kind = "sensor", flatten = true' in (check.fix or "")
    assert "MQTTHUB_MAPPINGS" in (check.fix or "")


def test_only_unknown_topics_fail_when_devices_are_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = census(monkeypatch)
    feed(found, ("acme/pump-7/telemetry", '{"env": {"t": 4.5}}'))
    assert verdict(found).status is Outcome.WARN
    check = verdict(found, registered=3)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.UNMATCHED_TOPICS)


def test_a_mapping_file_matches_its_topics(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mappings = tmp_path / "map.toml"
    mappings.write_text(
        '[[mapping]]\ntopic = "acme/{device}/telemetry"\nkind = "sensor"\nflatten = true\n'
    )
    found = census(monkeypatch, MQTTHUB_MAPPINGS=str(mappings))
    feed(found, ("acme/pump-7/telemetry", '{"env": {"t": 4.5}}'))
    check = verdict(found)
    assert check.status is Outcome.PASS, check
    assert "mapping: 1 messages on 1 topics" in check.detail


def test_mqtthubs_own_downlink_and_the_doctors_probes_are_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = census(monkeypatch)
    feed(
        found,
        ("devices/d1/command", '{"command": "reboot"}'),
        ("devices/d1/command/c1/reply", "{}"),
        ("mqtt_app/tasks/61016968/t1", "{}"),
        ("mqtt_app/status/61016968", "online"),
        ("devices/mqtthub-doctor/heartbeat", "{}"),
    )
    assert found.messages == 0
    assert found.unmatched()[1] == 0


def test_retained_messages_are_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    found = census(monkeypatch)
    feed(found, ("tele/plug1/LWT", "Online"), retained=True)
    check = verdict(found)
    assert "tele/plug1/LWT (1 messages, retained; looks like tasmota)" in check.detail


def test_a_home_assistant_state_topic_heard_before_its_config_becomes_matched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = census(monkeypatch, "homeassistant")
    config = '{"state_topic": "z2m/hall", "value_template": "{{ value_json.t }}"}'
    feed(
        found,
        ("z2m/hall", '{"t": 19.4}'),
        ("homeassistant/sensor/node1/t/config", config),
        ("z2m/hall", '{"t": 19.5}'),
    )
    assert found.unmatched()[1] == 0
    (homeassistant,) = found.by_profile()
    assert (homeassistant.messages, homeassistant.topics, homeassistant.devices) == (2, 2, 1)


def test_mapping_patterns_put_the_device_where_topics_differ() -> None:
    assert mapping_pattern(["acme/p1/t", "acme/p2/t"]) == "acme/{device}/t"
    assert mapping_pattern(["vendor/x/dev42/data"]) == "vendor/x/{device}/data"
    assert mapping_pattern(["vendor/box/data"]) == "vendor/{device}/data"
    assert mapping_pattern([]) == "vendor/{device}/telemetry"


def test_the_rule_lists_the_busiest_topics_and_how_many_more() -> None:
    unmatched = tuple(UnmatchedTopic(f"x/{n}/y", 10 - n, numbers=True) for n in range(8))
    evidence = TrafficEvidence(
        30.0,
        0,
        0,
        0,
        "mqtt://b:1883",
        unmatched=unmatched,
        unmatched_topics=8,
        unmatched_messages=sum(u.messages for u in unmatched),
        by_profile=(ProfileTraffic("mqtthub", 0, 0),),
    )
    check = check_traffic(evidence)
    assert "8 topics (52 messages)" in check.detail
    assert "x/0/y (10 messages), " in check.detail
    assert check.detail.endswith(", ...")


class FakeSession:
    """Answers SUBSCRIBE with scripted codes; records what was asked for."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse = refuse
        self.asked: list[list[str]] = []

    async def subscribe(self, topics: Sequence[str]) -> tuple[int, ...]:
        self.asked.append(list(topics))
        return tuple(0x87 if topic in self.refuse else 1 for topic in topics)


def test_listening_widely_falls_back_to_the_profiles_topics_when_hash_is_refused() -> None:
    """An ACL that refuses #: the doctor listens to the active profiles' topics instead."""
    session = FakeSession(refuse={"#", "tele/+/LWT"})
    fallback = ("devices/+/+", "tele/+/SENSOR", "tele/+/LWT")
    listened, granted = asyncio.run(subscribe_wide(session, fallback))  # type: ignore[arg-type]
    assert session.asked == [["#"], list(fallback)]
    assert granted == ("devices/+/+", "tele/+/SENSOR")
    assert "the broker refused #" in listened
    assert "devices/+/+, tele/+/SENSOR" in listened


def test_listening_widely_uses_hash_when_granted() -> None:
    session = FakeSession(refuse=set())
    listened, granted = asyncio.run(subscribe_wide(session, ("devices/+/+",)))  # type: ignore[arg-type]
    assert granted == ("#",)
    assert session.asked == [["#"]]
    assert listened.startswith("#")
