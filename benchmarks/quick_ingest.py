"""Quick ingest benchmark: how fast does ``mqtthub serve`` store a burst, next to the broker?

Starts its own Mosquitto on a free port, a ``mqtthub serve`` process on SQLite, and a
publisher in a separate process. Reports, for the same burst in the same run:

* ``broker_rate``: messages/s a bare ``mosquitto_sub`` receives;
* ``stored_rate``: messages/s mqtthub commits (counted by ``/api/stats``);
* their ratio.

Usage: ``.venv/bin/python benchmarks/quick_ingest.py --messages 20000 --qos 1``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from suite.procs import free_port, port_open, wait_until

BENCHMARKS = Path(__file__).resolve().parent
# The fast raw-socket publisher of mqtt_clients.py: topics bench/<device>/sensor.
PUBLISHER = (
    "import sys; sys.path.insert(0, sys.argv[1]); from mqtt_clients import run_publisher; "
    "run_publisher(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 'bench-publisher')"
)


def publish(port: int, count: int, qos: int) -> subprocess.Popen[bytes]:
    """Start the publisher process."""
    arguments = [str(BENCHMARKS), str(port), str(qos), str(count)]
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, *arguments])


def broker_rate(port: int, count: int, qos: int) -> float:
    """Messages/s a bare mosquitto_sub receives for the burst (first to last message)."""
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-p",
            str(port),
            "-t",
            "bench/+/sensor",
            "-q",
            str(qos),
            "-C",
            str(count),
            "-F",
            "%U",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)  # mosquitto_sub gives no signal when subscribed; a short head start
    publisher = publish(port, count, qos)
    out, _ = sub.communicate(timeout=300)
    publisher.wait(60)
    stamps = [float(line) for line in out.split()]
    return (count - 1) / (stamps[-1] - stamps[0])


def counts(http_port: int) -> tuple[int, int]:
    """(messages_received, messages_stored) from /api/stats."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/api/stats", timeout=5) as r:
        stats = json.load(r)
    return int(stats["messages_received"]), int(stats["messages_stored"])


def stored_rate(port: int, count: int, qos: int, workdir: Path, extra_env: dict[str, str]) -> float:
    """Messages/s mqtthub stores for the burst, from first publish to last commit."""
    http_port = free_port()
    env = {
        **os.environ,
        "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{port}",
        "MQTTHUB_HTTP_PORT": str(http_port),
        "MQTTHUB_LOG_LEVEL": "WARNING",
        "MQTTHUB_TOPIC_PREFIX": "bench",
        **extra_env,
    }
    serve = subprocess.Popen([sys.executable, "-m", "mqtthub", "serve"], cwd=workdir, env=env)
    try:
        wait_until(lambda: port_open(http_port), 30, "serve to start")
        wait_until(lambda: _healthy(http_port), 30, "serve to connect")
        publisher = publish(port, count, qos)
        wait_until(lambda: counts(http_port)[0] > 0, 60, "the first message")
        started = time.perf_counter()  # like broker_rate: from the first message on
        wait_until(lambda: counts(http_port)[1] >= count, 300, f"{count} messages stored")
        elapsed = time.perf_counter() - started
        publisher.wait(60)
        return count / elapsed
    finally:
        serve.terminate()
        serve.wait(30)


def _healthy(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def main() -> None:
    """Run both measurements and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument(
        "--delivery", choices=("at_least_once", "at_most_once"), default="at_least_once"
    )
    parser.add_argument("--mqtt-version", choices=("auto", "5", "3.1.1"), default="auto")
    parser.add_argument(
        "--max-inflight", type=int, default=0, help="Mosquitto max_inflight_messages (0: none)"
    )
    args = parser.parse_args()
    extra_env = {"MQTTHUB_DELIVERY": args.delivery, "MQTTHUB_MQTT_VERSION": args.mqtt_version}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        port = free_port()
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n"
            f"max_inflight_messages {args.max_inflight}\nuser root\n"
        )
        broker = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: port_open(port), 10, "mosquitto to start")
            baseline = broker_rate(port, args.messages, args.qos)
            ours = stored_rate(port, args.messages, args.qos, workdir, extra_env)
        finally:
            broker.terminate()
            broker.wait(10)
    result = {
        "messages": args.messages,
        "qos": args.qos,
        "delivery": args.delivery,
        "mqtt_version": args.mqtt_version,
        "max_inflight": args.max_inflight,
        "broker_rate": round(baseline),
        "stored_rate": round(ours),
        "ratio": round(ours / baseline, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
