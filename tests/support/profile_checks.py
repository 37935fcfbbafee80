"""Helpers for the firmware profile tests: decode one message and check what came out."""

from __future__ import annotations

from collections.abc import Mapping

from mqtthub.messages import Accepted, Rejected
from mqtthub.profiles.base import Decoded, MetricInfo, Profile

# 2024-01-31T12:00:00Z, the server receive time of the messages in the profile tests.
T0 = 1_706_702_400.0
LIMIT = 65536


def decode(
    profile: Profile,
    topic: str,
    payload: bytes | str,
    *,
    received_at: float = T0,
    max_payload: int = LIMIT,
) -> Decoded:
    """The profile's reading of a message on one of its own topics."""
    data = payload.encode() if isinstance(payload, str) else payload
    decoded = profile.decode(topic, data, received_at=received_at, max_payload=max_payload)
    assert decoded is not None, f"{profile.name} does not read {topic}"
    return decoded


def accepted(
    profile: Profile, topic: str, payload: bytes | str, *, received_at: float = T0
) -> Accepted:
    """The accepted message (the test fails on a dead letter or nothing)."""
    return read(profile, topic, payload, received_at=received_at)[0]


def read(
    profile: Profile, topic: str, payload: bytes | str, *, received_at: float = T0
) -> tuple[Accepted, Mapping[str, MetricInfo]]:
    """The accepted message and the metric info that came with it."""
    decoded = decode(profile, topic, payload, received_at=received_at)
    assert isinstance(decoded.result, Accepted), decoded.result
    return decoded.result, decoded.info


def rejected(
    profile: Profile, topic: str, payload: bytes | str, *, max_payload: int = LIMIT
) -> Rejected:
    """The dead letter (the test fails when the message is accepted)."""
    result = decode(profile, topic, payload, max_payload=max_payload).result
    assert isinstance(result, Rejected), result
    return result


def values(message: Accepted) -> dict[str, float]:
    """The message's readings by metric name, in payload order."""
    return {metric: value for metric, value, _ts in message.readings}


def units(info: Mapping[str, MetricInfo]) -> dict[str, str | None]:
    """The unit of each metric the message described."""
    return {metric: item.unit for metric, item in info.items()}
