"""Pure parts of ``mqtthub simulate``: configuration, counters, identities, timing, values.

Nothing here does I/O or reads the clock; every random choice comes from the
:class:`random.Random` passed in, so each function is deterministic under a seeded source.
The values imitate an ESP8266 with a BME280 (temperature, humidity, pressure), a light
sensor on the ADC, its Wi-Fi RSSI and its supply voltage.
"""

from __future__ import annotations

import json
import math
import random
import ssl
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

import orjson

from mqtthub.config import BrokerEndpoint, MqttVersion
from mqtthub.transport import reasons

#: The seven fields of a sensor message, in the order devices send them.
SENSOR_FIELDS = ("temperature", "humidity", "pressure", "light", "rssi", "voltage", "uptime")
#: The kinds of malformed sensor message ``--malformed-rate`` sends, named after the dead
#: letter reason ``mqtthub serve`` gives each.
MALFORMED_KINDS = ("invalid_json", "non_finite_number", "device_id_mismatch")
#: Per-period jitter: each wait is the period times a factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.1
MAX_BOOT_UPTIME = 7 * 86400
#: Firmware ``--profile`` emulates (payloads in :mod:`mqtthub.simulation_firmware`).
FIRMWARES = ("mqtthub", "tasmota", "esphome", "homeassistant", "homie")


@dataclass(frozen=True, slots=True)
class Walk:
    """How one quantity drifts: a mean-reverting random walk kept within plausible bounds.

    Attributes:
        low: smallest plausible value.
        high: largest plausible value.
        step: standard deviation of one step.
        decimals: digits kept when the value is sent (0 sends an integer).
    """

    low: float
    high: float
    step: float
    decimals: int

    @property
    def centre(self) -> float:
        """The middle of the plausible range, which the walk is pulled towards."""
        return (self.low + self.high) / 2


#: Plausible ranges of an indoor ESP8266 node (uptime is not a walk: it counts seconds).
WALKS: dict[str, Walk] = {
    "temperature": Walk(15.0, 32.0, 0.08, 2),  # °C
    "humidity": Walk(25.0, 75.0, 0.3, 1),  # % RH
    "pressure": Walk(985.0, 1035.0, 0.05, 1),  # hPa
    "light": Walk(0.0, 1000.0, 12.0, 0),  # lux from the ADC
    "rssi": Walk(-90.0, -40.0, 1.0, 0),  # dBm
    "voltage": Walk(3.0, 3.45, 0.004, 3),  # V
}
#: Fraction of the way back to the device's own baseline the walk moves each step: each
#: value wanders about 7 steps' worth around it, and devices stay different from each other.
MEAN_REVERSION = 0.01


def device_ids(count: int, id_prefix: str) -> list[str]:
    """The fleet's device ids: ``sim0001``, ``sim0002``, ... (at least four digits).

    Args:
        count: how many devices.
        id_prefix: first part of every id, e.g. ``sim``.
    """
    width = max(4, len(str(count)))
    return [f"{id_prefix}{n:0{width}d}" for n in range(1, count + 1)]


def client_ids(count: int, id_prefix: str, topic_prefix: str, duplicates: int) -> list[str]:
    """The MQTT client id of each device: ``sim-devices-0001`` (``/`` in the prefix: ``-``).

    The topic prefix is part of it so that fleets on different prefixes never collide.
    With ``duplicates`` = N the last N devices reuse the client ids of the first N, so N
    pairs of devices keep taking each other's connection over (the kick loop); N must be
    at most ``count // 2``.
    """
    width = max(4, len(str(count)))
    prefix = topic_prefix.replace("/", "-")
    own = [f"{id_prefix}-{prefix}-{n:0{width}d}" for n in range(1, count + 1)]
    return own[: count - duplicates] + own[:duplicates]


def render_template(template: str | None, device_id: str) -> str | None:
    """A credential template with ``{device_id}`` filled in (None stays None).

    Raises:
        ValueError: the template has a placeholder other than ``{device_id}``.
    """
    if template is None:
        return None
    try:
        return template.format(device_id=device_id)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"template {template!r} may only use {{device_id}}: {exc}") from None


