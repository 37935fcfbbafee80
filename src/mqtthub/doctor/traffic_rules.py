"""The doctor's rules for what flows through the broker (pure, no I/O).

They decide whether device messages are heard on topics an active profile or mapping
reads (``traffic``), and if not, which endpoint, profile, topic prefix or mapping would
read them; and whether a reading published now reaches the running service's store
(``pipeline``). The evidence comes from :mod:`mqtthub.doctor.probes` and
:mod:`mqtthub.doctor.census`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mqtthub.doctor.checks import Cause, Check, Outcome, passed
from mqtthub.profiles import PROFILE_NAMES


@dataclass(frozen=True, slots=True)
class ProfileTraffic:
    """What one active profile read while the doctor listened.

    Attributes:
        profile: its name (``mapping`` for the mapping file).
        messages: messages it read (stored or dead-lettered by ``serve``).
        topics: distinct topics of those messages.
        retained: how many of them were retained messages replayed by the broker.
        devices: distinct devices they came from.
        dead_letters: (reason, count) of the messages ``serve`` would dead-letter.
        ignored_messages: messages of this firmware on topics the profile does not store
            (Tasmota's ``stat/...``, ESPHome's ``<node>/debug``, ...).
        ignored_topics: distinct topics of those.
    """

    profile: str
    messages: int
    topics: int
    retained: int = 0
    devices: int = 0
    dead_letters: tuple[tuple[str, int], ...] = ()
    ignored_messages: int = 0
    ignored_topics: int = 0


@dataclass(frozen=True, slots=True)
class UnmatchedTopic:
    """A topic that arrived but that no active profile or mapping reads.

    Attributes:
        topic: the topic.
        messages: messages heard on it.
        retained: every one of them was a retained message (possibly old).
        looks_like: the known profile that reads it (or whose firmware publishes there).
        topic_prefix: set when it is mqtthub's own convention under this other prefix.
        numbers: its payload holds numbers (JSON, or a bare number): a mapping could
            store them.
    """

    topic: str
    messages: int
    retained: bool = False
    looks_like: str | None = None
    topic_prefix: str | None = None
    numbers: bool = False


@dataclass(frozen=True, slots=True)
class TrafficEvidence:
    """Device messages seen on the configured broker in ``seconds``.

    ``messages`` and ``devices`` count what the active profiles read; ``by_profile``
    breaks that down; ``unmatched`` lists the busiest topics no active profile reads
    (``unmatched_topics`` / ``unmatched_messages``: all of them). ``listened`` says what
    the doctor subscribed to; ``limits`` notes a bound that cut the census short.
    """

    seconds: float
    messages: int
    devices: int
    registered: int
    endpoint: str
    provisioned_endpoints: tuple[str, ...] = ()
    listened: str = ""
    profiles: tuple[str, ...] = ("mqtthub",)
    by_profile: tuple[ProfileTraffic, ...] = ()
    unmatched: tuple[UnmatchedTopic, ...] = ()
    unmatched_topics: int = 0
    unmatched_messages: int = 0
    limits: str | None = None


SHOWN_TOPICS = 5


def check_traffic(evidence: TrafficEvidence) -> Check:
    """Devices that exist should be heard, on topics an active profile reads; devices
    provisioned elsewhere explain silence; topics no profile reads explain "devices
    publish but nothing is stored"."""
    seen = (
        f"{evidence.messages} messages from {evidence.devices} devices in {evidence.seconds:.0f} s"
    )
    seen += "".join(f"; {_profile_line(p)}" for p in evidence.by_profile if _heard(p))
    if evidence.listened:
        seen += f" (listened to {evidence.listened})"
    if evidence.limits:
        seen += f"; {evidence.limits}"
    if evidence.unmatched:
        return _unmatched_check(evidence, seen)
    if evidence.messages:
        return passed("traffic", seen)
    others = sorted({e for e in evidence.provisioned_endpoints if e != evidence.endpoint})
    if others:
        return Check(
            "traffic",
            Outcome.FAIL,
            Cause.ENDPOINT_MISMATCH,
            f"{seen}; the devices were provisioned with {', '.join(others)} but this "
            f"configuration uses {evidence.endpoint}",
            f"point MQTTHUB_BROKER_URL at {others[0]} (the endpoint the devices use), with "
            "mqtts:// and MQTTHUB_CA_FILE if it is a TLS port",
        )
    if evidence.registered:
        return Check(
            "traffic",
            Outcome.FAIL,
            Cause.NO_DEVICE_TRAFFIC,
            f"{seen}, while {evidence.registered} devices are registered",
            "check that the devices publish to this broker (their MQTT host/port) under the "
            "topic prefix MQTTHUB_TOPIC_PREFIX",
        )
    return Check("traffic", Outcome.WARN, None, f"{seen}; no devices registered yet", None)


def _heard(profile: ProfileTraffic) -> bool:
    return bool(profile.messages or profile.ignored_messages)


def _profile_line(p: ProfileTraffic) -> str:
    """``tasmota: 12 messages on 3 topics (2 retained, 1 dead letter: invalid_json)``."""
    notes = []
    if p.retained:
        notes.append(f"{p.retained} retained")
    if p.dead_letters:
        letters = sum(count for _reason, count in p.dead_letters)
        reasons = ", ".join(f"{reason} {count}" for reason, count in p.dead_letters)
        notes.append(f"{letters} would be dead letters: {reasons}")
    if p.ignored_messages:
        notes.append(f"{p.ignored_messages} more on {p.ignored_topics} topics it does not store")
    extra = f" ({'; '.join(notes)})" if notes else ""
    return f"{p.profile}: {p.messages} messages on {p.topics} topics{extra}"


