"""Which Python MQTT client consumes a telemetry burst fastest, next to the broker itself?

Starts its own Mosquitto on a free 127.0.0.1 port, then for QoS 0 and QoS 1 and for each
consumer (gmqtt, paho-mqtt, aiomqtt, and ``mosquitto_sub`` as the baseline) subscribes to
``bench/+/sensor``, lets a raw MQTT 3.1.1 publisher in a separate process send a burst of
JSON sensor readings across 100 device ids, parses every payload with ``orjson.loads`` in
the consumer's message callback, and measures messages per second from the first message
received to the last. Each configuration runs ``--repeat`` times (interleaved); the table
shows the median and its ratio to ``mosquitto_sub``'s rate at the same QoS.

The publisher pre-encodes every PUBLISH packet and writes them in one stream (QoS 1: with
a reader thread counting PUBACKs), so it outruns every consumer and the broker's queue for
the subscriber drains at the consumer's pace. Mosquitto runs with ``max_queued_messages 0``
(nothing dropped) and ``max_inflight_messages`` from ``--max-inflight`` (default 0, no
limit; Mosquitto's own default is 20, which caps every MQTT 3.1.1 subscriber and every
MQTT 5 subscriber that does not announce a Receive Maximum).

Usage::

    .venv/bin/python benchmarks/mqtt_clients.py [--messages 50000] [--repeat 3]
        [--max-inflight 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib.metadata
import json
import multiprocessing
import os
import random
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import aiomqtt
import gmqtt
import orjson
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from suite.procs import HOST, Broker, mosquitto_version, running_broker

TOPIC_FILTER = "bench/+/sensor"
DEVICES = 100
MOSQUITTO_SUB = "mosquitto_sub"
SETUP_TIMEOUT = 10.0  # broker start, CONNACK, SUBACK
FIRST_MESSAGE_TIMEOUT = 20.0  # publisher process start-up included
IDLE_TIMEOUT = 5.0  # no message for this long: the rest is counted as lost
POLL_INTERVAL = 0.05
PUBLISH_WINDOW = 60_000  # unacknowledged QoS 1 packet ids the publisher may use at once
WS_PATH = "/mqtt"  # the path of Mosquitto's WebSockets listener


# ------------------------------------------------------------------------ publisher


def _remaining_length(length: int) -> bytes:
    """MQTT variable-byte-integer encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        length, byte = divmod(length, 128)
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _string(value: bytes) -> bytes:
    """An MQTT length-prefixed string."""
    return struct.pack("!H", len(value)) + value


def connect_packet(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT with a clean session and a 60 s keepalive."""
    body = _string(b"MQTT") + bytes([4, 0x02]) + struct.pack("!H", 60)
    body += _string(client_id.encode())
    return b"\x10" + _remaining_length(len(body)) + body


def sensor_values(rng: random.Random, i: int) -> dict[str, float]:
    """The 7 values of the benchmarks' sensor reading number ``i`` (``uptime`` is 86400 + i)."""
    return {
        "temperature": round(rng.uniform(18, 30), 1),
        "humidity": round(rng.uniform(30, 70), 1),
        "pressure": round(rng.uniform(990, 1030), 1),
        "light": rng.randint(0, 1000),
        "rssi": rng.randint(-90, -40),
        "voltage": round(rng.uniform(3.0, 3.4), 2),
        "uptime": 86400 + i,
    }


def sensor_readings(count: int, seed: int = 17) -> Iterator[tuple[bytes, bytes]]:
    """``count`` (topic, JSON payload) pairs, round-robin over ``DEVICES`` device ids."""
    rng = random.Random(seed)
    for i in range(count):
        device = f"d{i % DEVICES}"
        reading = {"device_id": device, **sensor_values(rng, i)}
        yield f"bench/{device}/sensor".encode(), orjson.dumps(reading)


def publish_packets(count: int, qos: int) -> list[bytes]:
    """Pre-encoded PUBLISH packets (QoS 1: packet ids 1..65535, cycling)."""
    header = 0x30 | (qos << 1)
    packets = []
    for i, (topic, payload) in enumerate(sensor_readings(count)):
        packet_id = struct.pack("!H", i % 65535 + 1) if qos else b""
        body = _string(topic) + packet_id + payload
        packets.append(bytes([header]) + _remaining_length(len(body)) + body)
    return packets


class _AckCounter(threading.Thread):
    """Counts the 4-byte MQTT 3.1.1 PUBACKs the broker sends the publisher."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self._sock = sock
        self._acked = 0
        self._changed = threading.Condition()

    def run(self) -> None:
        received = 0
        with contextlib.suppress(OSError):
            while chunk := self._sock.recv(1 << 16):
                received += len(chunk)
                with self._changed:
                    self._acked = received // 4
                    self._changed.notify_all()

    def wait_for(self, acked: int, timeout: float) -> bool:
        """Block until at least ``acked`` PUBACKs arrived; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._acked >= acked, timeout)


