"""MQTT over WebSockets against plain TCP on the same Mosquitto, in the same run.

Starts its own Mosquitto with two listeners on free 127.0.0.1 ports, plain MQTT and
``protocol websockets``, and for QoS 0 and QoS 1 lets each consumer subscribe to
``bench/+/sensor`` over TCP and over WebSockets while a raw MQTT publisher in a separate
process sends a burst of JSON sensor readings to the TCP listener (the harness of
benchmarks/mqtt_clients.py). Each consumer parses every payload with ``orjson``. The
ratio compares each WebSocket run with the same client over TCP in this run.

Consumers:

* ``mqtthub`` — :class:`mqtthub.transport.client.MqttTransport` (gmqtt with mqtthub's own
  PUBLISH reader; QoS 1 acknowledged through ``acknowledge()`` after the handler), over TCP
  and over the WebSocket adapter (:mod:`mqtthub.transport.websocket`);
* ``paho-mqtt`` — paho's own ``transport="websockets"``;
* ``aiomqtt`` — aiomqtt's ``transport="websockets"`` (paho underneath).

Usage::

    .venv/bin/python benchmarks/websocket_transport.py [--messages 50000] [--repeat 3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiomqtt
import paho.mqtt.client as paho
from mqtt_clients import (
    HOST,
    IDLE_TIMEOUT,
    MOSQUITTO,
    SETUP_TIMEOUT,
    TOPIC_FILTER,
    Measurement,
    Tally,
    free_port,
    mosquitto_version,
    port_open,
    run_publisher,
    wait_async,
    wait_threaded,
)
from paho.mqtt.enums import CallbackAPIVersion

from mqtthub.config import BrokerEndpoint
from mqtthub.transport.client import Ack, MqttTransport


class Broker:
    """Mosquitto with a plain MQTT listener (``port``) and a WebSockets one (``ws_port``)."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.ws_port = free_port(), free_port()
        self._conf = workdir / "mosquitto.conf"
        self._conf.write_text(
            "allow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nmax_inflight_messages 0\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            f"listener {self.port} {HOST}\n"
            f"listener {self.ws_port} {HOST}\nprotocol websockets\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen([MOSQUITTO, "-c", str(self._conf)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + SETUP_TIMEOUT
        while not (port_open(self.port) and port_open(self.ws_port)):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("mosquitto did not start with a websockets listener")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(5)


@contextlib.contextmanager
def running_broker() -> Iterator[Broker]:
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as workdir:
        broker = Broker(Path(workdir))
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()


@dataclass
class Run:
    """What a consumer needs for one run."""

    broker: Broker
    qos: int
    count: int
    client_id: str
    websocket: bool
    launch_publisher: Callable[[], None]


async def _mqtthub_run(run: Run) -> Tally:
    done = asyncio.Event()
    tally = Tally(run.count, done.set)
    subscribed = asyncio.Event()

    def handler(
        _topic: str, payload: bytes, _qos: int, _retain: bool, _dup: bool, ack: Ack | None
    ) -> None:
        tally.record(payload)
        if ack is not None:
            transport.acknowledge([ack])

    async def on_subscribed() -> None:
        subscribed.set()

    port = run.broker.ws_port if run.websocket else run.broker.port
    endpoint = BrokerEndpoint(HOST, port, False, None, None, "/mqtt" if run.websocket else None)
    transport = MqttTransport(
        endpoint=endpoint,
        ssl_context=None,
        client_id=run.client_id,
        topics=(TOPIC_FILTER,),
        handler=handler,
        receive_maximum=65535,
        on_subscribed=on_subscribed,
    )
    task = asyncio.create_task(transport.run())
    try:
        await asyncio.wait_for(subscribed.wait(), SETUP_TIMEOUT)
        tally.arm()
        run.launch_publisher()
        await wait_async(tally, done)
    finally:
        await transport.close()
        await task
    return tally


def consume_mqtthub(run: Run) -> Tally:
    """mqtthub's MqttTransport (gmqtt), QoS 1 acknowledged after the handler."""
    return asyncio.run(_mqtthub_run(run))


def consume_paho(run: Run) -> Tally:
    """paho-mqtt 2.x, ``transport="websockets"`` for the WebSocket runs."""
    done, subscribed = threading.Event(), threading.Event()
    tally = Tally(run.count, done.set)
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=run.client_id,
        transport="websockets" if run.websocket else "tcp",
    )
    if run.websocket:
        client.ws_set_options(path="/mqtt")
    client.on_message = lambda _c, _u, msg: tally.record(msg.payload)
    client.on_connect = lambda c, *_args: c.subscribe(TOPIC_FILTER, qos=run.qos)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(HOST, run.broker.ws_port if run.websocket else run.broker.port)
    client.loop_start()
    try:
        if not subscribed.wait(SETUP_TIMEOUT):
            raise TimeoutError("paho-mqtt: no SUBACK")
        tally.arm()
        run.launch_publisher()
        wait_threaded(tally, done)
    finally:
        client.disconnect()
        client.loop_stop()
    return tally