def _unmatched_check(evidence: TrafficEvidence, seen: str) -> Check:
    """Topics no active profile reads: enable the profile they look like, fix the topic
    prefix, or map them; a failure when nothing else is heard."""
    unmatched = evidence.unmatched
    profiles = Counter(u.looks_like for u in unmatched if u.looks_like and not u.topic_prefix)
    prefixes = Counter(u.topic_prefix for u in unmatched if u.topic_prefix)
    unknown = [u for u in unmatched if u.looks_like is None]
    detail = (
        f"{seen}; {evidence.unmatched_topics} topics ({evidence.unmatched_messages} messages) "
        f"match no active profile or mapping (MQTTHUB_PROFILES={','.join(evidence.profiles)}), "
        "so serve stores nothing from them: "
        + ", ".join(_topic_note(u) for u in unmatched[:SHOWN_TOPICS])
        + (", ..." if evidence.unmatched_topics > SHOWN_TOPICS else "")
    )
    fixes = []
    if profiles:
        add = [name for name in PROFILE_NAMES if name in profiles]
        fixes.append(
            f"set MQTTHUB_PROFILES={profile_list(evidence.profiles, add)} (the topics "
            f"{', '.join(_examples(unmatched, lambda u: u.looks_like in add))} are "
            f"{' and '.join(add)} topics)"
        )
    if prefixes:
        prefix = prefixes.most_common(1)[0][0]
        enable = (
            f" and MQTTHUB_PROFILES={profile_list(evidence.profiles, ['mqtthub'])}"
            if "mqtthub" not in evidence.profiles
            else ""
        )
        fixes.append(
            f"set MQTTHUB_TOPIC_PREFIX={prefix}{enable} (the devices publish "
            f"{prefix}/<id>/status|sensor|heartbeat, mqtthub's convention under that prefix)"
        )
    if unknown:
        kind = "sensor" if any(u.numbers for u in unknown) else "status"
        pattern = mapping_pattern([u.topic for u in unknown])
        how = "flatten = true" if kind == "sensor" else 'online = ["online"]'
        fixes.append(
            "add a [[mapping]] entry for "
            f"{', '.join(_examples(unknown, lambda _u: True))} to the MQTTHUB_MAPPINGS file, "
            f'e.g. topic = "{pattern}", kind = "{kind}", {how}'
        )
    if profiles:
        cause = Cause.PROFILE_NOT_ENABLED
    elif prefixes:
        cause = Cause.TOPIC_PREFIX_MISMATCH
    else:
        cause = Cause.UNMATCHED_TOPICS
    hinted = bool(profiles or prefixes)
    failing = not evidence.messages and (hinted or evidence.registered)
    return Check(
        "traffic", Outcome.FAIL if failing else Outcome.WARN, cause, detail, "; ".join(fixes)
    )


def _topic_note(u: UnmatchedTopic) -> str:
    notes = [f"{u.messages} messages" + (", retained" if u.retained else "")]
    if u.topic_prefix:
        notes.append(f"mqtthub's convention under prefix {u.topic_prefix}")
    elif u.looks_like:
        notes.append(f"looks like {u.looks_like}")
    return f"{u.topic} ({'; '.join(notes)})"


def _examples(unmatched: Iterable[UnmatchedTopic], keep: Any, limit: int = 3) -> list[str]:
    return [u.topic for u in unmatched if keep(u)][:limit]


def mapping_pattern(topics: Sequence[str]) -> str:
    """A mapping ``topic`` pattern for ``topics``: the one level that differs between
    them becomes ``{device}`` (otherwise: the first level with a digit, else the second
    level; a mapping needs a ``{device}``)."""
    if not topics:
        return "vendor/{device}/telemetry"
    first = topics[0].split("/")
    same_shape = [t.split("/") for t in topics if t.count("/") == len(first) - 1]
    varying = [i for i in range(len(first)) if len({levels[i] for levels in same_shape}) > 1]
    if len(varying) == 1:
        index = varying[0]
    else:
        digits = [i for i, level in enumerate(first) if any(ch.isdigit() for ch in level)]
        index = digits[0] if digits else min(1, len(first) - 1)
    return "/".join("{device}" if i == index else level for i, level in enumerate(first))


def profile_list(active: Iterable[str], add: Iterable[str]) -> str:
    """``MQTTHUB_PROFILES``: the active profiles (the mapping file is not one) plus ``add``."""
    names = [name for name in active if name in PROFILE_NAMES]
    return ",".join(dict.fromkeys([*names, *add]))


@dataclass(frozen=True, slots=True)
class PipelineEvidence:
    """Whether a synthetic reading published now shows up in the running service's API."""

    api: str
    device_id: str
    stored: bool
    error: str | None = None


def check_pipeline(evidence: PipelineEvidence) -> Check:
    """A reading published on the broker must reach the running service's store."""
    if evidence.stored:
        return passed(
            "pipeline", f"{evidence.api} stored the probe reading of {evidence.device_id}"
        )
    problem = f": {evidence.error}" if evidence.error else ""
    return Check(
        "pipeline",
        Outcome.FAIL,
        Cause.PIPELINE_NOT_STORING,
        f"a probe reading published for {evidence.device_id} did not appear at "
        f"{evidence.api} within the wait{problem}",
        "check that the running service uses the same MQTTHUB_BROKER_URL and "
        "MQTTHUB_TOPIC_PREFIX as this doctor run, and its /healthz",
    )