def _send_qos1(sock: socket.socket, packets: list[bytes], batch: int = 1000) -> None:
    """Send QoS 1 packets in batches, never reusing a packet id still unacknowledged."""
    acks = _AckCounter(sock)
    acks.start()
    for start in range(0, len(packets), batch):
        if not acks.wait_for(start + batch - PUBLISH_WINDOW, IDLE_TIMEOUT * 4):
            raise TimeoutError("broker stopped acknowledging")
        sock.sendall(b"".join(packets[start : start + batch]))
    if not acks.wait_for(len(packets), IDLE_TIMEOUT * 4):
        raise TimeoutError("missing PUBACKs at the end of the burst")


def run_publisher(port: int, qos: int, count: int, client_id: str) -> None:
    """Publish ``count`` sensor readings at ``qos`` as fast as the socket takes them."""
    packets = publish_packets(count, qos)
    with socket.create_connection((HOST, port), timeout=SETUP_TIMEOUT) as sock:
        sock.sendall(connect_packet(client_id))
        connack = sock.recv(4)
        if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
            raise ConnectionError(f"publisher refused: {connack!r}")
        sock.settimeout(None)
        if qos:
            _send_qos1(sock, packets)
        else:
            sock.sendall(b"".join(packets))
        sock.sendall(b"\xe0\x00")  # DISCONNECT: the broker handles it after the burst


def run_with_publisher(
    port: int, qos: int, count: int, client_id: str, consume: Callable[[Callable[[], None]], Tally]
) -> Measurement:
    """``consume(launch)``'s measurement; ``launch()`` starts :func:`run_publisher` (``count``
    messages at ``qos`` to ``port`` as ``client_id``) in a fresh process, joined at the end."""
    spawn = multiprocessing.get_context("spawn")
    publishers: list[multiprocessing.process.BaseProcess] = []

    def launch() -> None:
        args = (port, qos, count, client_id)
        publishers.append(spawn.Process(target=run_publisher, args=args, daemon=True))
        publishers[-1].start()

    try:
        tally = consume(launch)
    finally:
        for process in publishers:
            process.join(timeout=IDLE_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
    if publishers and publishers[0].exitcode != 0:
        print(f"  publisher exited with {publishers[0].exitcode}", file=sys.stderr)
    return tally.measurement()


# -------------------------------------------------------------------------- tally


@dataclass
class Measurement:
    """One run's outcome."""

    rate: float  # messages/s between the first and the last message received
    received: int
    lost: int
    seconds: float


@dataclass
class Tally:
    """Counts delivered messages and when the first and the last of them arrived."""

    expected: int
    on_complete: Callable[[], object]
    count: int = 0
    first: float | None = None
    first_batch: int = 0
    last: float = 0.0
    armed_at: float = field(default_factory=time.perf_counter)

    def arm(self) -> None:
        """Start the timeouts: the publisher is being launched now."""
        self.armed_at = time.perf_counter()

    def record(self, payload: bytes | str) -> None:
        """Handle one message the way a consumer would: parse it, then count it."""
        orjson.loads(payload)
        self.add(1)

    def add(self, messages: int) -> None:
        """Count ``messages`` that arrived together just now."""
        now = time.perf_counter()
        if self.first is None:
            self.first, self.first_batch = now, messages
        self.last = now
        self.count += messages
        if self.count >= self.expected:
            self.on_complete()

    def stalled(self) -> bool:
        """True when no message came for too long: the run is over, lost or not."""
        now = time.perf_counter()
        if self.first is None:
            return now - self.armed_at > FIRST_MESSAGE_TIMEOUT
        return now - self.last > IDLE_TIMEOUT

    def measurement(self) -> Measurement:
        """The rate from the first message to the last one, and how many went missing."""
        seconds = self.last - self.first if self.first is not None else 0.0
        timed = self.count - self.first_batch
        rate = timed / seconds if seconds > 0 else 0.0
        return Measurement(rate, self.count, max(0, self.expected - self.count), seconds)


def wait_threaded(tally: Tally, done: threading.Event) -> None:
    """Block until ``done`` is set or the tally stalls."""
    while not done.wait(POLL_INTERVAL):
        if tally.stalled():
            return


async def wait_async(tally: Tally, done: asyncio.Event) -> None:
    """Wait until ``done`` is set or the tally stalls."""
    while not tally.stalled():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), POLL_INTERVAL)
            return


