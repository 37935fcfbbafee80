"""The transport's part of recognising redeliveries (issue 16): what it offers a resumed
session, and the session check of a first connection after a restart. No network."""

from __future__ import annotations

import time
from typing import Any

import pytest

from mqtthub.config import BrokerEndpoint
from mqtthub.ingest.redelivery import fingerprint
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.connection import Ack


class LostConnection:
    """A connection whose socket is gone: PUBACKs cannot be sent."""

    def send_pubacks(self, _packet_ids: Any) -> bool:
        return False


class LiveConnection:
    def __init__(self) -> None:
        self.sent: list[int] = []

    def send_pubacks(self, packet_ids: Any) -> bool:
        self.sent += packet_ids
        return True


def transport(**options: Any) -> MqttTransport:
    endpoint = BrokerEndpoint("127.0.0.1", 1883, False, None, None)
    return MqttTransport(
        endpoint=endpoint,
        ssl_context=None,
        client_id="serve-1",
        topics=["devices/+/+"],
        handler=lambda *_args: None,
        clean_start=False,
        session_expiry=3600,
        **options,
    )


def test_acks_a_lost_connection_could_not_send_are_offered_on_resume() -> None:
    """A reconnect within the process: the messages whose PUBACK went nowhere come first,
    then the writer's window."""
    window = [(9, 99)]
    link = transport(redeliveries=lambda: window)
    lost, live = LostConnection(), LiveConnection()
    link.acknowledge(
        [
            Ack(lost, 5, "devices/a/sensor", b"1"),  # type: ignore[arg-type]
            Ack(live, 6, "devices/a/sensor", b"2"),  # type: ignore[arg-type]
        ]
    )
    assert live.sent == [6]
    assert link._unacknowledged() == [(5, fingerprint("devices/a/sensor", b"1")), (9, 99)]


def test_nothing_to_offer_without_a_window() -> None:
    assert transport()._unacknowledged() == []


class Connack:
    def __init__(self, session_present: bool) -> None:
        self.session_present = session_present


@pytest.mark.parametrize(
    ("previous_ago", "session_present", "reported"),
    [
        (None, False, False),  # a fresh install: no previous run
        (30.0, False, True),  # the previous run was connected 30 s ago: the session is lost
        (30.0, True, False),  # the broker kept it
        (7200.0, False, False),  # longer ago than the session expiry (3600 s): expired
    ],
)
def test_first_connection_after_a_restart(
    previous_ago: float | None, session_present: bool, reported: bool
) -> None:
    events: list[Any] = []
    previous = None if previous_ago is None else time.time() - previous_ago
    link = transport(previous_connection=previous, on_event=events.append)
    link._check_session(Connack(session_present))  # type: ignore[arg-type]
    lost = [e for e in events if e.reason == "session_lost"]
    assert bool(lost) is reported
    assert (link.session_lost is not None) is reported
    if reported:
        assert "previous run was connected 30 s ago" in lost[0].detail
    # A later reconnect in the same process is checked as before (the session was asked for).
    events.clear()
    link._check_session(Connack(False))  # type: ignore[arg-type]
    assert [e.reason for e in events] == ["session_lost"]
    assert "previous run" not in events[0].detail
