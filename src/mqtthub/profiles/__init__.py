"""Firmware profiles: which topics ``serve`` reads and how each message is understood.

``MQTTHUB_PROFILES`` names the active profiles (default ``mqtthub``, the
``devices/{id}/status|sensor|heartbeat`` convention); ``MQTTHUB_MAPPINGS`` adds a user's
mapping file. :class:`Profiles` asks each active profile in turn and keeps the first
answer; a message on a subscribed topic that no profile reads is a ``bad_topic`` dead
letter, so "devices publish but nothing is stored" always leaves a trace.
"""

from __future__ import annotations

from collections.abc import Sequence

from mqtthub.messages import Reason, Rejected, parse, subscriptions
from mqtthub.profiles.base import Decoded, Profile

__all__ = ["PROFILE_NAMES", "MqtthubProfile", "Profiles", "topic_matches"]

#: Profile names ``MQTTHUB_PROFILES`` accepts.
PROFILE_NAMES = ("mqtthub", "tasmota", "esphome", "homeassistant", "homie")


class MqtthubProfile:
    """mqtthub's own convention: ``{prefix}/{device}/status|sensor|heartbeat``, flat JSON."""

    name = "mqtthub"

    def __init__(self, prefix: str = "devices") -> None:
        """Read topics under ``prefix`` (``MQTTHUB_TOPIC_PREFIX``)."""
        self.prefix = prefix
        self._start = prefix + "/"

    def subscriptions(self) -> tuple[str, ...]:
        """``{prefix}/+/+``."""
        return subscriptions(self.prefix)

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded | None:
        """Today's parser, for topics under the prefix."""
        if not topic.startswith(self._start):
            return None
        result = parse(
            topic, payload, received_at=received_at, prefix=self.prefix, max_payload=max_payload
        )
        return Decoded(result)


class Profiles:
    """The active profiles, asked in order (the first that reads a topic answers)."""

    def __init__(self, profiles: Sequence[Profile]) -> None:
        """Use ``profiles``; Home Assistant discovery goes first, since it knows the units
        of state topics other profiles may also read."""
        self.profiles = tuple(sorted(profiles, key=lambda p: p.name != "homeassistant"))
        self.names = tuple(profile.name for profile in profiles)

    def subscriptions(self, *, retained_configs: bool | None = None) -> tuple[str, ...]:
        """Every profile's topic filters, each once; only the filters of retained
        configuration (Home Assistant discovery: every worker needs all of it, and shared
        subscriptions get no retained messages) or only the others."""
        return tuple(
            dict.fromkeys(
                topic
                for profile in self.profiles
                if retained_configs is None
                or getattr(profile, "reads_retained_configs", False) is retained_configs
                for topic in profile.subscriptions()
            )
        )

    def decode(
        self, topic: str, payload: bytes, *, received_at: float, max_payload: int
    ) -> Decoded:
        """The first active profile's reading of a message, or a ``bad_topic`` dead letter."""
        for profile in self.profiles:
            decoded = profile.decode(
                topic, payload, received_at=received_at, max_payload=max_payload
            )
            if decoded is not None:
                return decoded
        return Decoded(
            Rejected(
                Reason.BAD_TOPIC,
                f"no active profile reads this topic (MQTTHUB_PROFILES={','.join(self.names)})",
            )
        )

    def new_topics(self, subscribed: Sequence[str]) -> list[str]:
        """Topics profiles started following (Home Assistant state topics) that none of
        ``subscribed`` covers yet: subscribing to a covered one again would make MQTT 5
        brokers deliver its messages twice."""
        new: list[str] = []
        for profile in self.profiles:
            take = getattr(profile, "take_new_topics", None)
            if take is None:
                continue
            for topic in take():
                if not any(topic_matches(f, topic) for f in (*subscribed, *new)):
                    new.append(topic)
        return new


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic filter (with ``+`` and ``#``) matches a topic name."""
    filter_levels = topic_filter.split("/")
    levels = topic.split("/")
    if filter_levels[0].startswith("$share") or filter_levels[0] == "$queue":
        filter_levels = filter_levels[2:] if filter_levels[0] == "$share" else filter_levels[1:]
    for index, part in enumerate(filter_levels):
        if part == "#":
            return not (index == 0 and topic.startswith("$"))
        if index >= len(levels):
            return False
        if part == "+":
            if index == 0 and levels[0].startswith("$"):
                return False
            continue
        if part != levels[index]:
            return False
    return len(filter_levels) == len(levels)
