"""The doctor's probes: look at the network, TLS, the broker and the service (I/O only).

Each probe returns an evidence record from a rules module
(:mod:`mqtthub.doctor.network_rules`, :mod:`mqtthub.doctor.mqtt_rules`,
:mod:`mqtthub.doctor.traffic_rules`); deciding what the evidence means is left to the
pure rules there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from gmqtt.mqtt.constants import MQTTv50, MQTTv311
from pydantic import ValidationError
from sqlalchemy import create_engine, inspect, select
from sqlalchemy.engine import make_url

from mqtthub.config import BrokerEndpoint, MqttVersion, Settings, build_ssl_context
from mqtthub.doctor.census import MAX_TOPICS, TopicCensus
from mqtthub.doctor.limits import AcceptEvidence, PayloadEvidence
from mqtthub.doctor.mqtt_rules import Attempt, ConnectEvidence, DeliveryEvidence, StabilityEvidence
from mqtthub.doctor.mtls import ClientCertEvidence
from mqtthub.doctor.network_rules import CertInfo, NetworkEvidence, TlsEvidence
from mqtthub.doctor.traffic_rules import PipelineEvidence, TrafficEvidence
from mqtthub.errors import BrokerError, ConnectRefusedError
from mqtthub.messages import subscriptions
from mqtthub.profiles import PROFILE_NAMES, MqtthubProfile, Profiles
from mqtthub.profiles.active import active_profiles
from mqtthub.profiles.base import Profile
from mqtthub.store.schema import devices
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.client import PROTOCOL_NAMES, MqttTransport
from mqtthub.transport.connection import Ack, MqttSession
from mqtthub.transport.history import ConnectionEvent, ConnectionHistory, LinkEvent
from mqtthub.transport.reasons import SUBACK_FAILURE
from mqtthub.transport.tls_alert import broker_tls_alert

NETWORK_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 4.0
DELIVERY_TIMEOUT_S = 3.0
#: How long to wait for the broker's retained ``$SYS/broker/version`` (absent on many).
VERSION_TIMEOUT_S = 1.0
SYS_VERSION = "$SYS/broker/version"
DOCTOR_DEVICE = "mqtthub-doctor"
#: Most messages the traffic census takes in (the window ends early after them).
MAX_TRAFFIC_MESSAGES = 20_000
WIDE = "#"
PROTOCOL_VERSIONS = {name: version for version, name in PROTOCOL_NAMES.items()}
_T = TypeVar("_T")
BROKER_PROGRAMS = ("mosquitto", "emqx", "beam.smp", "rumqttd", "nanomq", "vernemq", "hivemq")


async def probe_network(endpoint: BrokerEndpoint) -> NetworkEvidence:
    """Resolve the broker host and open a TCP connection to it."""
    host, port = endpoint.host, endpoint.port
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        return NetworkEvidence(host, port, dns_error=str(exc) or "timed out")
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    local = endpoint.is_local or all(a.startswith("127.") or a == "::1" for a in addresses)
    tcp, error = await _tcp_connect(host, port)
    processes = broker_processes() if local and tcp == "refused" else ()
    return NetworkEvidence(host, port, addresses, None, tcp, error, local, processes)


async def _tcp_connect(host: str, port: int) -> tuple[str, str | None]:
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            _reader, writer = await asyncio.open_connection(host, port)
    except ConnectionRefusedError:
        return "refused", None
    except TimeoutError:
        return "timeout", None
    except OSError as exc:
        return "error", str(exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return "open", None


def broker_processes() -> tuple[str, ...]:
    """Names and pids of MQTT broker processes on this machine (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        program = os.path.basename(command.split(" ", 1)[0])
        if program in BROKER_PROGRAMS or "iotcore._serve" in command:
            found.append(f"{program} (pid {entry.name})")
    return tuple(found)


async def probe_tls(endpoint: BrokerEndpoint, settings: Settings) -> TlsEvidence:
    """Find out whether the port speaks TLS, and verify it as the settings would."""
    offered, cert = await asyncio.to_thread(_tls_handshake, endpoint, _unverified_context())
    evidence = TlsEvidence(
        configured=endpoint.tls,
        offered=offered,
        cert=_cert_info(cert) if cert else None,
        host=endpoint.host,
        ca_file=str(settings.ca_file) if settings.ca_file else None,
    )
    if not (offered and endpoint.tls):
        return evidence
    try:
        await asyncio.to_thread(_tls_handshake, endpoint, build_ssl_context(settings), True)
    except ssl.SSLCertVerificationError as exc:
        return TlsEvidence(
            evidence.configured,
            True,
            evidence.cert,
            exc.verify_message,
            exc.verify_code,
            evidence.host,
            evidence.ca_file,
        )
    return evidence


def _unverified_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only to look at the certificate, never to talk
    return context


def _tls_handshake(
    endpoint: BrokerEndpoint, context: ssl.SSLContext, verifying: bool = False
) -> tuple[bool, bytes | None]:
    """(speaks TLS, the peer's DER certificate). Verification errors propagate when verifying."""
    try:
        with (
            socket.create_connection((endpoint.host, endpoint.port), NETWORK_TIMEOUT_S) as sock,
            context.wrap_socket(sock, server_hostname=endpoint.host) as tls,
        ):
            return True, tls.getpeercert(binary_form=True)
    except ssl.SSLCertVerificationError:
        if verifying:
            raise
        return True, None
    except ssl.SSLError as exc:
        # A TLS alert (e.g. TLS 1.2's handshake failure for a missing client certificate)
        # means the port speaks TLS; the client certificate probe says what it was about.
        return "_ALERT_" in str(exc.reason or ""), None
    except OSError:
        return False, None


def _cert_info(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    names: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*sans.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    not_after = cert.not_valid_after_utc
    days_left = (not_after - datetime.now(UTC)).total_seconds() / 86400
    return CertInfo(
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        tuple(names),
        not_after.isoformat(),
        days_left,
    )


class Probe:
    """The doctor's MQTT client: one connection, messages collected for inspection."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        """Prepare; :meth:`connect` connects."""
        self.settings = settings
        self.client_id = client_id
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.session: MqttSession | None = None
        self.transport = MqttTransport(
            endpoint=settings.broker,
            ssl_context=build_ssl_context(settings) if settings.broker.tls else None,
            client_id=client_id,
            topics=subscriptions(settings.topic_prefix),
            handler=self._collect,
            keepalive=settings.keepalive,
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    def _collect(
        self, topic: str, payload: bytes, _qos: int, _retain: bool, _dup: bool, ack: Ack | None
    ) -> None:
        self.messages.put_nowait((topic, payload))
        if ack is not None:
            self.transport.acknowledge([ack])

    async def connect(self) -> ConnectEvidence:
        """CONNECT with MQTT 5, then 3.1.1 unless MQTT 5 got a definite refusal."""
        attempts = []
        versions = {MqttVersion.V5: (MQTTv50,), MqttVersion.V311: (MQTTv311,)}.get(
            self.settings.mqtt_version, (MQTTv50, MQTTv311)
        )
        for version in versions:
            attempt, self.session, refused = await self._open(version)
            attempts.append(attempt)
            if self.session is not None or (refused and attempt.reason != "unsupported_protocol"):
                break
        endpoint = self.settings.broker
        forced = PROTOCOL_NAMES[versions[0]] if len(versions) == 1 else None
        unforced = None
        if forced is not None and self.session is None and attempts[-1].reason != "connected":
            unforced = await self._try_unforced(MQTTv311 if versions[0] == MQTTv50 else MQTTv50)
        return ConnectEvidence(
            tuple(attempts),
            endpoint.username,
            self.client_id,
            self.settings.keepalive,
            self.session.server_keepalive if self.session else None,
            forced=forced,
            unforced=unforced,
        )

    async def _open(self, version: int) -> tuple[Attempt, MqttSession | None, bool]:
        """One CONNECT: (the attempt, the session when connected, whether the CONNACK
        refused it)."""
        protocol = PROTOCOL_NAMES[version]
        try:
            session = await self.transport.open(version)
        except ConnectRefusedError as refused:
            return Attempt(protocol, refused.reason, refused.code), None, True
        except (BrokerError, OSError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "closed_before_connack"
            return Attempt(protocol, reason), None, False
        return Attempt(protocol, "connected"), session, False

    async def _try_unforced(self, version: int) -> Attempt:
        """One CONNECT with the version MQTTHUB_MQTT_VERSION does not allow, closed at
        once: only to tell "the broker speaks the other version" from other causes."""
        attempt, session, _refused = await self._open(version)
        if session is not None:
            await session.close()
        return attempt

    async def delivery(self, recipient: str | None = None) -> DeliveryEvidence:
        """Subscribe as serve would, publish a probe on a device topic, see it arrive; with
        ``recipient``, as that recipient's task app would (see :func:`app_delivery_plan`).

        The broker's version is asked for apart (:meth:`broker_version`).
        """
        assert self.session is not None
        session = self.session
        nonce = secrets.token_hex(8)
        if recipient is None:
            filters = list(subscriptions(self.settings.topic_prefix))
            topic = f"{self.settings.topic_prefix}/{DOCTOR_DEVICE}/heartbeat"
            payload = json.dumps({"doctor_probe": nonce}).encode()
        else:
            filters, topic, payload = app_delivery_plan(self.settings.app_prefix, recipient, nonce)
        protocol = session.protocol
        username = self.settings.broker.username
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                codes = await _unless_lost(session, session.subscribe(filters))
        except TimeoutError:
            extra = {"no_suback": True, "connection_lost": session.lost.is_set()}
            return DeliveryEvidence(
                {}, topic, None, False, protocol, username, extra, recipient=recipient
            )
        granted = dict(zip(filters, codes, strict=False))
        code: int | None = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                code = await _unless_lost(session, session.publish(topic, payload))
        delivered = await self._await_probe(topic, nonce.encode())
        mqtt5_code = code if protocol == "MQTT 5" else None
        return DeliveryEvidence(
            granted, topic, mqtt5_code, delivered, protocol, username, recipient=recipient
        )

    async def broker_version(self) -> str | None:
        """The broker's ``$SYS/broker/version``, asked last and on its own: some brokers
        (rumqttd) drop the connection for a ``$SYS`` filter instead of refusing it."""
        session = self.session
        if session is None or session.lost.is_set():
            return None
        try:
            async with asyncio.timeout(VERSION_TIMEOUT_S):
                codes = await _unless_lost(session, session.subscribe([SYS_VERSION]))
                if not codes or codes[0] >= SUBACK_FAILURE:
                    return None
                while True:
                    got_topic, payload = await _unless_lost(session, self.messages.get())
                    if got_topic == SYS_VERSION:
                        return payload.decode(errors="replace")
        except TimeoutError:
            return None

    async def _await_probe(self, topic: str, nonce: bytes) -> bool:
        """Whether the probe carrying ``nonce`` arrives on ``topic`` in time."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    got_topic, payload = await self.messages.get()
            except TimeoutError:
                break
            if got_topic == topic and nonce in payload:
                return True
        return False

    async def traffic(self, seconds: float, census: TopicCensus) -> tuple[str, str | None]:
        """Listen to every topic (``#``) for ``seconds`` on a connection of its own and
        hand each message to ``census``; where the broker refuses ``#``, to the active
        profiles' topics. Returns what was listened to, and the bound that stopped the
        listening early (None: the whole window)."""
        assert self.session is not None
        heard: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(MAX_TRAFFIC_MESSAGES)

        def collect(
            topic: str, payload: bytes, _qos: int, retain: bool, _dup: bool, ack: Ack | None
        ) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                heard.put_nowait((topic, payload, retain))
            if ack is not None:
                listener.acknowledge([ack])

        listener = MqttTransport(
            endpoint=self.settings.broker,
            ssl_context=build_ssl_context(self.settings) if self.settings.broker.tls else None,
            client_id=f"{self.client_id}-traffic",
            topics=(),
            handler=collect,
            keepalive=self.settings.keepalive,
            connect_timeout=CONNECT_TIMEOUT_S,
        )
        try:
            session = await listener.open(PROTOCOL_VERSIONS[self.session.protocol])
        except (BrokerError, OSError, TimeoutError) as exc:  # ConnectRefusedError included
            return "nothing", f"a second connection to listen with failed: {exc!r:.200}"
        try:
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                listened, subscribed = await subscribe_wide(session, census.active.subscriptions())
            limit = await _take_in(heard, census, session, subscribed, seconds)
        finally:
            await session.close()
        return listened, limit

    async def pipeline(self, api: str, token: str | None) -> PipelineEvidence:
        """Publish a synthetic reading and look for it in the running service's API."""
        assert self.session is not None
        value = float(secrets.randbelow(10**9))
        topic = f"{self.settings.topic_prefix}/{DOCTOR_DEVICE}/sensor"
        payload = json.dumps({"doctor_probe": value}).encode()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                await self.session.publish(topic, payload)
        url = f"{api.rstrip('/')}/api/devices/{DOCTOR_DEVICE}"
        error = None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                found = await asyncio.to_thread(_get_json, url, token)
            except (OSError, ValueError) as exc:
                error = str(exc)
                found = None
            latest = (found or {}).get("latest", {})
            if latest.get("doctor_probe", {}).get("value") == value:
                return PipelineEvidence(api, DOCTOR_DEVICE, True)
            await asyncio.sleep(0.2)
        return PipelineEvidence(api, DOCTOR_DEVICE, False, error)

    async def close(self) -> None:
        """Disconnect."""
        if self.session is not None:
            await self.session.close()


def app_delivery_plan(app_prefix: str, recipient: str, nonce: str) -> tuple[list[str], str, bytes]:
    """The filters a task app subscribes to (:class:`mqtthub.client.TaskListener` with
    receipts followed, as the inbox runs it), and a probe for them: (filters, topic, payload).

    The probe is a receipt for the task ``mqtthub-doctor-<nonce>``, which no one ever
    sent, so only the ``+/ack`` filter brings it back (``+`` is one level). Receipts are
    what the app publishes, so the broker's ACL is tested for them. Whoever else hears it
    does nothing: serve stores a receipt by ``UPDATE tasks ... WHERE id = <task id>``
    (``store.downlink.receipt``), which changes no row for an unknown task, so it sends
    no task event either (``Downlink.handle``; with several workers it sends one
    all the same, for an id no dashboard page lists); the inbox takes only ``seen`` and
    ``done`` from its other copies (``inbox.tasks.state_of_receipt``) and ignores this
    ``delivered``.
    """
    base = f"{app_prefix}/tasks/{recipient}"
    topic = f"{base}/{DOCTOR_DEVICE}-{nonce}/ack"
    payload = json.dumps({"state": "delivered", "doctor_probe": nonce}).encode()
    return [f"{base}/+", f"{base}/+/ack"], topic, payload


async def _unless_lost(session: MqttSession, awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable``; TimeoutError at once when the connection is lost first."""
    task = asyncio.ensure_future(awaitable)
    lost = asyncio.ensure_future(session.lost.wait())
    try:
        done, _ = await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise TimeoutError("the broker closed the connection")
    finally:
        lost.cancel()
        task.cancel()


def _get_json(url: str, token: str | None) -> dict[str, Any] | None:
    request = urllib.request.Request(url)  # noqa: S310 (the operator's own --api URL)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:  # noqa: S310
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


async def probe_stability(settings: Settings, client_id: str, seconds: float) -> StabilityEvidence:
    """Stay connected (reconnecting as serve would) and record every drop."""
    history = ConnectionHistory(client_id)
    drops: list[dict[str, Any]] = []
    sessions_lost: list[dict[str, Any]] = []
    # As serve would: a persistent session, so a broker that forgets it is seen (it
    # expires soon after the soak on MQTT 5 and is cleaned up below).
    persistent = settings.persistent_session

    def on_event(event: ConnectionEvent) -> None:
        history.add(event)
        if event.event == LinkEvent.DISCONNECTED:
            drops.append(event.as_dict())
        elif event.event == LinkEvent.SESSION_LOST:
            sessions_lost.append(event.as_dict())

    def discard(
        _topic: str, _payload: bytes, _qos: int, _retain: bool, _dup: bool, ack: Ack | None
    ) -> None:
        if ack is not None:
            transport.acknowledge([ack])

    transport = MqttTransport(
        endpoint=settings.broker,
        ssl_context=build_ssl_context(settings) if settings.broker.tls else None,
        client_id=client_id,
        topics=(),
        handler=discard,
        keepalive=settings.keepalive,
        connect_timeout=CONNECT_TIMEOUT_S,
        backoff=Backoff(base=0.5, cap=5.0, stable_after=settings.keepalive),
        on_event=on_event,
        mqtt_version=settings.mqtt_version,
        clean_start=not persistent,
        session_expiry=int(seconds) + 60 if persistent else 0,
    )
    task = asyncio.create_task(transport.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
    await transport.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if persistent:
        await _end_session(settings, client_id, transport._version)
    diagnosis = history.diagnosis
    return StabilityEvidence(
        seconds,
        client_id,
        borrowed_id=False,
        drops=tuple(drops),
        diagnosis=diagnosis.reason if diagnosis else None,
        diagnosis_message=diagnosis.message if diagnosis else None,
        sessions_lost=tuple(sessions_lost),
    )


async def _end_session(settings: Settings, client_id: str, version: int) -> None:
    """Connect once with a clean start, so the soak leaves no session at the broker."""
    cleaner = MqttTransport(
        endpoint=settings.broker,
        ssl_context=build_ssl_context(settings) if settings.broker.tls else None,
        client_id=client_id,
        topics=(),
        handler=lambda *_args: None,
        connect_timeout=CONNECT_TIMEOUT_S,
    )
    with contextlib.suppress(BrokerError, OSError, TimeoutError):
        session = await cleaner.open(version)
        await session.close()


def registry(settings: Settings) -> tuple[int, tuple[str, ...]]:
    """(registered devices, endpoints they were provisioned with), read-only; (0, ()) if none."""
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").exists():
        return 0, ()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("devices"):
                return 0, ()
            rows = connection.execute(select(devices.c.broker_endpoint)).all()
    except Exception:  # a database we cannot read means no registry to compare with
        return 0, ()
    finally:
        engine.dispose()
    endpoints = tuple(sorted({row.broker_endpoint for row in rows if row.broker_endpoint}))
    return len(rows), endpoints


async def subscribe_wide(
    session: MqttSession, fallback: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    """Subscribe to ``#``; if the broker refuses it (an ACL), to ``fallback`` instead.

    Returns what was listened to (for the report) and the filters granted; with ``#``
    granted, a broker like Mosquitto 2.0 still delivers only what its ACL lets us read.
    """
    codes = await session.subscribe([WIDE])
    if codes and codes[0] < SUBACK_FAILURE:
        return f"{WIDE} (every topic the broker lets this user read)", (WIDE,)
    codes = await session.subscribe(list(fallback)) if fallback else ()
    granted = tuple(t for t, code in zip(fallback, codes, strict=False) if code < SUBACK_FAILURE)
    shown = ", ".join(granted) or "nothing"
    return (
        f"the active profiles' topics {shown} only: the broker refused {WIDE}, so topics "
        "no profile reads cannot be seen",
        granted,
    )


async def _take_in(
    heard: asyncio.Queue[tuple[str, bytes, bool]],
    census: TopicCensus,
    session: MqttSession,
    subscribed: tuple[str, ...],
    seconds: float,
) -> str | None:
    """Feed the census until ``seconds`` pass or :data:`MAX_TRAFFIC_MESSAGES` arrived;
    without ``#``, also subscribe to the state topics Home Assistant configs name."""
    deadline = time.monotonic() + seconds
    taken = 0
    while (left := deadline - time.monotonic()) > 0:
        try:
            async with asyncio.timeout(left):
                topic, payload, retained = await heard.get()
        except TimeoutError:
            return None
        census.add(topic, payload, retained=retained, received_at=time.time())
        taken += 1
        if taken >= MAX_TRAFFIC_MESSAGES:
            return f"stopped after {MAX_TRAFFIC_MESSAGES} messages"
        if WIDE not in subscribed and (new := census.active.new_topics(subscribed)):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DELIVERY_TIMEOUT_S):
                    await session.subscribe(new)
            subscribed = (*subscribed, *new)
    return None


def build_census(settings: Settings) -> TopicCensus:
    """A census of the profiles ``serve`` would run with, and every other known profile.

    Raises:
        ConfigError: the mapping file cannot be read (settings validation reads it too).
    """
    active = active_profiles(settings) or Profiles([MqtthubProfile(settings.topic_prefix)])
    candidates: dict[str, Profile] = {}
    for name in PROFILE_NAMES:
        if name in active.names:
            continue
        alone = settings.model_copy(update={"profiles": name, "mappings": None})
        made = active_profiles(alone)
        candidates[name] = made.profiles[0] if made else MqtthubProfile(settings.topic_prefix)
    return TopicCensus(
        active=active,
        candidates=candidates,
        topic_prefix=settings.topic_prefix,
        app_prefix=settings.app_prefix,
        homeassistant_prefix=settings.homeassistant_prefix,
        max_payload=settings.max_payload,
    )


def traffic_evidence(
    settings: Settings,
    seconds: float,
    census: TopicCensus,
    *,
    listened: str = "",
    limit: str | None = None,
) -> TrafficEvidence:
    """Combine what was heard with what the registry says."""
    registered, endpoints = registry(settings)
    by_profile = census.by_profile()
    unmatched, topics, messages = census.unmatched()
    limits = [limit] if limit else []
    if census.topics_capped:
        limits.append(f"only the first {MAX_TOPICS} topics are listed")
    return TrafficEvidence(
        seconds,
        sum(p.messages for p in by_profile),
        census.devices(),
        registered,
        settings.broker.address,
        endpoints,
        listened=listened,
        profiles=census.active.names,
        by_profile=by_profile,
        unmatched=unmatched,
        unmatched_topics=topics,
        unmatched_messages=messages,
        limits="; ".join(limits) or None,
    )


# ---------------------------------------------------------------- client certificates


def inspect_client_cert(cert_file: Path, key_file: Path | None) -> ClientCertEvidence:
    """Read the client certificate and its key locally: dates, names, whether they match."""
    key_path = key_file or cert_file
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        return ClientCertEvidence(str(cert_file), str(key_path), read_error=str(exc))
    now = datetime.now(UTC)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    matches = cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)
    return ClientCertEvidence(
        str(cert_file),
        str(key_path),
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        cert.not_valid_before_utc.isoformat(),
        cert.not_valid_after_utc.isoformat(),
        starts_in_days=(cert.not_valid_before_utc - now).total_seconds() / 86400,
        days_left=(cert.not_valid_after_utc - now).total_seconds() / 86400,
        key_matches=matches,
    )


def client_cert_files(flags: dict[str, Any]) -> ClientCertEvidence | None:
    """The configured client certificate read locally, without building a TLS context
    (which refuses a key that does not match); None when none is configured."""
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError:
        return None
    if settings.client_cert is None:
        return None
    return inspect_client_cert(settings.client_cert, settings.client_key)


async def probe_client_cert(settings: Settings) -> ClientCertEvidence:
    """The client certificate as the files say, and the broker's verdict on it (or on
    its absence): the TLS alert it sends during or right after the handshake."""
    local = (
        inspect_client_cert(settings.client_cert, settings.client_key)
        if settings.client_cert
        else ClientCertEvidence()
    )
    alert = await asyncio.to_thread(broker_tls_alert, settings.broker, build_ssl_context(settings))
    return replace(local, alert=alert, probed=True)


# ---------------------------------------------------------------- broker limits

#: How long a new TCP connection waits for a broker at its connection limit to close it.
ACCEPT_CLOSE_S = 0.3


async def probe_accept(endpoint: BrokerEndpoint) -> AcceptEvidence:
    """Open a TCP connection, say nothing, and see whether the broker closes it at once."""
    closed = False
    try:
        async with asyncio.timeout(NETWORK_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    except (OSError, TimeoutError):
        return AcceptEvidence(endpoint.address, False)
    try:
        async with asyncio.timeout(ACCEPT_CLOSE_S):
            closed = await reader.read(1) == b""
    except (TimeoutError, OSError) as exc:
        closed = isinstance(exc, ConnectionResetError)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return AcceptEvidence(endpoint.address, closed)


def connack_properties(session: MqttSession) -> dict[str, Any]:
    """The MQTT 5 CONNACK's properties ({} on 3.1.1), first values only."""
    connection = getattr(session, "_connection", None)
    handler = getattr(getattr(connection, "client", None), "_package_handler", None)
    found = getattr(handler, "_connack_properties", None) or {}
    return {name: values[0] for name, values in found.items() if values}


async def probe_payload(probe: Probe, size: int, explicit: bool) -> PayloadEvidence | None:
    """Publish a probe of ``size`` bytes on the heartbeat topic and await it; None when
    the probe's connection is gone."""
    session = probe.session
    if session is None or session.lost.is_set():
        return None
    properties = connack_properties(session)
    topic = f"{probe.settings.topic_prefix}/{DOCTOR_DEVICE}/heartbeat"
    nonce = secrets.token_hex(8)
    head = json.dumps({"doctor_probe": nonce, "pad": ""}).encode()
    payload = head[:-2] + b"x" * max(0, size - len(head)) + b'"}'
    code: int | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DELIVERY_TIMEOUT_S):
            code = await session.publish(topic, payload)
    delivered = False
    if not session.lost.is_set():
        delivered = await probe._await_probe(topic, nonce.encode())
    lost_reason = getattr(getattr(session, "_connection", None), "lost_reason", None)
    return PayloadEvidence(
        len(payload),
        explicit,
        session.protocol,
        code if session.protocol == "MQTT 5" else None,
        delivered,
        lost_reason,
        session.lost.is_set(),
        properties.get("maximum_packet_size"),
        properties.get("receive_maximum"),
        properties.get("server_keep_alive"),
    )