# ---------------------------------------------------------------------- consumers


@dataclass
class RunContext:
    """What a consumer needs for one run."""

    broker: Broker
    qos: int
    count: int
    client_id: str
    launch_publisher: Callable[[], None]
    websocket: bool = False  # connect to the broker's WebSockets listener, not its TCP one

    @property
    def port(self) -> int:
        """The broker port the consumer connects to."""
        if not self.websocket:
            return self.broker.port
        assert self.broker.ws_port is not None, "the broker has no WebSockets listener"
        return self.broker.ws_port


async def _gmqtt_run(ctx: RunContext, optimistic: bool) -> Tally:
    done = asyncio.Event()
    tally = Tally(ctx.count, done.set)
    subscribed = asyncio.Event()

    async def on_message(
        _client: Any, _topic: str, payload: bytes, _qos: int, _props: dict[str, Any]
    ) -> int:
        tally.record(payload)
        return 0  # PUBACK reason "success", sent once this coroutine has finished

    client = gmqtt.Client(ctx.client_id, optimistic_acknowledgement=optimistic)
    client.on_message = on_message
    client.on_subscribe = lambda *_args: subscribed.set()
    await client.connect(HOST, ctx.port)  # MQTT 5, gmqtt's default and mqtthub's
    try:
        client.subscribe(gmqtt.Subscription(TOPIC_FILTER, qos=ctx.qos))
        await asyncio.wait_for(subscribed.wait(), SETUP_TIMEOUT)
        tally.arm()
        ctx.launch_publisher()
        await wait_async(tally, done)
    finally:
        await client.disconnect()
    return tally


def consume_gmqtt(ctx: RunContext, *, optimistic: bool = False) -> Tally:
    """gmqtt with an async on_message (mqtthub's setup); QoS 1 acks after it returns."""
    return asyncio.run(_gmqtt_run(ctx, optimistic))


def consume_paho(ctx: RunContext, *, manual_ack: bool = False) -> Tally:
    """paho-mqtt 2.x with loop_start(); with ``manual_ack`` each message is acked after parsing.

    Over WebSockets (``ctx.websocket``): paho's own ``transport="websockets"``.
    """
    done, subscribed = threading.Event(), threading.Event()
    tally = Tally(ctx.count, done.set)

    def on_message(client: paho.Client, _userdata: object, msg: paho.MQTTMessage) -> None:
        tally.record(msg.payload)
        if manual_ack:
            client.ack(msg.mid, msg.qos)

    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=ctx.client_id,
        transport="websockets" if ctx.websocket else "tcp",
        manual_ack=manual_ack,
    )
    if ctx.websocket:
        client.ws_set_options(path=WS_PATH)
    client.on_message = on_message
    client.on_connect = lambda c, *_args: c.subscribe(TOPIC_FILTER, qos=ctx.qos)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(HOST, ctx.port)
    client.loop_start()
    try:
        if not subscribed.wait(SETUP_TIMEOUT):
            raise TimeoutError("paho-mqtt: no SUBACK")
        tally.arm()
        ctx.launch_publisher()
        wait_threaded(tally, done)
    finally:
        client.disconnect()
        client.loop_stop()
    return tally


