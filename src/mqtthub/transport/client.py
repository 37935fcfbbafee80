"""The MQTT connection of ``serve``: connect, fall back to 3.1.1, subscribe, reconnect.

:class:`MqttTransport` owns the whole connection lifecycle on top of gmqtt (chosen by
measurement, see docs/ARCHITECTURE.md). gmqtt's own reconnect loop is switched off so
that reconnection, protocol fallback and their log lines live in one place here.

One connection and the packet handling under it (our own PUBLISH reader, batched PUBACKs,
holding the socket, the session-present flag) are in :mod:`mqtthub.transport.connection`;
the errors of a failed attempt and their descriptions in
:mod:`mqtthub.transport.connect_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from mqtthub.config import BrokerEndpoint, MqttVersion
from mqtthub.errors import BrokerError, ConnectRefusedError
from mqtthub.ingest.redelivery import MAX_PAIRS, Pair, fingerprint
from mqtthub.transport import reasons
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.base import LinkPhase, LinkState, MessageHandler
from mqtthub.transport.connect_errors import (
    ClientCertRefusedError,
    ConnackTimeoutError,
    CredentialsLikelyError,
    NoConnackError,
    describe_failure,
    failure_reason,
    refusal_hint,
)
from mqtthub.transport.connection import (
    Ack,
    ManagedClient,
    MqttSession,
    RedeliverySource,
    _Connection,
)
from mqtthub.transport.history import ConnectionEvent, LinkEvent
from mqtthub.transport.tls_alert import broker_tls_alert

log = logging.getLogger("mqtthub.mqtt")

#: Told about every connect, refusal, failure and disconnect.
EventHandler = Callable[[ConnectionEvent], None]
REDIRECTS = frozenset({"use_another_server", "server_moved"})

PROTOCOL_NAMES = {MQTTv50: "MQTT 5", MQTTv311: "MQTT 3.1.1"}
OLDER_ACKS_WAIT = 10.0
"""A resumed session's messages wait at most this long (seconds) for the QoS 1 messages of
older connections to be acknowledged (see :meth:`MqttTransport._hold_resumed`)."""


class MqttTransport:
    """Keeps one subscribed MQTT connection alive and hands every message to a handler."""

    def __init__(
        self,
        *,
        endpoint: BrokerEndpoint,
        ssl_context: ssl.SSLContext | None,
        client_id: str,
        topics: Sequence[str],
        handler: MessageHandler,
        keepalive: int = 60,
        clean_start: bool = True,
        session_expiry: int = 0,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
        receive_maximum: int | None = None,
        maximum_packet_size: int | None = None,
        on_event: EventHandler | None = None,
        mqtt_version: MqttVersion = MqttVersion.AUTO,
        will: tuple[str, bytes] | None = None,
        client_cert: bool = False,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
        redeliveries: RedeliverySource | None = None,
        redelivery_topics: Callable[[str], bool] | None = None,
        previous_connection: float | None = None,
    ) -> None:
        """Configure the transport; nothing connects until :meth:`run`.

        Args:
            endpoint: where the broker is and which credentials to use.
            ssl_context: TLS settings, or None for a plain connection.
            client_id: the MQTT client id.
            topics: topic filters to subscribe to at QoS 1.
            handler: receives each message on the event loop; QoS 1 messages are
                acknowledged when their ``ack`` is passed to :meth:`acknowledge`.
            keepalive: MQTT keepalive in seconds.
            clean_start: start a fresh session (False resumes a persistent one).
            session_expiry: MQTT 5 session expiry interval in seconds.
            connect_timeout: how long to wait for TCP, TLS and CONNACK.
            backoff: reconnect policy (default: base 1 s, cap 60 s).
            receive_maximum: MQTT 5 limit of unacknowledged QoS 1 messages in flight.
            maximum_packet_size: MQTT 5 limit announced to the broker: it does not send
                larger packets (so none is read into memory). MQTT 3.1.1 has no such
                announcement; there the broker's own ``message_size_limit`` must do it.
            on_event: told about every connection event.
            mqtt_version: ``auto`` tries MQTT 5 and falls back to 3.1.1; or fixed.
            will: (topic, payload) the broker publishes at QoS 1 if we vanish.
            on_subscribed: awaited after each successful subscribe (e.g. to say "online").
            client_cert: whether ``ssl_context`` carries a client certificate (to name a
                broker's refusal of it, or its demand for one).
            redeliveries: the QoS 1 messages stored whose PUBACK may not have reached the
                broker: on a resumed session, the first messages that match them are
                acknowledged and not handed on (redeliveries without DUP, issue 16).
            redelivery_topics: which topics' messages ``redeliveries`` can hold (default
                all); messages on other topics pass the check without ending it.
            previous_connection: when this client id was last connected (a previous run,
                epoch): a first connection that finds no session although that was less
                than ``session_expiry`` ago reports ``session_lost``.
        """
        self.endpoint = endpoint
        self.client_id = client_id
        self._ssl = ssl_context
        self._topics = tuple(topics)
        self._handler = handler
        self._keepalive = keepalive
        self._clean_start = clean_start
        self._session_expiry = session_expiry
        self._connect_timeout = connect_timeout
        self._backoff = backoff or Backoff(stable_after=keepalive)
        self._receive_maximum = receive_maximum
        self._maximum_packet_size = maximum_packet_size
        self._on_event = on_event or (lambda _event: None)
        self._version = MQTTv311 if mqtt_version is MqttVersion.V311 else MQTTv50
        self._may_fall_back = mqtt_version is MqttVersion.AUTO
        self._will = will
        self._client_cert = client_cert
        self._on_subscribed = on_subscribed
        self._closing = asyncio.Event()
        self._current: _Connection | None = None
        self._subscribing: set[asyncio.Future[None]] = set()
        self._holding = False
        self._redeliveries = redeliveries
        self._redelivery_topics = redelivery_topics
        self._dropped: list[Pair] = []  # acknowledgements a lost connection could not send
        # Connections with QoS 1 messages handed on and not acknowledged yet (Ack.outstanding),
        # and the resumed connection holding its messages back until they are.
        self._connections: list[_Connection] = []
        self._resuming: _Connection | None = None
        self._resume_timer: asyncio.TimerHandle | None = None
        # The broker should hold a session for us now (on the first connection: the
        # previous run of this client id was connected within the session expiry).
        self._session_held = previous_connection is not None and (
            time.time() - previous_connection < max(session_expiry, 1)
        )
        self._previous_connection = previous_connection
        #: When the broker last forgot the session it should have kept (epoch), and why.
        self.session_lost: ConnectionEvent | None = None
        self.state = LinkState(LinkPhase.STARTING, None, None, time.time(), endpoint.display())
        #: When the next connection attempt starts (epoch) while waiting to reconnect.
        self.next_attempt_at: float | None = None

    async def run(self) -> None:
        """Connect, subscribe and reconnect until :meth:`close` is called."""
        while not self._closing.is_set():
            delay = await self._one_connection()
            if self._closing.is_set():
                break
            self.next_attempt_at = time.time() + delay
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._closing.wait()
            self.next_attempt_at = None

    async def close(self) -> None:
        """Disconnect cleanly and stop reconnecting."""
        self._closing.set()
        self._stop_resuming()
        if self._current is not None:
            await self._current.close()
            self._current = None

    def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, expiry: int | None = None
    ) -> bool:
        """Publish at QoS 1 on the current connection; False when not connected.

        ``expiry`` becomes the MQTT 5 message expiry interval (seconds) when speaking 5.
        """
        if self._current is None or not self.state.connected:
            return False
        properties = {}
        if expiry and self._version == MQTTv50:
            properties["message_expiry_interval"] = expiry
        self._current.client.publish(topic, payload, qos=1, retain=retain, **properties)
        return True

    def acknowledge(self, acks: Sequence[Ack]) -> None:
        """Send the PUBACKs of committed QoS 1 messages (those of a lost connection are
        dropped: the broker redelivers them)."""
        by_connection: dict[_Connection, list[Ack]] = {}
        for ack in acks:
            by_connection.setdefault(ack.connection, []).append(ack)
        for connection, group in by_connection.items():
            connection.outstanding -= len(group)
            if not connection.send_pubacks([ack.packet_id for ack in group]):
                self._dropped += [(a.packet_id, fingerprint(a.topic, a.payload)) for a in group]
                del self._dropped[:-MAX_PAIRS]
        if self._resuming is not None and not self._older_outstanding(self._resuming):
            self._release()

    @property
    def unsent_acknowledgements(self) -> int:
        """PUBACKs of stored messages that lost connections could not send (the broker
        will re-send those messages)."""
        return len(self._dropped)

    def _unacknowledged(self) -> list[Pair]:
        """What a resumed session may re-send of what is stored: the acknowledgements lost
        connections dropped, and the writer's window (see ingest/redelivery.py)."""
        stored = list(self._redeliveries()) if self._redeliveries is not None else []
        return self._dropped + stored

    def _older_outstanding(self, connection: _Connection) -> int:
        """QoS 1 messages handed on from connections before ``connection``, not yet
        acknowledged."""
        return sum(c.outstanding for c in self._connections if c is not connection)

    def _hold_resumed(self, connection: _Connection) -> bool:
        """At the CONNACK of a resumed session: hold its messages back while messages of
        older connections are still unacknowledged (waiting in the queue, say)? The broker
        re-sends those too, and they are offered to the redelivery check only once their
        acknowledgement went to :attr:`_dropped`. At most :data:`OLDER_ACKS_WAIT` seconds."""
        if not self._older_outstanding(connection):
            return False
        self._stop_resuming()
        self._resuming = connection
        loop = asyncio.get_running_loop()
        self._resume_timer = loop.call_later(OLDER_ACKS_WAIT, self._older_acks_late)
        return True

    def _older_acks_late(self) -> None:
        self._resume_timer = None
        connection = self._resuming
        if connection is None:
            return
        log.warning(
            "resumed the session while %d message(s) received before the reconnect are still "
            "not stored after %.0f s; going on without waiting for them: the broker may have "
            "re-sent them, and a copy without DUP is then stored again",
            self._older_outstanding(connection),
            OLDER_ACKS_WAIT,
        )
        # Waited for once: a message never acknowledged must not hold up every later resume.
        self._connections = [c for c in self._connections if c is connection]
        self._release()

    def _release(self) -> None:
        """Arm the resumed connection's redelivery check with what is unacknowledged now,
        hand on the messages it held back, and read again (unless backpressure holds)."""
        connection = self._resuming
        self._stop_resuming()
        if connection is None or connection.lost.is_set():
            return
        connection.release(self._unacknowledged())
        self._dropped = []  # the filter of this connection took them
        connection.hold(self._holding)

    def _stop_resuming(self) -> None:
        if self._resume_timer is not None:
            self._resume_timer.cancel()
            self._resume_timer = None
        self._resuming = None

    async def _until_released(self, connection: _Connection) -> bool:
        """Wait while ``connection`` holds its messages back (its SUBACK could not be read
        meanwhile); False when it was lost first."""
        if not connection.released.is_set():
            released = asyncio.ensure_future(connection.released.wait())
            lost = asyncio.ensure_future(connection.lost.wait())
            try:
                await asyncio.wait({released, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                released.cancel()
                lost.cancel()
        return not connection.lost.is_set()

    async def open(self, version: int) -> MqttSession:
        """Make one connection attempt with ``version`` (MQTTv50 or MQTTv311), no retries.

        Raises:
            ConnectRefusedError: the broker answered CONNACK with a failure code.
            BrokerError, OSError, TimeoutError: no connection or no CONNACK.
        """
        self._version = version
        connection = await self._attempt(version)
        return MqttSession(connection, PROTOCOL_NAMES[version])

    def pause_reading(self) -> None:
        """Stop reading from the socket (backpressure: the broker holds the messages),
        also across a reconnect, until :meth:`resume_reading`."""
        self._holding = True
        if self._current is not None:
            self._current.hold(True)

    def resume_reading(self) -> None:
        """Read from the socket again after :meth:`pause_reading`."""
        self._holding = False
        if self._current is not None:
            self._current.hold(False)

    def _emit(self, event: LinkEvent, reason: str, **fields: Any) -> None:
        protocol = fields.pop("protocol", PROTOCOL_NAMES[self._version])
        self._on_event(ConnectionEvent(time.time(), event, reason, protocol, **fields))

    def _set_state(self, phase: LinkPhase, reason: str | None = None) -> None:
        protocol = PROTOCOL_NAMES[self._version] if phase is LinkPhase.CONNECTED else None
        self.state = LinkState(phase, reason, protocol, time.time(), self.endpoint.display())

    async def _one_connection(self) -> float:
        """Run one connection from attempt to loss; return the delay before the next."""
        self._set_state(LinkPhase.CONNECTING)
        try:
            connection = await self._connect()
        except ConnectRefusedError as refused:
            self._set_state(LinkPhase.REFUSED, refused.reason)
            self._emit(
                LinkEvent.REFUSED, refused.reason, reason_code=refused.code, detail=str(refused)
            )
            if refused.reason in REDIRECTS and self._follow(refused.server_reference):
                return 0.0
            delay = self._backoff.cap_delay() if refused.permanent else self._backoff.next_delay()
            log.error(
                "connection refused by %s: %s (code %d); %s; retrying in %.0f s",
                self.endpoint.display(),
                refused.reason,
                refused.code,
                self._forced_hint(refused) or refusal_hint(refused.reason),
                delay,
            )
            return delay
        except (OSError, TimeoutError, BrokerError) as exc:
            reason = failure_reason(exc)
            self._set_state(LinkPhase.DISCONNECTED, reason)
            self._emit(LinkEvent.FAILED, reason, protocol=None, detail=describe_failure(exc))
            # A refused client certificate (or, likely, password) stays refused until the
            # settings change.
            permanent = isinstance(exc, ClientCertRefusedError | CredentialsLikelyError)
            delay = self._backoff.cap_delay() if permanent else self._backoff.next_delay()
            hint = self._forced_hint(exc)
            log.warning(
                "cannot connect to %s: %s%s; retrying in %.1f s",
                self.endpoint.display(),
                describe_failure(exc),
                hint and f"; {hint}",
                delay,
            )
            return delay
        started = time.monotonic()
        self._current = connection
        self._check_session(connection)
        if self._holding:
            connection.hold(True)
        try:
            if await self._until_released(connection):
                await self._subscribe(connection)
                if self._on_subscribed is not None:
                    await self._on_subscribed()
            await connection.lost.wait()
        finally:
            self._current = None
            if self._resuming is connection:
                self._stop_resuming()
            await connection.close()
        lasted = time.monotonic() - started
        self._backoff.connection_ended(lasted)
        if self._closing.is_set():
            return 0.0
        reason = reasons.disconnect_reason(connection.lost_reason)
        self._set_state(LinkPhase.DISCONNECTED, reason)
        self._emit(
            LinkEvent.DISCONNECTED,
            reason,
            reason_code=connection.lost_reason,
            lasted=round(lasted, 3),
            detail=reasons.describe_disconnect(reason, self.client_id),
        )
        if reason in REDIRECTS and self._follow(connection.server_reference):
            return 0.0
        delay = self._backoff.next_delay()
        log.warning("disconnected: %s after %.1f s; reconnecting in %.1f s", reason, lasted, delay)
        return delay

    def _check_session(self, connection: _Connection) -> None:
        """Warn when a reconnect finds no session although we asked the broker to keep one
        (clean start off; on MQTT 5 with a session expiry), or the first connection finds
        none although the previous run of this client id was connected less than the
        session expiry ago (``previous_connection``): what was published for us
        while we were away is lost (a broker restarted without persistence, an expired
        session, a broker that queues nothing for offline clients)."""
        persistent = not self._clean_start and (
            self._version == MQTTv311 or self._session_expiry > 0
        )
        expected, self._session_held = self._session_held, persistent
        previous, self._previous_connection = self._previous_connection, None
        if connection is not self._resuming:  # else release() offers them, with more
            self._dropped = []  # the filter of this connection took them (if it resumed)
        if not (persistent and expected) or connection.session_present is not False:
            return
        since = (
            f" (its previous run was connected {time.time() - previous:.0f} s ago)"
            if previous is not None
            else ""
        )
        detail = (
            f"the broker kept no session for client id {self.client_id}{since} although it "
            "was asked to (clean start off): messages published while disconnected are lost; "
            "the broker may have restarted without persistence, expired the session, or "
            "keep no messages for disconnected clients"
        )
        log.warning("session lost: %s", detail)
        event = ConnectionEvent(
            time.time(),
            LinkEvent.SESSION_LOST,
            "session_lost",
            PROTOCOL_NAMES[self._version],
            detail=detail,
        )
        self.session_lost = event
        self._on_event(event)

    def _forced_hint(self, exc: BaseException) -> str:
        """With MQTTHUB_MQTT_VERSION set, a CONNECT without an answer (or refused as an
        unsupported protocol) most likely means the broker does not speak that version."""
        unanswered = isinstance(exc, NoConnackError | ConnackTimeoutError)
        unsupported = isinstance(exc, ConnectRefusedError) and exc.reason == "unsupported_protocol"
        if self._may_fall_back or not (unanswered or unsupported):
            return ""
        version, other = ("5", "3.1.1") if self._version == MQTTv50 else ("3.1.1", "5")
        return (
            f"the broker may not accept MQTT {version}, which MQTTHUB_MQTT_VERSION={version} "
            f"forces: set MQTTHUB_MQTT_VERSION=auto (or {other})"
        )

    def _follow(self, reference: str | None) -> bool:
        """Switch to the broker a redirect names (``host`` or ``host:port``)."""
        if not reference:
            return False
        target = reference.split()[0]
        host, _, port = target.rpartition(":") if target.count(":") == 1 else (target, "", "")
        endpoint = replace(self.endpoint, host=host or target, port=int(port or self.endpoint.port))
        log.warning("broker redirects us to %s; following", target)
        self.endpoint = endpoint
        return True

    async def _connect(self) -> _Connection:
        """Connect with MQTT 5, falling back to 3.1.1 when the broker does not speak 5;
        over TLS, a connection that ends before CONNACK is first checked for a broker
        refusing our client certificate (then there is no fallback: the reason is known)."""
        try:
            return await self._attempt(self._version)
        except (NoConnackError, ConnectionResetError, ssl.SSLError) as exc:
            refused = await self._client_cert_refusal()
            if refused is not None:
                raise refused from exc
            if not isinstance(exc, NoConnackError):
                raise
            return await self._fall_back(exc)
        except (ConnectRefusedError, ConnackTimeoutError) as exc:
            return await self._fall_back(exc)

    async def _fall_back(self, exc: BrokerError | TimeoutError) -> _Connection:
        """Try MQTT 3.1.1 when MQTT 5 got no CONNACK (closed or silent) or was refused as
        unsupported: the doctor's rule. A close before CONNACK with 3.1.1 too, with
        credentials sent, names the credentials."""
        refused_v5 = isinstance(exc, ConnectRefusedError) and exc.reason == "unsupported_protocol"
        fallback_case = refused_v5 or isinstance(exc, NoConnackError | ConnackTimeoutError)
        if self._version != MQTTv50 or not self._may_fall_back or not fallback_case:
            raise self._credentials_likely(exc) or exc
        log.info("broker does not accept MQTT 5 (%s), falling back to MQTT 3.1.1", exc)
        self._version = MQTTv311
        try:
            return await self._attempt(MQTTv311)
        except NoConnackError as closed:
            likely = self._credentials_likely(closed)
            if likely is None:
                raise
            raise likely from closed

    def _credentials_likely(self, exc: BaseException) -> CredentialsLikelyError | None:
        """A close before CONNACK on MQTT 3.1.1 (which every broker speaks) with a username
        set: the broker's way (rumqttd's) of refusing the credentials."""
        if not isinstance(exc, NoConnackError) or self._version != MQTTv311:
            return None
        if not self.endpoint.username:
            return None
        return CredentialsLikelyError(
            "the broker closed the connection before answering CONNECT with "
            f"{'MQTT 3.1.1 (as set)' if not self._may_fall_back else 'MQTT 5 and 3.1.1'}, "
            f"although credentials were sent (user {self.endpoint.username}): a wrong "
            "username or password is the likely cause (rumqttd answers one this way); check "
            "user:password in MQTTHUB_BROKER_URL or MQTT_USERNAME/MQTT_PASSWORD"
        )

    async def _client_cert_refusal(self) -> ClientCertRefusedError | None:
        """What the broker says about our client certificate, if it refuses it (TLS only)."""
        if self._ssl is None or self.endpoint.websocket_path is not None:
            return None
        alert = await asyncio.to_thread(broker_tls_alert, self.endpoint, self._ssl)
        reason = reasons.client_cert_alert(alert, sent_cert=self._client_cert)
        if reason is None or alert is None:
            return None
        return ClientCertRefusedError(reason, reasons.describe_client_cert_alert(reason, alert))

    async def _attempt(self, version: int) -> _Connection:
        log.info(
            "connecting to %s:%d%s (TLS: %s, %s) as %s",
            self.endpoint.host,
            self.endpoint.port,
            _over_websocket(self.endpoint),
            "yes" if self._ssl else "no",
            PROTOCOL_NAMES[version],
            self.client_id,
        )
        connection = self._new_connection(version)
        connect = asyncio.ensure_future(
            connection.client.connect(
                self.endpoint.host,
                self.endpoint.port,
                ssl=self._ssl or False,
                keepalive=self._keepalive,
                version=version,
            )
        )
        lost = asyncio.ensure_future(connection.lost.wait())
        try:
            done, _ = await asyncio.wait(
                {connect, lost}, timeout=self._connect_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if connect in done:
                self._raise_connect_error(connect, version, connection)
                log.info("connected (%s)", PROTOCOL_NAMES[version])
                self._set_state(LinkPhase.CONNECTED)
                self._emit(LinkEvent.CONNECTED, "connected", protocol=PROTOCOL_NAMES[version])
                return connection
            if lost in done:
                raise NoConnackError("the broker closed the connection before answering CONNECT")
            if getattr(connection.client, "_connection", None) is not None:
                raise ConnackTimeoutError(f"no CONNACK within {self._connect_timeout:.0f} s")
            raise TimeoutError(f"no connection within {self._connect_timeout:.0f} s")
        except BaseException:
            connect.cancel()
            if self._resuming is connection:
                self._stop_resuming()
            await connection.close()
            raise
        finally:
            lost.cancel()

    def _new_connection(self, version: int) -> _Connection:
        connection = _Connection(
            self._new_client(version),
            version,
            self._handler,
            self._unacknowledged,
            self._redelivery_topics,
            self._hold_resumed,
        )
        # The connections before this one are over: only those still owing PUBACKs matter.
        self._connections = [c for c in self._connections if c.outstanding > 0]
        self._connections.append(connection)
        return connection

    @staticmethod
    def _raise_connect_error(
        connect: asyncio.Future[Any], version: int, connection: _Connection
    ) -> None:
        exc = connect.exception()
        if exc is None:
            return
        code = getattr(exc, "_code", None)
        if isinstance(exc, gmqtt.mqtt.handler.MQTTConnectError) and isinstance(code, int):
            reason = reasons.connack_reason(code, mqtt5=version == MQTTv50)
            raise ConnectRefusedError(
                code=code,
                reason=reason,
                permanent=reason in reasons.PERMANENT,
                server_reference=connection.server_reference,
            )
        raise exc

    def _new_client(self, version: int) -> ManagedClient:
        properties: dict[str, Any] = {}
        if version == MQTTv50 and self._session_expiry:
            properties["session_expiry_interval"] = self._session_expiry
        if version == MQTTv50 and self._receive_maximum:
            properties["receive_maximum"] = self._receive_maximum
        if version == MQTTv50 and self._maximum_packet_size:
            properties["maximum_packet_size"] = self._maximum_packet_size
        gmqtt_log = logging.getLogger("mqtthub.mqtt.gmqtt")
        will = gmqtt.Message(self._will[0], self._will[1], qos=1) if self._will else None
        client = ManagedClient(
            self.client_id,
            clean_session=self._clean_start,
            optimistic_acknowledgement=False,
            will_message=will,
            logger=gmqtt_log,
            websocket_path=self.endpoint.websocket_path,
            **properties,
        )
        if self.endpoint.username:
            password = self.endpoint.password.get_secret_value() if self.endpoint.password else None
            client.set_auth_credentials(self.endpoint.username, password)
        return client

    def add_topics(self, topics: Sequence[str]) -> None:
        """Subscribe to more topic filters (those not subscribed yet), now if connected and
        on every reconnect (e.g. the state topics Home Assistant discovery names)."""
        new = tuple(topic for topic in dict.fromkeys(topics) if topic not in self._topics)
        if not new:
            return
        self._topics += new
        connection = self._current
        if connection is not None:
            task = asyncio.ensure_future(self._subscribe(connection, new))
            self._subscribing.add(task)
            task.add_done_callback(self._subscribing.discard)

    async def _subscribe(
        self, connection: _Connection, topics: tuple[str, ...] | None = None
    ) -> None:
        topics = self._topics if topics is None else topics
        if not topics:
            return
        try:
            granted = await asyncio.wait_for(
                connection.subscribe(topics), timeout=self._connect_timeout
            )
        except TimeoutError:
            log.error("no SUBACK within %.0f s for %s", self._connect_timeout, topics)
            return
        for topic, code in zip(topics, granted, strict=False):
            if code >= reasons.SUBACK_FAILURE:
                log.error(
                    "subscription to %s refused by the broker (code %#x): the broker's ACL "
                    "does not let %s read it; allow read access to %s for that user",
                    topic,
                    code,
                    self.endpoint.username or "anonymous clients",
                    topic,
                )
            else:
                log.info("subscribed to %s (granted QoS %d)", topic, code)


def _over_websocket(endpoint: BrokerEndpoint) -> str:
    path = endpoint.websocket_path
    return "" if path is None else f" over WebSocket {path}"