def connect_failure(exc: BaseException, *, mqtt5: bool) -> tuple[str, bool]:
    """Why a connection attempt failed, as ``(reason, permanent)``.

    A refused CONNACK (gmqtt's ``MQTTConnectError``) is named by its code, e.g.
    ``not_authorized``; permanent refusals should be retried only at the backoff cap.
    """
    code = getattr(exc, "_code", None)
    if isinstance(code, int):
        reason = reasons.connack_reason(code, mqtt5=mqtt5)
        return reason, reason in reasons.PERMANENT
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused", False
    if isinstance(exc, ssl.SSLError):
        return "tls_error", False
    if isinstance(exc, TimeoutError):
        return "timeout", False
    return ("network_error" if isinstance(exc, OSError) else type(exc).__name__), False


def first_delay(period: float, rng: random.Random) -> float:
    """The wait before a device's first message of a kind: anywhere within one period."""
    return rng.uniform(0.0, period)


def jittered(period: float, rng: random.Random) -> float:
    """The wait until the next message: ``period`` ±10%, so devices drift out of step."""
    return period * rng.uniform(1.0 - JITTER, 1.0 + JITTER)


def time_to_drop(rate_per_minute: float, rng: random.Random) -> float:
    """Seconds until the next chaos disconnect, or ``math.inf`` for none.

    Drops are a Poisson process whose probability of at least one drop within a minute is
    ``rate_per_minute`` (1.0 is treated as 0.999: about one drop every 8.7 s).
    """
    if rate_per_minute <= 0:
        return math.inf
    probability = min(rate_per_minute, 0.999)
    per_second = -math.log1p(-probability) / 60.0
    return rng.expovariate(per_second)


def initial_values(rng: random.Random) -> dict[str, float]:
    """Starting values of a freshly booted device, spread over the middle of each range."""
    values = {}
    for name, walk in WALKS.items():
        spread = (walk.high - walk.low) / 4
        values[name] = walk.centre + rng.uniform(-spread, spread)
    return values


def drift(
    values: dict[str, float], rng: random.Random, home: dict[str, float] | None = None
) -> dict[str, float]:
    """One step of every random walk, pulled towards ``home`` and kept within bounds.

    ``home`` defaults to the middle of each range; ``values`` is not changed.
    """
    moved = {}
    for name, value in values.items():
        walk = WALKS[name]
        baseline = home[name] if home else walk.centre
        step = rng.gauss(0.0, walk.step) + MEAN_REVERSION * (baseline - value)
        moved[name] = _reflect(value + step, walk.low, walk.high)
    return moved


def _reflect(value: float, low: float, high: float) -> float:
    if value < low:
        value = low + (low - value)
    elif value > high:
        value = high - (value - high)
    return min(max(value, low), high)


def rounded(values: dict[str, float]) -> dict[str, float | int]:
    """The values as a device would print them: fixed decimals, integers where 0."""
    out: dict[str, float | int] = {}
    for name, value in values.items():
        decimals = WALKS[name].decimals
        out[name] = round(value) if decimals == 0 else round(value, decimals)
    return out


def sensor_payload(device_id: str, values: dict[str, float], uptime: int) -> bytes:
    """A sensor message with the seven fields, e.g. ``{"device_id":"sim0001","temperature":..}``."""
    document: dict[str, object] = {"device_id": device_id, **rounded(values), "uptime": uptime}
    return orjson.dumps(document)


def heartbeat_payload(device_id: str, uptime: int, rssi: float) -> bytes:
    """A heartbeat: ``{"device_id":..,"uptime":..,"rssi":..}``."""
    return orjson.dumps({"device_id": device_id, "uptime": uptime, "rssi": round(rssi)})


def goodbye_payload(device_id: str, ts: float) -> bytes:
    """A clean ``offline`` status; its ``ts`` tells ``serve`` it is no last will."""
    return orjson.dumps({"device_id": device_id, "status": "offline", "ts": round(ts, 3)})