async def _aiomqtt_drain(client: aiomqtt.Client, tally: Tally) -> None:
    async for message in client.messages:
        tally.record(message.payload)  # type: ignore[arg-type]  # always bytes here


async def _aiomqtt_run(ctx: RunContext) -> Tally:
    done = asyncio.Event()
    tally = Tally(ctx.count, done.set)
    async with aiomqtt.Client(
        HOST,
        ctx.port,
        identifier=ctx.client_id,
        transport="websockets" if ctx.websocket else "tcp",
        websocket_path=WS_PATH if ctx.websocket else None,
    ) as client:
        await client.subscribe(TOPIC_FILTER, qos=ctx.qos)  # returns after the SUBACK
        drain = asyncio.create_task(_aiomqtt_drain(client, tally))
        tally.arm()
        ctx.launch_publisher()
        await wait_async(tally, done)
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
    return tally


def consume_aiomqtt(ctx: RunContext) -> Tally:
    """aiomqtt 2.x ``async for message in client.messages`` (paho acks QoS 1 on receipt).

    Over WebSockets (``ctx.websocket``): aiomqtt's ``transport="websockets"``.
    """
    return asyncio.run(_aiomqtt_run(ctx))


def _count_lines(stream: IO[bytes], tally: Tally) -> None:
    """Count newline-terminated messages on ``stream`` until EOF or a stall."""
    fd = stream.fileno()
    while not tally.stalled():
        readable, _, _ = select.select([fd], [], [], POLL_INTERVAL)
        if not readable:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return
        tally.add(chunk.count(b"\n"))


def consume_mosquitto_sub(ctx: RunContext) -> Tally:
    """The baseline: Mosquitto's own C client printing each payload to a pipe."""
    tally = Tally(ctx.count, lambda: None)
    command = [MOSQUITTO_SUB, "-h", HOST, "-p", str(ctx.broker.port), "-i", ctx.client_id]
    command += ["-t", TOPIC_FILTER, "-q", str(ctx.qos), "-C", str(ctx.count)]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        try:
            ctx.broker.wait_for_subscription(ctx.client_id, TOPIC_FILTER)
            tally.arm()
            ctx.launch_publisher()
            _count_lines(proc.stdout, tally)
        finally:
            if proc.poll() is None:
                proc.kill()
    return tally


# ------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class Scenario:
    """One consumer configuration at one QoS."""

    library: str
    qos: int
    protocol: str
    ack: str
    consume: Callable[[RunContext], Tally]


SCENARIOS = (
    Scenario("mosquitto_sub", 0, "3.1.1", "-", consume_mosquitto_sub),
    Scenario("gmqtt", 0, "5", "-", consume_gmqtt),
    Scenario("paho-mqtt", 0, "3.1.1", "-", consume_paho),
    Scenario("aiomqtt", 0, "3.1.1", "-", consume_aiomqtt),
    Scenario("mosquitto_sub", 1, "3.1.1", "on receipt (C)", consume_mosquitto_sub),
    Scenario("gmqtt", 1, "5", "after async handler", consume_gmqtt),
    Scenario(
        "gmqtt optimistic",
        1,
        "5",
        "on receipt",
        functools.partial(consume_gmqtt, optimistic=True),
    ),
    Scenario("paho-mqtt", 1, "3.1.1", "after callback (auto)", consume_paho),
    Scenario(
        "paho-mqtt manual_ack",
        1,
        "3.1.1",
        "after parse, ack()",
        functools.partial(consume_paho, manual_ack=True),
    ),
    Scenario("aiomqtt", 1, "3.1.1", "on receipt", consume_aiomqtt),
)


