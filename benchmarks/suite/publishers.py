"""Publisher processes: the raw-socket burst of mqtt_clients.py, and a paced publisher.

Run as a separate process (``python benchmarks/suite/publishers.py MODE ...``) so that
publishing never competes with the measuring process for its GIL:

* ``burst PORT QOS COUNT CLIENT_ID``: :func:`mqtt_clients.run_publisher`, as fast as the
  socket takes it, topics ``bench/d<i % 100>/sensor``;
* ``paced PORT RATE SECONDS SEQ_START CLIENT_ID``: QoS 1 at ``RATE`` messages/s; each
  payload is the usual sensor reading plus ``"seq"`` (a counter) and ``"ts"`` (epoch
  seconds when it was sent), so serve stores the send time as the reading's time. Prints
  one JSON line: messages sent, seconds, achieved rate.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson

BENCHMARKS = Path(__file__).resolve().parent.parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from mqtt_clients import (  # noqa: E402  (benchmarks/ is not a package)
    DEVICES,
    _remaining_length,
    _string,
    connect_packet,
    run_publisher,
    sensor_values,
)

HOST = "127.0.0.1"
ACK_TIMEOUT = 60.0


def launch(*arguments: object) -> subprocess.Popen[str]:
    """Start this module as a publisher process with ``arguments`` (see the docstring)."""
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, arguments)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )


class _Acks(threading.Thread):
    """Reads the broker's 4-byte PUBACKs so the socket never backs up; counts them."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock, self.received = sock, 0

    def run(self) -> None:
        try:
            while chunk := self.sock.recv(1 << 16):
                self.received += len(chunk)
        except OSError:
            return

    def wait_for(self, count: int, timeout: float) -> None:
        """Return once ``count`` PUBACKs arrived; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while self.received // 4 < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.received // 4} of {count} PUBACKs")
            time.sleep(0.01)


def paced_packet(seq: int, sent: float, rng: random.Random) -> bytes:
    """A QoS 1 PUBLISH of one sensor reading with ``seq`` and ``ts`` = ``sent``."""
    device = f"d{seq % DEVICES}"
    reading = {
        "device_id": device,
        "ts": sent,
        "seq": seq,
        **sensor_values(rng, seq),
    }
    body = _string(f"bench/{device}/sensor".encode()) + (seq % 65535 + 1).to_bytes(2, "big")
    body += orjson.dumps(reading)
    return b"\x32" + _remaining_length(len(body)) + body


def run_paced(
    port: int, rate: float, seconds: float, seq_start: int, client_id: str
) -> dict[str, float]:
    """Publish ``rate`` x ``seconds`` messages evenly spread; return what was achieved."""
    total, rng = max(1, round(rate * seconds)), random.Random(seq_start)
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(connect_packet(client_id))
        if sock.recv(4)[3:4] != b"\x00":
            raise ConnectionError("publisher refused")
        sock.settimeout(None)
        acks = _Acks(sock)
        acks.start()
        started, sent, last_ts = time.monotonic(), 0, 0.0
        while sent < total:
            due = min(total, int((time.monotonic() - started) * rate) + 1)
            if due <= sent:
                time.sleep(0.0005)
                continue
            packets = []
            for i in range(sent, due):
                last_ts = max(time.time(), last_ts + 1e-6)  # unique ts per device and metric
                packets.append(paced_packet(seq_start + i, last_ts, rng))
            sock.sendall(b"".join(packets))
            sent = due
        elapsed = time.monotonic() - started
        acks.wait_for(total, ACK_TIMEOUT)
        sock.sendall(b"\xe0\x00")
    return {"sent": total, "seconds": elapsed, "rate": total / elapsed if elapsed else 0.0}


def main(argv: list[str]) -> None:
    """Dispatch on the mode (see the module docstring)."""
    mode, port = argv[0], int(argv[1])
    if mode == "burst":
        run_publisher(port, int(argv[2]), int(argv[3]), argv[4])
        print(json.dumps({"sent": int(argv[3])}))
    elif mode == "paced":
        result = run_paced(port, float(argv[2]), float(argv[3]), int(argv[4]), argv[5])
        print(json.dumps(result))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