async def _aiomqtt_run(run: Run) -> Tally:
    done = asyncio.Event()
    tally = Tally(run.count, done.set)
    port = run.broker.ws_port if run.websocket else run.broker.port
    async with aiomqtt.Client(
        HOST,
        port,
        identifier=run.client_id,
        transport="websockets" if run.websocket else "tcp",
        websocket_path="/mqtt" if run.websocket else None,
    ) as client:
        await client.subscribe(TOPIC_FILTER, qos=run.qos)

        async def drain() -> None:
            async for message in client.messages:
                tally.record(message.payload)  # type: ignore[arg-type]  # bytes here

        draining = asyncio.create_task(drain())
        tally.arm()
        run.launch_publisher()
        await wait_async(tally, done)
        draining.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await draining
    return tally


def consume_aiomqtt(run: Run) -> Tally:
    """aiomqtt 2.x, ``transport="websockets"`` for the WebSocket runs."""
    return asyncio.run(_aiomqtt_run(run))


CONSUMERS: dict[str, Callable[[Run], Tally]] = {
    "mqtthub (gmqtt)": consume_mqtthub,
    "paho-mqtt": consume_paho,
    "aiomqtt": consume_aiomqtt,
}


def run_once(
    broker: Broker, name: str, qos: int, websocket: bool, count: int, index: int
) -> Measurement:
    spawn = multiprocessing.get_context("spawn")
    publishers: list[multiprocessing.process.BaseProcess] = []

    def launch() -> None:
        args = (broker.port, qos, count, f"ws-bench-pub-{index}")
        publishers.append(spawn.Process(target=run_publisher, args=args, daemon=True))
        publishers[-1].start()

    slug = name.split()[0]
    client_id = f"ws-bench-{slug}-{'ws' if websocket else 'tcp'}-q{qos}-{index}"
    try:
        tally = CONSUMERS[name](Run(broker, qos, count, client_id, websocket, launch))
    finally:
        for process in publishers:
            process.join(timeout=IDLE_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
    return tally.measurement()


@dataclass
class Row:
    client: str
    qos: int
    transport: str
    rates: list[float]
    lost: int
    median: float = 0.0
    ratio: float = 0.0  # against the same client over TCP in this run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CONSUMERS), help="comma-separated")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = [name for name in CONSUMERS if name in args.clients.split(",")]
    rows = {
        (name, qos, ws): Row(name, qos, "websocket" if ws else "tcp", [], 0)
        for qos in (0, 1)
        for name in names
        for ws in (False, True)
    }
    with running_broker() as broker:
        for index in range(args.repeat):  # interleaved: drift affects every row alike
            for (name, qos, ws), row in rows.items():
                measured = run_once(broker, name, qos, ws, args.messages, index)
                row.rates.append(measured.rate)
                row.lost += measured.lost
                print(
                    f"  {name} QoS {qos} {row.transport}: {measured.rate:,.0f} msg/s",
                    file=sys.stderr,
                )
    for (name, qos, _ws), row in rows.items():
        row.median = statistics.median(row.rates)
        tcp = statistics.median(rows[(name, qos, False)].rates)
        row.ratio = row.median / tcp if tcp else 0.0
    print(f"{mosquitto_version()}, {args.messages} messages, median of {args.repeat}")
    print("| client | QoS | transport | msg/s | vs TCP | lost |")
    print("|---|---|---|---|---|---|")
    for row in rows.values():
        print(
            f"| {row.client} | {row.qos} | {row.transport} | {row.median:,.0f} | "
            f"{row.ratio:.2f} | {row.lost} |"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows.values()], indent=2))


if __name__ == "__main__":
    main()
