"""``mqtthub simulate``: a fleet of ESP8266-like devices, one MQTT connection each.

For demos, load and chaos tests. Each device connects with its own client id and a last
will (``offline`` on ``{prefix}/{device_id}/status``, QoS 1, not retained), publishes
``online`` there, then heartbeats and sensor readings at jittered intervals; when the run
ends it publishes a timed ``offline`` and disconnects cleanly, as good firmware does.
Thousands of devices share one event loop; connection attempts are paced and reconnects
back off with :class:`~mqtthub.transport.backoff.Backoff`.

Protocol: MQTT 3.1.1 by default, as ESP8266-era firmware (PubSubClient, AsyncMqttClient)
speaks; MQTT 5 on request. No ``auto``: unlike ``serve``, a simulator is pointed at a broker
whose protocol its user knows. With ``--profile`` (tasmota, esphome, homeassistant,
homie) the devices publish as that firmware does instead. Pure parts are in
:mod:`mqtthub.simulation_values` and :mod:`mqtthub.simulation_firmware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import resource
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import click
import gmqtt
from gmqtt.mqtt.constants import MQTTv50, MQTTv311

from mqtthub import simulation_values as values
from mqtthub.config import MqttVersion, build_ssl_context, load_settings
from mqtthub.errors import ConfigError
from mqtthub.simulation_firmware import Firmware, Publish
from mqtthub.simulation_values import ConnectPacer, FleetConfig, FleetSummary
from mqtthub.transport.backoff import Backoff
from mqtthub.transport.connection import ManagedClient

__all__ = ["FleetConfig", "FleetSummary", "raise_fd_limit", "run_fleet", "simulate"]

log = logging.getLogger("mqtthub.simulate")
_GMQTT_LOG = logging.getLogger("mqtthub.simulate.gmqtt")
STOP_GRACE = 10.0  # seconds devices get to say goodbye before their tasks are cancelled
GOODBYE_GAP = 0.1  # so the goodbye's ts follows serve's receipt of the previous message
ProgressHandler = Callable[[FleetSummary, float], None]  # the live summary, messages/s


class _AttemptError(Exception):
    """A connection attempt failed: ``args`` are (reason, permanent)."""


class _Link:
    """One connection of one device: its gmqtt client, and whether it was lost."""

    def __init__(self, client: ManagedClient, wake: asyncio.Event) -> None:
        self.client, self._wake = client, wake
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.on_disconnect = self._on_disconnect

    @property
    def lost(self) -> bool:
        return self.gone.done()

    def _on_disconnect(self, _client: Any, _packet: Any = None, _exc: Any = None) -> None:
        if not self.gone.done():
            self.gone.set_result(None)
        self._wake.set()

    def _transport(self) -> asyncio.Transport | None:
        transport: asyncio.Transport | None = getattr(self.client._connection, "_transport", None)
        return None if transport is None or transport.is_closing() else transport

    def publish(self, message: Publish, qos: int) -> bool:
        """Queue one PUBLISH; False when the connection is already going away."""
        if self.lost or self._transport() is None:
            return False
        self.client.publish(message.topic, message.payload, qos=qos, retain=message.retain)
        return True

    async def close(self, *, graceful: bool) -> None:
        """DISCONNECT when ``graceful``, else drop the socket so that the broker sends the will."""
        connection, transport = self.client._connection, self._transport()
        if not graceful and transport is not None:
            transport.abort()
        with contextlib.suppress(Exception):
            if graceful and not self.lost:
                await self.client.disconnect()
            elif connection is not None:
                await connection.close()


class _Device:
    """One simulated device: connect, publish on schedule, reconnect, until the run stops."""

    def __init__(self, fleet: _Fleet, device_id: str, client_id: str) -> None:
        self.fleet, self.device_id, self.client_id = fleet, device_id, client_id
        config, rng = fleet.config, fleet.rng
        self.firmware = fleet.firmware
        self.username = values.render_template(config.username_template, device_id)
        self.password = values.render_template(config.password_template, device_id)
        self.version = MQTTv50 if config.mqtt_version is MqttVersion.V5 else MQTTv311
        self.home = self.values = values.initial_values(rng)  # drift stays near this home
        self.booted = fleet.loop.time() - values.boot_uptime(rng)
        self.backoff = Backoff(config.reconnect_base, config.reconnect_cap, config.keepalive, rng)
        self.wake = asyncio.Event()

    @property
    def uptime(self) -> int:
        return int(self.fleet.loop.time() - self.booted)

    async def run(self) -> None:
        """Connect and publish; after a drop, a loss or a failure, back off and reconnect."""
        fleet, summary = self.fleet, self.fleet.summary
        while await self._wait(fleet.pacer.reserve(fleet.loop.time())):
            try:
                link = await self._attempt()
            except _AttemptError as failed:
                reason, permanent = failed.args
                summary.connect_failures += 1
                summary.failure_reasons[reason] += 1
                delay = self.backoff.cap_delay() if permanent else self.backoff.next_delay()
            else:
                started, summary.connected = fleet.loop.time(), summary.connected + 1
                summary.peak_connected = max(summary.peak_connected, summary.connected)
                try:
                    await self._session(link)
                finally:
                    summary.connected -= 1
                self.backoff.connection_ended(fleet.loop.time() - started)
                delay = self.backoff.next_delay()
            await self._wait(fleet.loop.time() + delay)

    async def _wait(self, deadline: float, link: _Link | None = None) -> bool:
        """Sleep until ``deadline`` (loop time); False if the run stopped or the link broke."""
        while not self.fleet.stop.is_set() and not (link is not None and link.lost):
            remaining = deadline - self.fleet.loop.time()
            if remaining <= 0:
                return True
            self.wake.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self.wake.wait()
            except TimeoutError:
                return True
        return False

    async def _attempt(self) -> _Link:
        """One connection attempt, bounded by ``connect_timeout``."""
        config, endpoint = self.fleet.config, self.fleet.config.endpoint
        last_will = self.firmware.will(self.device_id)
        will = gmqtt.Message(last_will.topic, last_will.payload, qos=1, retain=last_will.retain)
        client = ManagedClient(
            self.client_id,
            will_message=will,
            logger=_GMQTT_LOG,
            websocket_path=endpoint.websocket_path,
        )
        if self.username:
            client.set_auth_credentials(self.username, self.password)
        link = _Link(client, self.wake)
        tls, limit = config.ssl_context or False, config.connect_timeout
        connect = asyncio.ensure_future(
            client.connect(endpoint.host, endpoint.port, tls, config.keepalive, self.version)
        )
        try:
            await asyncio.wait({connect, link.gone}, timeout=limit, return_when="FIRST_COMPLETED")
            if not connect.done():
                raise _AttemptError("closed_before_connack" if link.lost else "timeout", False)
            if (exc := connect.exception()) is not None:
                raise _AttemptError(*values.connect_failure(exc, mqtt5=self.version == MQTTv50))
        except BaseException:
            connect.cancel()
            await link.close(graceful=False)
            raise
        return link

    async def _session(self, link: _Link) -> None:
        """Publish until the run stops, the link is lost, or a chaos drop is due."""
        fleet, config, rng = self.fleet, self.fleet.config, self.fleet.rng
        fleet.summary.connects += 1
        for message in self.firmware.birth(self.device_id):
            self._send(link, message)
        now = fleet.loop.time()
        next_sensor = now + values.first_delay(config.sensor_interval, rng)
        next_heartbeat = now + values.first_delay(config.heartbeat_interval, rng)
        drop_at = now + values.time_to_drop(config.drop_rate, rng)
        while await self._wait(min(next_sensor, next_heartbeat, drop_at), link):
            now = fleet.loop.time()
            if now >= drop_at:
                fleet.summary.drops += 1
                await link.close(graceful=False)
                return
            if now >= next_sensor:
                self._send_sensor(link)
                next_sensor = max(now, next_sensor + values.jittered(config.sensor_interval, rng))
            if now >= next_heartbeat:
                for message in self.firmware.heartbeat(
                    self.device_id, self.values, self.uptime, time.time()
                ):
                    self._send(link, message)
                interval = values.jittered(config.heartbeat_interval, rng)
                next_heartbeat = max(now, next_heartbeat + interval)
        if link.lost:
            fleet.summary.lost += 1
        else:  # the run is over: say goodbye like a well-behaved device
            await asyncio.sleep(GOODBYE_GAP)
            for message in self.firmware.goodbye(self.device_id, time.time()):
                self._send(link, message)
        await link.close(graceful=True)

    def _send_sensor(self, link: _Link) -> None:
        fleet = self.fleet
        self.values = values.drift(self.values, fleet.rng, self.home)
        if fleet.rng.random() >= fleet.config.malformed_rate:
            for message in self.firmware.sensor(
                self.device_id, self.values, self.uptime, time.time()
            ):
                self._send(link, message)
            return
        kind, payload = values.malformed_payload(
            self.device_id, self.values, self.uptime, fleet.rng
        )
        fleet.summary.malformed[kind] += 1
        topic = f"{fleet.config.prefix}/{self.device_id}/sensor"
        self._send(link, Publish(topic, payload, kind="malformed"))

    def _send(self, link: _Link, message: Publish) -> None:
        if link.publish(message, self.fleet.config.qos):
            self.fleet.summary.sent[message.kind] += 1
        else:
            self.fleet.summary.publish_errors += 1


class _Fleet:
    """What the devices share: config, random source, pacer, counters and the stop event."""

    def __init__(self, config: FleetConfig, stop: asyncio.Event) -> None:
        self.config, self.stop = config, stop
        self.loop = asyncio.get_running_loop()
        self.rng = random.Random(config.seed)
        self.pacer = ConnectPacer(config.connect_rate)
        self.summary = FleetSummary(devices=config.devices)
        self.firmware = Firmware(
            config.profile, config.prefix, config.homeassistant_prefix, config.timezone
        )


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard limit (a socket per device); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if wanted > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    return soft


async def run_fleet(
    config: FleetConfig,
    *,
    stop: asyncio.Event | None = None,
    on_progress: ProgressHandler | None = None,
) -> FleetSummary:
    """Run the fleet until ``config.duration`` passes or ``stop`` is set; return the counters.

    Args:
        config: what to simulate and where.
        stop: set it to end the run early (e.g. from a signal handler); devices then
            publish ``offline`` and disconnect cleanly.
        on_progress: called every ``config.progress_interval`` seconds with the live
            summary and the messages per second since the previous call.
    """
    stop = stop or asyncio.Event()
    ids = values.device_ids(config.devices, config.id_prefix)
    clients = values.client_ids(
        config.devices,
        config.id_prefix,
        config.prefix if config.profile == "mqtthub" else config.profile,
        config.duplicate_client_ids,
    )
    if config.devices + 64 > (limit := raise_fd_limit()):
        log.warning("%d devices need more open files than the limit of %d", config.devices, limit)
    fleet = _Fleet(config, stop)
    devices = [_Device(fleet, *identity) for identity in zip(ids, clients, strict=True)]
    tasks = [asyncio.create_task(device.run()) for device in devices]
    started = fleet.loop.time()
    reporter = asyncio.create_task(_report(fleet, started, on_progress))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=config.duration)
    finally:
        stop.set()
        for device in devices:
            device.wake.set()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        for task in [*pending, reporter]:
            task.cancel()
        await asyncio.gather(*pending, reporter, return_exceptions=True)
        fleet.summary.elapsed = fleet.loop.time() - started
    return fleet.summary


async def _report(fleet: _Fleet, started: float, on_progress: ProgressHandler | None) -> None:
    last_time, last_count = started, 0
    while on_progress is not None:
        await asyncio.sleep(fleet.config.progress_interval)
        now, count = fleet.loop.time(), fleet.summary.messages
        fleet.summary.elapsed = now - started
        on_progress(fleet.summary, (count - last_count) / max(now - last_time, 1e-9))
        last_time, last_count = now, count


_POSITIVE, _FRACTION, _COUNT = click.FloatRange(min=0.01), click.FloatRange(0, 1), click.IntRange(0)


@click.command(context_settings={"show_default": True, "max_content_width": 100})
@click.option(
    "--broker-url", metavar="URL", help="mqtt[s]://[user:pass@]host:port or ws[s]://host:port/path"
)
@click.option("--ca-file", metavar="PATH", help="CA that signs the broker's certificate (mqtts).")
@click.option("--devices", type=click.IntRange(min=1), default=10, help="Fleet size.")
@click.option("--sensor-interval", type=_POSITIVE, default=5.0, help="Seconds, ±10% jitter.")
@click.option("--heartbeat-interval", type=_POSITIVE, default=10.0, help="Seconds, ±10% jitter.")
@click.option("--duration", type=_POSITIVE, help="Seconds to run  [default: until Ctrl-C/SIGTERM]")
@click.option("--qos", type=click.IntRange(0, 1), default=1, help="QoS of every publish.")
@click.option("--prefix", help="Topic prefix  [env: MQTTHUB_TOPIC_PREFIX; default: devices]")
@click.option("--id-prefix", default="sim", help="Ids sim0001..., client ids sim-PREFIX-0001...")
@click.option("--connect-rate", type=_POSITIVE, default=200.0, help="Connections/s, at most.")
@click.option(
    "--mqtt-version", type=click.Choice(["3.1.1", "5"]), default="3.1.1", help="Protocol."
)
@click.option("--username-template", metavar="TEMPLATE", help="e.g. 'dev-{device_id}'")
@click.option("--password-template", metavar="TEMPLATE", help="e.g. 'secret-{device_id}'")
@click.option("--drop-rate", type=_FRACTION, default=0.0, metavar="P", help="Chaos (above).")
@click.option("--malformed-rate", type=_FRACTION, default=0.0, metavar="F", help="Chaos (above).")
@click.option("--duplicate-client-ids", type=_COUNT, default=0, metavar="N", help="Chaos (above).")
@click.option("--seed", type=int, help="Seed the random source for a repeatable run.")
@click.option(
    "--profile",
    type=click.Choice(values.FIRMWARES),
    default="mqtthub",
    help="Firmware to emulate (above).",
)
def simulate(**options: Any) -> None:
    """Simulate ESP8266-like devices, each with its own MQTT connection.

    Each device connects with a last will (offline on PREFIX/ID/status, QoS 1),
    publishes online, then heartbeats {"device_id","uptime","rssi"} and sensor
    readings (temperature, humidity, pressure, light, rssi, voltage, uptime) that
    drift realistically. Each kind starts at a random offset and every period
    varies by ±10%, so devices do not fire in lockstep. Progress goes to stderr
    every 2 s, a summary at the end.

    \b
    Chaos:
      --drop-rate P       per device, probability per minute of closing the
                          socket without DISCONNECT (the broker publishes the
                          will); the device reconnects after backoff
      --malformed-rate F  fraction of sensor messages sent malformed: truncated
                          JSON, NaN, or another device's device_id
      --duplicate-client-ids N
                          N devices reuse another device's client id, so the
                          broker keeps kicking one of each pair off (kick loop)

    The broker URL defaults to MQTTHUB_BROKER_URL, else mqtt://127.0.0.1:1883;
    mqtts:// turns TLS on (with MQTTHUB_CA_FILE, MQTTHUB_CLIENT_CERT/_KEY,
    MQTTHUB_TLS_INSECURE); ws://host:port/mqtt and wss:// (the same TLS settings)
    speak MQTT over WebSockets. Credentials: user:pass@ in the URL,
    MQTTHUB_USERNAME/_PASSWORD, or the templates ({device_id} is replaced; without
    it, one user for all devices). Keepalive and reconnect backoff:
    MQTTHUB_KEEPALIVE, MQTTHUB_RECONNECT_BASE/_CAP.

    \b
    Firmware (--profile), each device publishing as it would:
      mqtthub        PREFIX/ID/status|sensor|heartbeat, flat JSON (default)
      tasmota        tele/ID/LWT Online (will Offline, retained), tele/ID/SENSOR
                     (BME280, BH1750, TempUnit, PressureUnit, Time in
                     MQTTHUB_TASMOTA_TIMEZONE), tele/ID/STATE (UptimeSec, Wifi)
      esphome        ID/status online (will offline), ID/sensor/NAME/state,
                     and ESPHome's Home Assistant discovery configs
      homeassistant  retained discovery configs with units, JSON state on
                     mqtthub-sim/ID/state|system, availability (will offline)
      homie          homie/ID: $state init, ready (will lost), nodes env and
                     system with $unit and $datatype, retained values
    Serve reads them with MQTTHUB_PROFILES set to the same name (esphome's units
    come from its discovery configs: add homeassistant). --malformed-rate works
    with the mqtthub profile only.

    Exit status: 0 at the end of the run, 1 when no device could connect, 2 for
    bad options.
    """
    config = _config(options)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("gmqtt", _GMQTT_LOG.name):  # each chaos drop would log a traceback
        logging.getLogger(noisy).setLevel(logging.CRITICAL)

    async def main() -> FleetSummary:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        return await run_fleet(config, stop=stop, on_progress=_echo_progress)

    summary = asyncio.run(main())
    click.echo(summary.report(), err=True)
    if summary.connects == 0:
        reason = values.format_counts(summary.failure_reasons) or "no attempt finished"
        click.echo(f"mqtthub simulate: no device could connect ({reason})", err=True)
        sys.exit(1)


def _echo_progress(summary: FleetSummary, rate: float) -> None:
    click.echo(summary.progress_line(rate), err=True)


def _config(options: dict[str, Any]) -> FleetConfig:
    """The fleet configuration from the flags and MQTTHUB_* settings; exit 2 when invalid."""
    flags = {name: options.pop(name) for name in ("broker_url", "ca_file")}
    profile = options["profile"]
    try:
        settings = load_settings(**flags, topic_prefix=options.pop("prefix"))
        ssl_context = build_ssl_context(settings) if settings.broker.tls else None
    except ConfigError as exc:
        click.echo(f"mqtthub simulate: configuration error\n{exc}", err=True)
        sys.exit(2)
    try:
        return FleetConfig(
            endpoint=settings.broker,
            ssl_context=ssl_context,
            prefix=settings.topic_prefix,
            mqtt_version=MqttVersion(options.pop("mqtt_version")),
            keepalive=settings.keepalive,
            reconnect_base=settings.reconnect_base,
            reconnect_cap=settings.reconnect_cap,
            homeassistant_prefix=settings.homeassistant_prefix,
            timezone=settings.tasmota_zone() if profile == "tasmota" else UTC,
            **options,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
