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
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mqtt_clients import (
    SETUP_TIMEOUT,
    TOPIC_FILTER,
    WS_PATH,
    Measurement,
    RunContext,
    Tally,
    consume_aiomqtt,
    consume_paho,
    run_with_publisher,
    wait_async,
)
from suite.procs import HOST, Broker, mosquitto_version, running_broker

from mqtthub.config import BrokerEndpoint
from mqtthub.transport.client import MqttTransport
from mqtthub.transport.connection import Ack


async def _mqtthub_run(run: RunContext) -> Tally:
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

    ws_path = WS_PATH if run.websocket else None
    endpoint = BrokerEndpoint(HOST, run.port, False, None, None, ws_path)
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


def consume_mqtthub(run: RunContext) -> Tally:
    """mqtthub's MqttTransport (gmqtt), QoS 1 acknowledged after the handler."""
    return asyncio.run(_mqtthub_run(run))


CONSUMERS: dict[str, Callable[[RunContext], Tally]] = {
    "mqtthub (gmqtt)": consume_mqtthub,
    "paho-mqtt": consume_paho,
    "aiomqtt": consume_aiomqtt,
}


def run_once(
    broker: Broker, name: str, qos: int, websocket: bool, count: int, index: int
) -> Measurement:
    slug = name.split()[0]
    client_id = f"ws-bench-{slug}-{'ws' if websocket else 'tcp'}-q{qos}-{index}"
    return run_with_publisher(
        broker.port,
        qos,
        count,
        f"ws-bench-pub-{index}",
        lambda launch: CONSUMERS[name](
            RunContext(broker, qos, count, client_id, launch, websocket)
        ),
    )


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
    with running_broker(websockets=True) as broker:
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
