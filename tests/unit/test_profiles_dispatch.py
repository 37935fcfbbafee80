"""Unit tests for choosing the profile that reads a message, and topic filter matching."""

from __future__ import annotations

import pytest

from mqtthub.messages import Accepted, Reason, Rejected
from mqtthub.profiles import MqtthubProfile, Profiles, topic_matches
from mqtthub.profiles.homeassistant import HomeAssistantProfile

T0 = 1_790_000_000.0


@pytest.mark.parametrize(
    ("topic_filter", "topic", "matches"),
    [
        ("devices/+/+", "devices/d1/sensor", True),
        ("devices/+/+", "devices/d1/sensor/x", False),
        ("+/sensor/+/state", "kitchen/sensor/t/state", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "$SYS/broker", False),
        ("+/status", "$SYS/status", False),
        ("$share/g/devices/+/+", "devices/d1/status", True),
        ("zigbee2mqtt/hall", "zigbee2mqtt/hall", True),
        ("zigbee2mqtt/hall", "zigbee2mqtt/hall2", False),
    ],
)
def test_topic_filters(topic_filter: str, topic: str, matches: bool) -> None:
    assert topic_matches(topic_filter, topic) is matches


def test_the_first_profile_that_reads_a_topic_answers() -> None:
    profiles = Profiles([MqtthubProfile("devices"), HomeAssistantProfile()])
    decoded = profiles.decode("devices/d1/sensor", b'{"t": 1}', received_at=T0, max_payload=1024)
    assert isinstance(decoded.result, Accepted)
    assert profiles.subscriptions() == (
        "homeassistant/+/+/config",
        "homeassistant/+/+/+/config",
        "devices/+/+",
    )


def test_a_topic_no_profile_reads_is_a_dead_letter_naming_the_profiles() -> None:
    profiles = Profiles([MqtthubProfile("devices")])
    decoded = profiles.decode("other/x", b"1", received_at=T0, max_payload=1024)
    assert isinstance(decoded.result, Rejected)
    assert decoded.result.reason is Reason.BAD_TOPIC
    assert "MQTTHUB_PROFILES=mqtthub" in decoded.result.detail


def test_followed_topics_already_covered_by_a_subscription_are_not_added_again() -> None:
    home_assistant = HomeAssistantProfile()
    profiles = Profiles([home_assistant])
    for node in ("kitchen", "hall"):
        config = f'{{"stat_t": "{node}/sensor/t/state", "avty_t": "{node}/status"}}'
        home_assistant.decode(
            f"homeassistant/sensor/{node}/t/config",
            config.encode(),
            received_at=T0,
            max_payload=1024,
        )
    assert profiles.new_topics(["+/status"]) == [
        "kitchen/sensor/t/state",
        "hall/sensor/t/state",
    ]