def run_once(scenario: Scenario, broker: Broker, count: int, run: int) -> Measurement:
    """Run ``scenario`` once against ``broker`` with a fresh publisher process."""
    slug = scenario.library.replace(" ", "-").replace("_", "-")
    client_id = f"bench-{slug}-q{scenario.qos}-{run}"
    return run_with_publisher(
        broker.port,
        scenario.qos,
        count,
        f"bench-pub-{run}",
        lambda launch: scenario.consume(RunContext(broker, scenario.qos, count, client_id, launch)),
    )


@dataclass
class Result:
    """All runs of one scenario, summarised."""

    library: str
    qos: int
    protocol: str
    ack: str
    runs: list[Measurement]
    median: float = 0.0
    ratio: float = 0.0
    lost: int = 0


def run_all(broker: Broker, count: int, repeat: int) -> list[Result]:
    """Every scenario ``repeat`` times, interleaved so drift hits all of them alike."""
    results = [Result(s.library, s.qos, s.protocol, s.ack, []) for s in SCENARIOS]
    for round_ in range(repeat):
        for index, (scenario, result) in enumerate(zip(SCENARIOS, results, strict=True)):
            measurement = run_once(scenario, broker, count, round_ * 100 + index)
            result.runs.append(measurement)
            print(
                f"[{round_ + 1}/{repeat}] {scenario.library:<22} qos {scenario.qos}: "
                f"{measurement.rate:>9,.0f} msg/s  lost {measurement.lost}",
                file=sys.stderr,
            )
    baselines = {}
    for result in results:
        result.median = statistics.median(m.rate for m in result.runs)
        result.lost = sum(m.lost for m in result.runs)
        if result.library == "mosquitto_sub":
            baselines[result.qos] = result.median
    for result in results:
        result.ratio = result.median / baselines[result.qos] if baselines[result.qos] else 0.0
    return results


def format_table(results: list[Result]) -> str:
    """A plain-text table: library, QoS, protocol, ack, median msg/s, range, ratio, lost."""
    header = (
        f"{'library':<22} {'qos':>3} {'mqtt':>5}  {'ack':<22} {'msg/s':>9} "
        f"{'min..max':>17} {'ratio':>6} {'lost':>5}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        rates = [m.rate for m in r.runs]
        spread = f"{min(rates):,.0f}..{max(rates):,.0f}"
        lines.append(
            f"{r.library:<22} {r.qos:>3} {r.protocol:>5}  {r.ack:<22} {r.median:>9,.0f} "
            f"{spread:>17} {r.ratio:>6.2f} {r.lost:>5}"
        )
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    """Versions and settings that the figures depend on."""
    packages = ("gmqtt", "paho-mqtt", "aiomqtt", "orjson")
    return {
        "broker": mosquitto_version(),
        "python": sys.version.split()[0],
        "packages": {name: importlib.metadata.version(name) for name in packages},
        "cpus": os.cpu_count(),
        "messages": args.messages,
        "repeat": args.repeat,
        "max_inflight_messages": args.max_inflight,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=50_000, help="burst size per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument(
        "--max-inflight",
        type=int,
        default=0,
        help="Mosquitto max_inflight_messages (0 = no limit; Mosquitto's default is 20)",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table (and write JSON if asked)."""
    args = parse_args(argv)
    env = environment(args)
    with running_broker(max_inflight=args.max_inflight) as broker:
        results = run_all(broker, args.messages, args.repeat)
    print(
        f"{env['broker']}, max_inflight_messages {args.max_inflight}, "
        f"{args.messages:,} messages, median of {args.repeat}, {env['cpus']} CPUs"
    )
    print(format_table(results))
    if args.json:
        report = {**env, "results": [asdict(r) for r in results]}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
