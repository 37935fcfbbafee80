"""The transport's part of recognising redeliveries (issue 16): what it offers a resumed
session, and the session check of a first connection after a restart. No network."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from gmqtt.mqtt.constants import MQTTv311

import mqtthub.transport.client as client_module
from mqtthub.config import BrokerEndpoint
from mqtthub.ingest.redelivery import fingerprint
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.connection import Ack, ManagedClient


class LostConnection:
    """A connection whose socket is gone: PUBACKs cannot be sent."""

    outstanding = 1

    def send_pubacks(self, _packet_ids: Any) -> bool:
        return False


class LiveConnection:
    def __init__(self) -> None:
        self.sent: list[int] = []
        self.outstanding = 1

    def send_pubacks(self, packet_ids: Any) -> bool:
        self.sent += packet_ids
        return True


def transport(**options: Any) -> MqttTransport:
    endpoint = BrokerEndpoint("127.0.0.1", 1883, False, None, None)
    options.setdefault("handler", lambda *_args: None)
    return MqttTransport(
        endpoint=endpoint,
        ssl_context=None,
        client_id="serve-1",
        topics=["devices/+/+"],
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


# --- a resumed session while messages of the lost connection still wait in the queue ---


class FakeSocket:
    """The asyncio transport under a connection: whether it reads."""

    def __init__(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def publish_packet(packet_id: int, topic: str, payload: bytes) -> bytes:
    """A QoS 1 PUBLISH's variable header and payload (MQTT 3.1.1)."""
    return len(topic).to_bytes(2, "big") + topic.encode() + packet_id.to_bytes(2, "big") + payload


class Wire:
    """One connection of ``link`` as its socket sees it: what arrives, what is written."""

    def __init__(self, link: MqttTransport) -> None:
        self.socket = FakeSocket()
        self.written: list[bytes] = []
        client = ManagedClient("serve-1")
        client._package_handler._handle_connack_packet = lambda _cmd, _packet: None
        client._connection = SimpleNamespace(
            _transport=self.socket,
            _last_data_in=0.0,
            _keep_connection=lambda: None,
            _protocol=SimpleNamespace(write_data=self.written.append),
        )
        link._new_client = lambda _version: client  # type: ignore[method-assign]
        self.connection = link._new_connection(MQTTv311)
        self.handler = client._package_handler

    def connack(self, session_present: bool) -> None:
        self.handler._handle_connack_packet(0x20, bytes([int(session_present), 0]))

    def publish(self, packet_id: int, payload: bytes) -> None:
        packet = publish_packet(packet_id, "devices/a/sensor", payload)
        self.handler._handle_publish_packet(0x32, packet)

    def pubacks(self) -> list[int]:
        data = b"".join(self.written)
        return [int.from_bytes(data[i + 2 : i + 4], "big") for i in range(0, len(data), 4)]


class Received:
    """The transport's handler: the payloads and acks handed on."""

    def __init__(self) -> None:
        self.payloads: list[bytes] = []
        self.acks: list[Ack] = []

    def __call__(self, _topic: str, payload: bytes, *_rest: Any) -> None:
        self.payloads.append(payload)
        if _rest[-1] is not None:
            self.acks.append(_rest[-1])


def resumed_while_queued(window: list[Any]) -> tuple[MqttTransport, Received, Wire, Wire]:
    """Messages 1-3 handed on by a connection that is then lost, unacknowledged (waiting in
    the queue); a new connection resumes the session and the broker re-sends them, then
    message 4."""
    received = Received()
    link = transport(redeliveries=lambda: window, handler=received)
    old = Wire(link)
    old.connack(False)
    for n in (1, 2, 3):
        old.publish(n, b"%d" % n)
    assert old.connection.outstanding == 3
    old.connection.lost.set()
    new = Wire(link)
    new.connack(True)
    for n in (1, 2, 3, 4):
        new.publish(n, b"%d" % n)
    return link, received, old, new


def test_a_resumed_session_waits_for_the_queue_of_the_lost_connection() -> None:
    """The resumed session's messages are held back (the socket not read) until the lost
    connection's messages are acknowledged; then the re-sent copies are recognised (PUBACK,
    not handed on) and the new message is handed on."""

    async def scenario() -> None:
        link, received, _old, new = resumed_while_queued([(9, 99)])
        assert received.payloads == [b"1", b"2", b"3"]  # the new connection's: held back
        assert not new.socket.reading
        assert not new.connection.released.is_set()
        link._check_session(new.connection)  # the connect completes meanwhile
        link.resume_reading()  # backpressure ends: still held back
        assert not new.socket.reading
        link.acknowledge(received.acks[:2])
        assert received.payloads == [b"1", b"2", b"3"]  # one still in the queue
        link.acknowledge(received.acks[2:])  # committed: their PUBACKs go to _dropped
        assert received.payloads == [b"1", b"2", b"3", b"4"]
        assert new.pubacks() == [1, 2, 3]
        assert new.socket.reading
        assert new.connection.released.is_set()
        assert new.connection.outstanding == 1
        assert link._dropped == []  # the filter took them
        assert link._resuming is None

    asyncio.run(scenario())


def test_backpressure_keeps_reading_paused_after_the_wait() -> None:
    async def scenario() -> None:
        link, received, _old, new = resumed_while_queued([])
        link.pause_reading()
        link.acknowledge(received.acks)
        assert received.payloads[-1] == b"4"
        assert not new.socket.reading
        link._current = new.connection
        link.resume_reading()
        assert new.socket.reading

    asyncio.run(scenario())


def test_the_wait_is_bounded(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Older messages never acknowledged: after OLDER_ACKS_WAIT, a warning, and the held
    messages go on as without the wait (the copies are not recognised)."""
    monkeypatch.setattr(client_module, "OLDER_ACKS_WAIT", 0.05)

    async def scenario() -> None:
        link, received, _old, new = resumed_while_queued([])
        async with asyncio.timeout(5):
            await new.connection.released.wait()
        assert received.payloads == [b"1", b"2", b"3", b"1", b"2", b"3", b"4"]
        assert new.socket.reading
        assert new.pubacks() == []
        # Waited for once: the next resume does not wait for them again.
        new.connection.lost.set()
        link.acknowledge(received.acks[3:])
        after = Wire(link)
        after.connack(True)
        assert after.connection.released.is_set()

    asyncio.run(scenario())
    assert "3 message(s) received before the reconnect are still not stored" in caplog.text


def test_nothing_outstanding_arms_the_check_at_the_connack() -> None:
    """The lost connection's messages were all acknowledged: no wait; the re-sent copies
    whose PUBACK was lost are recognised at once."""

    async def scenario() -> None:
        received = Received()
        link = transport(redeliveries=lambda: [], handler=received)
        old = Wire(link)
        old.connack(False)
        old.publish(1, b"1")
        old.connection.lost.set()
        link.acknowledge(received.acks)  # PUBACK dropped: the connection is lost
        new = Wire(link)
        new.connack(True)
        assert new.connection.released.is_set()
        new.publish(1, b"1")
        new.publish(2, b"2")
        assert received.payloads == [b"1", b"2"]
        assert new.pubacks() == [1]
        assert link._resuming is None

    asyncio.run(scenario())


def test_a_connection_lost_while_waiting_hands_on_nothing() -> None:
    async def scenario() -> None:
        link, received, _old, new = resumed_while_queued([])
        new.connection.lost.set()
        link.acknowledge(received.acks)
        assert received.payloads == [b"1", b"2", b"3"]  # the broker re-sends the rest
        assert link._resuming is None
        assert len(link._dropped) == 3  # offered to the next session

    asyncio.run(scenario())
