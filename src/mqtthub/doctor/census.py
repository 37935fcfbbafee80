"""Which firmware profile the topics heard on the broker belong to (pure, no I/O).

``doctor --expect-traffic`` listens to ``#`` and hands every message to a
:class:`TopicCensus`. The census asks the active profiles (``MQTTHUB_PROFILES`` and the
mapping file) in the order ``serve`` does: a topic one of them reads is *matched* (and
its dead letters counted); a topic of an active firmware that its profile deliberately
does not store (Tasmota's ``stat/...``, ESPHome's ``<node>/debug``) is *ignored*; any
other topic is *unmatched*: ``serve`` would never store it. For unmatched topics the
census finds out what they look like, by decoding them with every known profile that is
not active, by the namespaces known firmware publishes under, and by mqtthub's own
convention under another topic prefix.

Topics mqtthub itself publishes or reads for the downlink (commands, command replies,
tasks, app status) and the doctor's own probes are left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from mqtthub.doctor.traffic_rules import ProfileTraffic, UnmatchedTopic
from mqtthub.downlink.topics import Route, route
from mqtthub.messages import Accepted, Rejected, parse
from mqtthub.profiles import PROFILE_NAMES, Profiles, topic_matches
from mqtthub.profiles.base import Decoded, Profile

#: Most distinct topics remembered; later topics are still counted per profile.
MAX_TOPICS = 5000
#: Most unmatched topics handed to the rules (the busiest first).
MAX_UNMATCHED_SHOWN = 200
DOCTOR_DEVICE = "mqtthub-doctor"
_MQTTHUB_KINDS = ("status", "sensor", "heartbeat")
# ESPHome components whose state topics the esphome profile does not read.
_ESPHOME_OTHERS = (
    "text_sensor", "button", "number", "select", "fan", "cover", "climate", "lock",
    "valve", "event", "text", "datetime", "date", "time", "alarm_control_panel",
)  # fmt: skip


def family_topics(
    profile: str, *, topic_prefix: str = "devices", homeassistant_prefix: str = "homeassistant"
) -> tuple[str, ...]:
    """Topic filters a firmware publishes under, including those its profile does not
    store (command results, logs, device attributes, discovery of other components)."""
    families = {
        "mqtthub": (f"{topic_prefix}/#",),
        "tasmota": ("tele/+/#", "stat/+/#", "cmnd/+/#", "tasmota/discovery/#"),
        "esphome": (
            "+/debug",
            "esphome/discover/#",
            *(f"+/{component}/+/state" for component in _ESPHOME_OTHERS),
            *(f"+/{c}/+/command" for c in ("switch", "light", *_ESPHOME_OTHERS)),
        ),
        "homeassistant": (f"{homeassistant_prefix}/#",),
        "homie": ("homie/#",),
    }
    return families.get(profile, ())


@dataclass(slots=True)
class _TopicStats:
    """What one topic carried."""

    label: str  # matched | ignored | unmatched
    profile: str | None  # the active profile (matched, ignored) or the look-alike
    messages: int = 0
    retained: int = 0
    topic_prefix: str | None = None  # mqtthub's convention under this prefix
    numbers: bool = False  # JSON with numbers, or a bare number


@dataclass(slots=True)
class _ProfileCounts:
    messages: int = 0
    retained: int = 0
    topics: int = 0
    devices: set[str] = field(default_factory=set)
    dead_letters: Counter[str] = field(default_factory=Counter)
    ignored_messages: int = 0
    ignored_topics: int = 0


class TopicCensus:
    """Counts the messages heard per active profile and finds the topics none reads.

    Args:
        active: the profiles ``serve`` runs with (a fresh instance: the census feeds it).
        candidates: every known profile that is not active, by name (fresh instances).
        topic_prefix: ``MQTTHUB_TOPIC_PREFIX``.
        app_prefix: ``MQTTHUB_APP_PREFIX``.
        homeassistant_prefix: ``MQTTHUB_HOMEASSISTANT_PREFIX``.
        max_payload: ``MQTTHUB_MAX_PAYLOAD``.
    """

    def __init__(
        self,
        *,
        active: Profiles,
        candidates: Mapping[str, Profile],
        topic_prefix: str = "devices",
        app_prefix: str = "mqtt_app",
        homeassistant_prefix: str = "homeassistant",
        max_payload: int = 65536,
    ) -> None:
        """Start with nothing heard."""
        self.active = active
        self.candidates = dict(candidates)
        self.topic_prefix, self.app_prefix = topic_prefix, app_prefix
        self.max_payload = max_payload
        prefixes = {"topic_prefix": topic_prefix, "homeassistant_prefix": homeassistant_prefix}
        self._families = {name: family_topics(name, **prefixes) for name in PROFILE_NAMES}
        self._topics: dict[str, _TopicStats] = {}
        self._counts: dict[str, _ProfileCounts] = {n: _ProfileCounts() for n in active.names}
        self.messages = 0
        self.topics_capped = False

    def add(self, topic: str, payload: bytes, *, retained: bool, received_at: float) -> None:
        """Take in one message heard on the broker."""
        if self._own(topic):
            return
        self.messages += 1
        hit = self._read(topic, payload, received_at)
        stats = self._topics.get(topic)
        if hit is not None:
            name, decoded = hit
            new = stats is None or stats.label != "matched"
            if stats is not None and stats.label == "ignored" and stats.profile in self._counts:
                self._counts[stats.profile].ignored_topics -= 1
            stats = self._remember(topic, stats, _TopicStats("matched", name))
            self._count_read(self._counts[name], decoded, retained, new=new and stats is not None)
        else:
            new = stats is None
            if stats is None:
                stats = self._remember(topic, None, self._classify(topic, payload, received_at))
            counts = self._counts.get(stats.profile or "") if stats else None
            if stats is not None and stats.label == "ignored" and counts is not None:
                counts.ignored_messages += 1
                counts.ignored_topics += new
        if stats is not None:
            stats.messages += 1
            stats.retained += retained

    def _read(self, topic: str, payload: bytes, received_at: float) -> tuple[str, Decoded] | None:
        """The first active profile that reads the topic, and its reading."""
        for profile in self.active.profiles:
            decoded = self._decode(profile, topic, payload, received_at)
            if decoded is not None:
                return profile.name, decoded
        return None

    def _remember(
        self, topic: str, old: _TopicStats | None, new: _TopicStats
    ) -> _TopicStats | None:
        """Record (or relabel) a topic; None when too many topics are known already."""
        if old is None and len(self._topics) >= MAX_TOPICS:
            self.topics_capped = True
            return None
        if old is not None:
            new.messages, new.retained = old.messages, old.retained
        self._topics[topic] = new
        return new

    def _own(self, topic: str) -> bool:
        """mqtthub's own downlink topics and the doctor's probes."""
        if DOCTOR_DEVICE in topic.split("/"):
            return True
        routed = route(topic, prefix=self.topic_prefix, app_prefix=self.app_prefix)
        return routed.route is not Route.DEVICE or topic.startswith(self.app_prefix + "/")

    def _classify(self, topic: str, payload: bytes, received_at: float) -> _TopicStats:
        """A topic no active profile reads: ignored by an active firmware, or unmatched."""
        for name in self.active.names:
            if any(topic_matches(f, topic) for f in self._families.get(name, ())):
                return _TopicStats("ignored", name)
        stats = _TopicStats("unmatched", self._look_alike(topic, payload, received_at))
        stats.numbers = _has_numbers(payload)
        if stats.profile is None:
            stats.topic_prefix = self._other_prefix(topic, payload, received_at)
            if stats.topic_prefix is not None:
                stats.profile = "mqtthub"
        return stats

    def _decode(
        self, profile: Profile, topic: str, payload: bytes, received_at: float
    ) -> Decoded | None:
        return profile.decode(topic, payload, received_at=received_at, max_payload=self.max_payload)

    @staticmethod
    def _count_read(counts: _ProfileCounts, decoded: Decoded, retained: bool, *, new: bool) -> None:
        counts.messages += 1
        counts.retained += retained
        counts.topics += new
        result, device = decoded.result, decoded.device_id
        if isinstance(result, Rejected):
            counts.dead_letters[str(result.reason)] += 1
            device = result.device_id
        elif isinstance(result, Accepted):
            device = result.device_id
        if device:
            counts.devices.add(device)

    def _look_alike(self, topic: str, payload: bytes, received_at: float) -> str | None:
        """The inactive profile that reads the topic best (a result, then metadata, then a
        dead letter), else the inactive firmware whose namespace holds it."""
        best: tuple[int, str] | None = None
        for name, profile in self.candidates.items():
            decoded = self._decode(profile, topic, payload, received_at)
            if decoded is None:
                continue
            rank = 0 if isinstance(decoded.result, Accepted) else 1
            rank += 1 if isinstance(decoded.result, Rejected) else 0
            if best is None or rank < best[0]:
                best = (rank, name)
        if best is not None:
            return best[1]
        for name in PROFILE_NAMES:
            if name in self.active.names or name == "mqtthub":
                continue
            if any(topic_matches(f, topic) for f in self._families[name]):
                return name
        return None

    def _other_prefix(self, topic: str, payload: bytes, received_at: float) -> str | None:
        """``X`` when the topic is ``X/<id>/status|sensor|heartbeat`` that mqtthub's parser
        accepts with ``MQTTHUB_TOPIC_PREFIX=X``."""
        head, _, rest = topic.rpartition("/")
        prefix, _, device = head.rpartition("/")
        if not prefix or rest not in _MQTTHUB_KINDS or prefix == self.topic_prefix:
            return None
        result = parse(
            topic, payload, received_at=received_at, prefix=prefix, max_payload=self.max_payload
        )
        return prefix if isinstance(result, Accepted) and device else None

    def by_profile(self) -> tuple[ProfileTraffic, ...]:
        """What each active profile read (and ignored), in ``MQTTHUB_PROFILES`` order."""
        return tuple(
            ProfileTraffic(
                name,
                c.messages,
                c.topics,
                c.retained,
                len(c.devices),
                tuple(c.dead_letters.most_common()),
                c.ignored_messages,
                c.ignored_topics,
            )
            for name, c in self._counts.items()
        )

    def devices(self) -> int:
        """Distinct devices the active profiles heard from."""
        return len(set().union(*(c.devices for c in self._counts.values())))

    def unmatched(self) -> tuple[tuple[UnmatchedTopic, ...], int, int]:
        """(the busiest unmatched topics, how many unmatched topics, their messages)."""
        found = [
            UnmatchedTopic(
                topic,
                s.messages,
                s.retained == s.messages,
                s.profile,
                s.topic_prefix,
                s.numbers,
            )
            for topic, s in self._topics.items()
            if s.label == "unmatched"
        ]
        found.sort(key=lambda u: (-u.messages, u.topic))
        return tuple(found[:MAX_UNMATCHED_SHOWN]), len(found), sum(u.messages for u in found)


def _has_numbers(payload: bytes) -> bool:
    try:
        document = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    return _numbers_in(document)


def _numbers_in(value: object, depth: int = 0) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return True
    if depth > 8:
        return False
    if isinstance(value, dict):
        return any(_numbers_in(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(_numbers_in(v, depth + 1) for v in value)
    return False