def malformed_payload(
    device_id: str, values: dict[str, float], uptime: int, rng: random.Random
) -> tuple[str, bytes]:
    """A broken sensor message of a random kind from :data:`MALFORMED_KINDS`.

    Returns:
        (kind, payload): ``invalid_json`` is truncated JSON, ``non_finite_number`` carries a
        ``NaN`` temperature, ``device_id_mismatch`` names another (valid) device id.
    """
    kind = rng.choice(MALFORMED_KINDS)
    good = sensor_payload(device_id, values, uptime)
    if kind == "invalid_json":
        return kind, good[: rng.randint(1, len(good) - 1)]
    if kind == "non_finite_number":
        document = {"device_id": device_id, **rounded(values), "uptime": uptime}
        document["temperature"] = math.nan  # orjson would write null; json writes NaN
        return kind, json.dumps(document, separators=(",", ":")).encode()
    return kind, sensor_payload(f"{device_id}-other", values, uptime)


def boot_uptime(rng: random.Random) -> int:
    """How long a simulated device has already been running when the simulator starts."""
    return rng.randint(0, MAX_BOOT_UPTIME)


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to simulate and where.

    Attributes:
        endpoint: the broker (host, port, TLS, optional shared credentials).
        ssl_context: TLS settings when ``endpoint.tls``; None for plain MQTT.
        devices: how many devices.
        sensor_interval: seconds between sensor messages of one device (±10% jitter).
        heartbeat_interval: seconds between heartbeats of one device (±10% jitter).
        duration: seconds to run; None runs until ``stop`` is set.
        qos: QoS of every publish (0 or 1).
        prefix: first topic level, ``{prefix}/{device_id}/{status|sensor|heartbeat}``.
        id_prefix: device ids are ``{id_prefix}0001``...
        connect_rate: most new connections (attempts) per second across the fleet.
        drop_rate: per device, probability of an abrupt disconnect within a minute.
        malformed_rate: fraction of sensor messages sent malformed.
        duplicate_client_ids: this many devices reuse another device's client id.
        username_template: username, ``{device_id}`` is replaced; else the endpoint's.
        password_template: password, ``{device_id}`` is replaced; else the endpoint's.
        mqtt_version: ``3.1.1`` (default, as ESP firmware speaks) or ``5``.
        keepalive: MQTT keepalive in seconds.
        reconnect_base: backoff base, seconds.
        reconnect_cap: longest backoff, seconds.
        connect_timeout: seconds to wait for TCP, TLS and CONNACK.
        progress_interval: seconds between progress callbacks.
        seed: seed of the random source, for repeatable runs.
        profile: the firmware emulated, one of :data:`FIRMWARES`.
        homeassistant_prefix: discovery prefix (``esphome``, ``homeassistant``).
        timezone: the zone of Tasmota's ``Time`` (the devices' local time).
    """

    endpoint: BrokerEndpoint
    ssl_context: ssl.SSLContext | None = None
    devices: int = 10
    sensor_interval: float = 5.0
    heartbeat_interval: float = 10.0
    duration: float | None = None
    qos: int = 1
    prefix: str = "devices"
    id_prefix: str = "sim"
    connect_rate: float = 200.0
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    duplicate_client_ids: int = 0
    username_template: str | None = None
    password_template: str | None = None
    mqtt_version: MqttVersion = MqttVersion.V311
    keepalive: int = 60
    reconnect_base: float = 1.0
    reconnect_cap: float = 30.0
    connect_timeout: float = 10.0
    progress_interval: float = 2.0
    seed: int | None = None
    profile: str = "mqtthub"
    homeassistant_prefix: str = "homeassistant"
    timezone: tzinfo = UTC

    def __post_init__(self) -> None:
        """Reject settings no fleet can run with.

        Raises:
            ValueError: the message names the setting.
        """
        half = self.devices // 2
        problems = [
            (self.devices < 1, "devices: at least 1"),
            (min(self.sensor_interval, self.heartbeat_interval) <= 0, "intervals: must be > 0"),
            (self.qos not in (0, 1), "qos: 0 or 1"),
            (self.connect_rate <= 0, "connect rate: must be > 0"),
            (not 0 <= self.drop_rate <= 1, "drop rate: a probability between 0 and 1"),
            (not 0 <= self.malformed_rate <= 1, "malformed rate: a fraction between 0 and 1"),
            (not 0 <= self.duplicate_client_ids <= half, f"duplicate client ids: 0 to {half}"),
            (self.mqtt_version is MqttVersion.AUTO, "mqtt version: 3.1.1 or 5"),
            (self.profile not in FIRMWARES, f"profile: one of {', '.join(FIRMWARES)}"),
            (
                self.malformed_rate > 0 and self.profile != "mqtthub",
                "malformed rate: only with the mqtthub profile",
            ),
        ]
        for failed, message in problems:
            if failed:
                raise ValueError(message)
        for template in (self.username_template, self.password_template):
            render_template(template, "sim0001")


@dataclass(slots=True)
class FleetSummary:
    """Counters of a run: live while it runs, final when ``run_fleet`` returns them.

    Attributes:
        devices: fleet size.
        elapsed: seconds since the start.
        connected: devices connected right now.
        peak_connected: most devices connected at once.
        sent: messages published by type: status, heartbeat, sensor, malformed.
        malformed: malformed sensor messages by kind (the dead letter reason they cause).
        connects: successful connections (CONNACK accepted), reconnects included.
        connect_failures: connection attempts that failed.
        failure_reasons: those failures by reason (``connection_refused``, ...).
        drops: chaos disconnects (socket closed without DISCONNECT).
        lost: connections the broker or network closed (e.g. a client id takeover).
        publish_errors: messages not sent because the connection was closing.
    """

    devices: int
    elapsed: float = 0.0
    connected: int = 0
    peak_connected: int = 0
    sent: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    connects: int = 0
    connect_failures: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    drops: int = 0
    lost: int = 0
    publish_errors: int = 0

    @property
    def messages(self) -> int:
        """All messages published."""
        return sum(self.sent.values())

    @property
    def errors(self) -> int:
        """Failed connection attempts plus messages that could not be sent."""
        return self.connect_failures + self.publish_errors

    def progress_line(self, rate: float) -> str:
        """One status line: connected/total, messages per second, errors, drops."""
        return (
            f"[{self.elapsed:7.1f}s] connected {self.connected}/{self.devices}  "
            f"{rate:8.1f} msg/s  sent {self.messages}  errors {self.errors}  "
            f"drops {self.drops}  lost {self.lost}"
        )

    def report(self) -> str:
        """The end-of-run summary, several lines."""
        by_type = ", ".join(f"{kind} {self.sent[kind]}" for kind in sorted(self.sent)) or "none"
        lines = [
            f"simulated {self.devices} devices for {self.elapsed:.1f} s "
            f"(peak {self.peak_connected} connected)",
            f"messages sent: {self.messages} ({by_type}); "
            f"{self.messages / max(self.elapsed, 1e-9):.1f} msg/s",
            f"connects {self.connects}, chaos drops {self.drops}, connections lost {self.lost}, "
            f"connect failures {self.connect_failures}, publish errors {self.publish_errors}",
        ]
        if self.malformed:
            lines.append(f"malformed by kind: {format_counts(self.malformed)}")
        if self.failure_reasons:
            lines.append(f"connect failures by reason: {format_counts(self.failure_reasons)}")
        return "\n".join(lines)


def format_counts(counter: Counter[str]) -> str:
    """``a 3, b 1``: the counts, most common first."""
    return ", ".join(f"{key} {count}" for key, count in counter.most_common())


class ConnectPacer:
    """Hands out connection slots at most ``rate`` per second, first come first served."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = 0.0

    def reserve(self, now: float) -> float:
        """The loop time at which the caller may connect; books the slot."""
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot
