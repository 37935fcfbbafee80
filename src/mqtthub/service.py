"""``mqtthub serve``: wires transport, writer and web into one event loop and owns shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import socket
import time
from collections.abc import Callable, Generator
from typing import Any

import uvicorn

from mqtthub.alerts.notify import Notifier, SmtpServer
from mqtthub.alerts.service import Alerts
from mqtthub.config import Delivery, Settings, build_ssl_context
from mqtthub.downlink import topics as downlink_topics
from mqtthub.downlink.service import Downlink
from mqtthub.downlink.topics import Route, Routed
from mqtthub.errors import MqttHubError, StoreError, StoreUnavailableError
from mqtthub.events import EventBus
from mqtthub.housekeeping import Housekeeping
from mqtthub.ingest.writer import BatchWriter
from mqtthub.leader import Leadership
from mqtthub.messages import Status, max_packet_size, subscriptions
from mqtthub.metrics import Metrics, Sources, worker_snapshot
from mqtthub.pipeline import RawMessage, internal_error
from mqtthub.presence import PresenceEngine
from mqtthub.profiles.active import active_profiles
from mqtthub.stats import Stats, combine
from mqtthub.store import queries
from mqtthub.store.database import Store, record_connection_event
from mqtthub.store.notify import EventRelay
from mqtthub.store.sessions import clear_unacked, record_connected
from mqtthub.store.workers import live_workers, record_worker
from mqtthub.supervisor import Supervisor
from mqtthub.transport import embedded
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.base import Transport
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.history import (
    SHORT_SESSION_S,
    ConnectionEvent,
    ConnectionHistory,
    LinkEvent,
)
from mqtthub.web.app import create_app
from mqtthub.web.runtime import Runtime

log = logging.getLogger("mqtthub")
SHUTDOWN_BUDGET_S = 8.0
RETRY_CAP_S = 5.0  # longest wait between retries of a receipt while the database is down
WORKER_REFRESH_S = 2  # how often a worker sharing the stream stores its counters
CONNECTED_REFRESH_S = 10  # how often a connected serve notes it in mqtt_sessions


def shared_filters(group: str | None, filters: tuple[str, ...]) -> tuple[str, ...]:
    """``filters`` as subscriptions of the shared-subscription ``group`` (None: as they are).

    The broker then hands each matching message to one member of the group, so workers
    split the stream instead of each receiving all of it.
    """
    if group is None:
        return filters
    return tuple(f"$share/{group}/{topic_filter}" for topic_filter in filters)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("could not record a connection event: %s", future.exception())


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the service handles SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_http(host: str, port: int) -> socket.socket:
    """Bind the HTTP socket early so a busy port is a clear error, not a log line.

    Raises:
        MqttHubError: the address is in use or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP, and accepted connections inherit the protocol. With Nagle on, every
    # response after the first on a kept-alive connection waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MqttHubError(
            f"MQTTHUB_HTTP_PORT: cannot listen on {host}:{port}: {exc.strerror}; "
            "choose another port with MQTTHUB_HTTP_PORT or --http-port"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Service:
    """One ``serve`` process: ingest, store and serve until SIGINT or SIGTERM."""

    def __init__(
        self, settings: Settings, *, transport_factory: Callable[..., Transport] = MqttTransport
    ) -> None:
        """Prepare the service; nothing connects until :meth:`run`.

        ``transport_factory`` takes :class:`MqttTransport`'s keyword arguments; tests pass
        a fake.
        """
        self.settings = settings
        self._transport_factory = transport_factory
        self.stats = Stats()
        # Unbounded as a container; _enqueue pauses reading at MQTTHUB_QUEUE_SIZE (a few
        # messages already read from the socket may still arrive after the pause).
        self.queue: asyncio.Queue[RawMessage] = asyncio.Queue()
        self._pending: set[asyncio.Future[None]] = set()  # receipts, connection events
        self._stop = asyncio.Event()
        self._stable_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._session_id: str | None = None  # set by _serve with a persistent session
        self.supervisor = Supervisor(on_failure=lambda _failure: self._stop.set())

    async def run(self) -> None:
        """Run until a signal arrives or a task dies, then shut down in order within ~10 s.

        Raises:
            MqttHubError: the HTTP port, the database or the embedded broker failed to start.
            TaskFailedError: a long-running task ended unexpectedly (after the shutdown).
        """
        settings = self.settings
        http_socket = (
            bind_http(settings.http_host, settings.http_port) if self.serves_http else None
        )
        broker = await asyncio.to_thread(
            embedded.start_if_needed, settings.broker, settings.embedded_broker
        )
        store: Store | None = None
        try:
            store = await asyncio.to_thread(Store.open, settings.sqlalchemy_url)
            log.info("database ready: %s", store.engine.url.render_as_string(hide_password=True))
            await self._serve(store, http_socket, embedded_broker=broker is not None)
            if self.supervisor.failure is not None:
                raise self.supervisor.failure
        finally:
            if store is not None:
                store.close()
            if broker is not None:
                await asyncio.to_thread(broker.stop)
            if http_socket is not None:
                http_socket.close()

    @property
    def serves_http(self) -> bool:
        """False for the workers ``serve --workers`` starts besides the first."""
        return not self.settings.worker_index

    async def _serve(
        self, store: Store, http_socket: socket.socket | None, *, embedded_broker: bool = False
    ) -> None:
        settings = self.settings
        self.events = EventBus()
        client_id = settings.effective_client_id()
        # With a persistent session, each batch records what may be unacknowledged at the
        # broker and the client id's last connection (mqtt_sessions, issue 16).
        self._session_id = client_id if settings.persistent_session else None
        self.history = ConnectionHistory(client_id)
        share_group = settings.effective_share_group
        self.leadership = Leadership(settings.sqlalchemy_url) if share_group is not None else None
        worker = client_id if share_group is not None else None
        sources = Sources(
            stats=self.stats,
            queue_depth=self.queue.qsize,
            connected=lambda: transport.state.connected,
            reconnects=lambda: dict(self.history.counts),
            devices_by_status=lambda: store.read(queries.count_devices),
            worker=worker,
            other_workers=lambda: [
                (w["id"], w["stats"]) for w in self._other_workers(store, client_id)
            ],
        )
        metrics = Metrics(sources)
        profiles = active_profiles(settings)
        device_topics = (
            profiles.subscriptions(retained_configs=False)
            if profiles
            else subscriptions(settings.topic_prefix)
        )
        subscribed = (
            *shared_filters(share_group, device_topics),
            *(profiles.subscriptions(retained_configs=True) if profiles else ()),
            *downlink_topics.subscriptions(settings.topic_prefix, settings.app_prefix),
        )
        writer = BatchWriter(
            store=store,
            queue=self.queue,
            stats=self.stats,
            presence=PresenceEngine(
                default_timeout=settings.heartbeat_timeout,
                missed_intervals=settings.missed_heartbeats,
            ),
            prefix=settings.topic_prefix,
            max_payload=settings.max_payload,
            auto_register=settings.auto_register,
            batch_size=settings.batch_size,
            redelivery_window=float(max(settings.session_expiry, 3600)),
            on_taken=self._room_made,
            acknowledge=lambda acks: self.transport.acknowledge(acks),
            events=self.events,
            metrics=metrics,
            worker_id=worker,
            is_leader=self.is_leader,
            profiles=profiles,
            subscribed=subscribed,
            follow_topics=lambda topics: self.transport.add_topics(
                shared_filters(share_group, tuple(topics))
            ),
            session_id=self._session_id,
        )
        await writer.load()
        self._writer = writer
        previous = writer.previous_session
        session_options: dict[str, Any] = {}
        if self._session_id is not None:
            session_options["redeliveries"] = lambda: writer.unacked.pairs()
            # Only device messages are recorded (receipts, replies and app statuses are
            # acknowledged by the downlink): the others must not end the check.
            session_options["redelivery_topics"] = self._is_device_topic
            # A broker this process started itself has no session from the previous run.
            if previous is not None and not embedded_broker:
                session_options["previous_connection"] = previous.connected_at
        self.transport = transport = self._transport_factory(
            endpoint=settings.broker,
            ssl_context=build_ssl_context(settings) if settings.broker.tls else None,
            client_id=client_id,
            # Device topics are split among the workers; every worker gets every receipt,
            # reply and app status (low rates; recorded once, the leader re-sends tasks),
            # so none waits in the session of a worker that is down (see docs/SCALING.md).
            topics=subscribed,
            handler=self._on_message,
            keepalive=settings.keepalive,
            clean_start=not settings.persistent_session,
            session_expiry=settings.session_expiry if settings.persistent_session else 0,
            receive_maximum=min(65535, settings.queue_size),
            maximum_packet_size=max_packet_size(settings.max_payload),
            backoff=Backoff(
                base=settings.reconnect_base,
                cap=settings.reconnect_cap,
                stable_after=settings.keepalive,
            ),
            on_event=self._on_connection_event,
            mqtt_version=settings.mqtt_version,
            client_cert=settings.client_cert is not None,
            **session_options,
        )
        self.downlink = Downlink(
            execute_write=writer.execute_write,
            transport=transport,
            events=self.events,
            prefix=settings.topic_prefix,
            app_prefix=settings.app_prefix,
            is_leader=self.is_leader,
            shared=worker is not None,
        )
        alerts = Alerts(
            store=store,
            execute_write=writer.execute_write,
            notifier=Notifier(
                execute_write=writer.execute_write,
                publish=lambda topic, body: transport.publish(topic, body),
                smtp=SmtpServer.from_url(settings.smtp_url.get_secret_value(), settings.smtp_from)
                if settings.smtp_url
                else None,
            ),
            events=self.events,
            is_leader=self.is_leader,
        )
        await alerts.load()
        writer.on_committed = alerts.after_batch

        async def configure_device(
            device_id: str, values: dict[str, Any], status: Status | None
        ) -> bool:
            found = await writer.configure(device_id, values, status)
            if found and "labels" in values:  # rules by label follow at once
                alerts.set_labels(device_id, json.loads(values["labels"] or "{}"))
            return found

        runtime = Runtime(
            link=lambda: transport.state,
            db_error=lambda: writer.db_error,
            failure=lambda: str(self.supervisor.failure) if self.supervisor.failure else None,
            queue_depth=self.queue.qsize,
            stats=self.stats,
            connection=self.history.as_dict,
            events=self.events,
            recent=writer.recent,
            forget_device=writer.forget,
            configure_device=configure_device,
            alerts=alerts,
            execute_write=writer.execute_write,
            metrics_registry=metrics.registry,
            downlink=self.downlink,
            device_endpoint=settings.device_endpoint,
            topic_prefix=settings.topic_prefix,
            reserved_ids=frozenset(
                name
                for name in (settings.broker.username, settings.username, settings.client_id)
                if name
            ),
            worker_id=worker,
            is_leader=self.is_leader,
            other_workers=lambda: self._other_workers(store, client_id),
        )
        app = create_app(
            store=store,
            runtime=runtime,
            api_token=settings.api_token,
            allowed_hosts=settings.trusted_hosts,
            max_request_body=settings.max_request_body,
        )
        server = _Server(uvicorn.Config(app, log_config=None, lifespan="off", access_log=False))
        self._install_signal_handlers()
        if http_socket is not None:
            url = f"http://{settings.http_host}:{settings.http_port}"
            log.info("serving the API at %s (OpenAPI docs at %s/docs)", url, url)
        # Everything built so far (imported modules, settings, the loaded state) lives as
        # long as the process: keep it out of the garbage collector's full collections,
        # which otherwise traverse it every few seconds under load (docs/PERFORMANCE.md).
        gc.freeze()
        supervisor = self.supervisor
        if self.leadership is not None:
            supervisor.start("leader", self.leadership.run())
        supervisor.start("mqtt", transport.run())
        writer_task = supervisor.start("writer", writer.run())
        if http_socket is not None:
            supervisor.start("http", server.serve(sockets=[http_socket]))
            if worker is not None:
                relay = EventRelay(settings.sqlalchemy_url, worker, self.events.publish)
                supervisor.start("events", relay.run())
        supervisor.start("stats", self._publish_stats(runtime, sources, started=time.time()))
        supervisor.start("downlink", self.downlink.run())
        if settings.retention_interval > 0:
            housekeeping = Housekeeping(
                execute_write=writer.execute_write,
                policy=settings.retention,
                batch_rows=settings.retention_batch,
                is_leader=self.is_leader,
                interval=settings.retention_interval,
            )
            supervisor.start("retention", housekeeping.run())
        supervisor.start("alerts", alerts.run())
        try:
            await self._stop.wait()
        finally:
            supervisor.stopping()
            await self._shutdown(writer_task, server, transport, writer)

    async def _shutdown(
        self, writer_task: asyncio.Task[Any], server: _Server, transport: Any, writer: BatchWriter
    ) -> None:
        log.info("shutting down: flushing %d queued messages", self.queue.qsize())
        started = time.monotonic()
        server.should_exit = True
        writer.stop()  # a flag, not cancel(): the batch in hand is committed and acknowledged
        await asyncio.wait({writer_task}, timeout=SHUTDOWN_BUDGET_S / 2)
        flushed = False
        try:
            await asyncio.wait_for(writer.drain(), timeout=SHUTDOWN_BUDGET_S / 2)
            flushed = True
        except TimeoutError:
            log.error(
                "could not flush the queue in time; unacknowledged messages stay at the broker"
            )
        except Exception:  # e.g. the writer died on it: shut the rest down all the same
            log.exception("could not flush the queue; unacknowledged messages stay at the broker")
        await asyncio.sleep(0)  # let acknowledgements of the last batch go out
        connected = transport.state.connected
        if connected:  # this run's end, for the next run's session check
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._note_connected(), timeout=1.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transport.close(), timeout=3.0)
            if flushed and connected and not transport.unsent_acknowledgements:
                await self._clear_unacked()
        tasks = self.supervisor.tasks
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=3.0)
        writer.close()
        log.info("stopped in %.1f s", time.monotonic() - started)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)

    def stop(self) -> None:
        """Ask the service to shut down (as SIGTERM does)."""
        self._stop.set()

    def _on_message(
        self, topic: str, payload: bytes, qos: int, retain: bool, dup: bool, ack: object | None
    ) -> None:
        """Take one message off the wire (on the event loop, no task of its own)."""
        self.stats.messages_received += 1
        routed = downlink_topics.route(
            topic, prefix=self.settings.topic_prefix, app_prefix=self.settings.app_prefix
        )
        if routed.route is not Route.DEVICE:
            if routed.route in (Route.OWN_COMMAND, Route.OWN_TASK):
                self._acknowledge(ack)
            else:
                task = asyncio.ensure_future(self._downlink_message(routed, topic, payload, ack))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
            return
        if ack is not None and self.settings.delivery is Delivery.AT_MOST_ONCE:
            self._acknowledge(ack)
            ack = None
        self._enqueue(RawMessage(topic, payload, qos, retain, time.time(), ack, dup))

    def _enqueue(self, message: RawMessage) -> None:
        self.queue.put_nowait(message)
        if not self._paused and self.queue.qsize() >= self.settings.queue_size:
            # Backpressure: stop reading from the broker until the writer has taken half
            # the queue (see _room_made). QoS 1 messages stay unacknowledged at the broker;
            # nothing is dropped here.
            self._paused = True
            self.transport.pause_reading()

    def _acknowledge(self, ack: object | None) -> None:
        if ack is not None:
            self.transport.acknowledge([ack])

    async def _downlink_message(
        self, routed: Routed, topic: str, payload: bytes, ack: object | None
    ) -> None:
        """A receipt, reply or app status: stored, then acknowledged; retried while the
        database is down; any other failure becomes the message's dead letter."""
        delay = 0.25
        while True:
            try:
                await self.downlink.handle(routed, payload)
                break
            except StoreUnavailableError:  # the writer reports the outage
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_CAP_S)
            except Exception as exc:
                log.exception("could not handle a message on %s", topic[:200])
                failure = internal_error(exc).detail
                self._enqueue(
                    RawMessage(topic, payload, 1, False, time.time(), ack, False, failure)
                )
                return
        self._acknowledge(ack)

    def is_leader(self) -> bool:
        """Whether this process runs what happens once for all workers (always, alone)."""
        return self.leadership is None or self.leadership.leading

    @staticmethod
    def _other_workers(store: Store, own_id: str) -> list[dict[str, Any]]:
        """The other live workers' rows (blocking; empty while the database is down)."""
        try:
            rows = store.read(live_workers)
        except StoreError:
            return []
        return [row for row in rows if row["id"] != own_id]

    async def _publish_stats(self, runtime: Runtime, sources: Sources, *, started: float) -> None:
        """Once a second, tell dashboards the counters and the link state; with other
        workers, also store this worker's counters for them (every WORKER_REFRESH_S)."""
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            if ticks % CONNECTED_REFRESH_S == 0 and self.transport.state.connected:
                try:
                    await self._note_connected()
                except StoreError as exc:  # the writer reports outages on /healthz
                    log.debug("could not note the connection: %s", exc)
            if sources.worker is not None and ticks % WORKER_REFRESH_S == 0:
                try:
                    await self._writer.execute_write(
                        record_worker,
                        sources.worker,
                        started_at=started,
                        now=time.time(),
                        leader=self.is_leader(),
                        stats=worker_snapshot(sources),
                    )
                except StoreError as exc:  # the writer reports outages on /healthz
                    log.debug("could not store this worker's counters: %s", exc)
            if not self.events.subscribers:
                continue
            link = runtime.link()
            counters = {**self.stats.as_dict(), "queue_depth": self.queue.qsize()}
            if sources.worker is not None:  # the dashboard shows every worker's sums
                others = await asyncio.to_thread(sources.other_workers)
                counters = combine([counters, *(snapshot for _id, snapshot in others)])
            self.events.publish(
                "stats",
                {
                    **counters,
                    "mqtt": link.phase,
                    "reason": link.reason,
                    "protocol": link.protocol,
                    "broker": link.broker,
                    "db_error": runtime.db_error(),
                },
            )

    async def _note_connected(self) -> None:
        """Record in mqtt_sessions that this client id is connected now (persistent
        sessions only): a restart compares it with the broker's session-present flag."""
        if self._session_id is not None:
            await self._writer.execute_write(record_connected, self._session_id, time.time())

    async def _clear_unacked(self) -> None:
        """Every stored message was acknowledged before a clean DISCONNECT: the broker will
        re-send none of them, so the next run arms no redelivery check (which could take a
        new message with a recorded packet id and content for a re-sent one)."""
        if self._session_id is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._writer.execute_write(clear_unacked, self._session_id, time.time()), 1.0
            )

    def _is_device_topic(self, topic: str) -> bool:
        settings = self.settings
        routed = downlink_topics.route(
            topic, prefix=settings.topic_prefix, app_prefix=settings.app_prefix
        )
        return routed.route is Route.DEVICE

    def _room_made(self) -> None:
        """The writer took a batch: read from the broker again once half the queue is free."""
        if self._paused and self.queue.qsize() <= self.settings.queue_size // 2:
            self._paused = False
            self.transport.resume_reading()

    def _on_connection_event(self, event: ConnectionEvent) -> None:
        if self._stable_timer is not None:
            self._stable_timer.cancel()
            self._stable_timer = None
        if event.event == LinkEvent.CONNECTED:
            # A connection that outlives the conflict window clears an earlier diagnosis.
            self._stable_timer = asyncio.get_running_loop().call_later(
                SHORT_SESSION_S, self.history.stable
            )
            noted = asyncio.ensure_future(self._note_connected())
            self._pending.add(noted)
            noted.add_done_callback(self._pending.discard)
            noted.add_done_callback(_log_failure)
        diagnosis = self.history.add(event)
        if diagnosis is not None:
            evidence = "; ".join(
                f"{e.event} {e.reason} after {e.lasted} s" for e in diagnosis.evidence
            )
            log.error("%s: %s [evidence: %s]", diagnosis.reason, diagnosis.message, evidence)
        self.events.publish("connection", event.as_dict())
        row = {**event.as_dict(), "client_id": self.history.client_id}
        task = asyncio.ensure_future(self._writer.execute_write(record_connection_event, row))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        task.add_done_callback(_log_failure)
