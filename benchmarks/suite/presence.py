"""How long after a device dies does ``/api/devices/<id>`` say offline?

Each device is a ``mosquitto_sub -k 5`` with a last will (``offline`` on
``bench/<id>/status``, QoS 1) that first announces ``online``. Two ways to die:

* ``killed`` (SIGKILL): the OS closes the socket, the broker publishes the will at once;
* ``hung`` (SIGSTOP): the socket stays open and silent, as with a power cut or a lost
  network; the broker publishes the will only when the keepalive expires (1.5 x 5 s
  after the last packet it received, so 2.5 to 7.5 s after the stop).

A watcher subscriber timestamps each will as the broker delivers it, so every delay is
split into the broker's part (signal -> will) and mqtthub's part (will -> the API shows
offline, polled every 10 ms on a new connection each time). It also times one
GET on a kept-alive connection and on a new one (``api_get_ms``).
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from suite.databases import provision
from suite.procs import (
    HOST,
    TOPIC_PREFIX,
    Broker,
    Serve,
    api_request_ms,
    log,
    stop_process,
    wait_until,
)

KEEPALIVE = 5
API_POLL_S = 0.01
MODES = {"killed": signal.SIGKILL, "hung": signal.SIGSTOP}


class WillWatcher:
    """``mosquitto_sub`` on ``bench/+/status``: when each ``offline`` arrived (epoch s)."""

    def __init__(self, broker: Broker) -> None:
        self.client_id = "bench-will-watcher"
        self.topic = f"{TOPIC_PREFIX}/+/status"
        command = ["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-i", self.client_id]
        command += ["-t", self.topic, "-q", "1", "-F", "%U %t %p"]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.offline_at: dict[str, float] = {}
        threading.Thread(target=self._read, daemon=True).start()
        broker.wait_for_subscription(self.client_id, self.topic)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            stamp, topic, payload = [*line.rstrip("\n").split(" ", 2), "", ""][:3]
            if payload == "offline":
                self.offline_at.setdefault(topic.split("/")[1], float(stamp))

    def stop(self) -> None:
        """Stop the watcher."""
        stop_process(self.proc)


def start_device(broker: Broker, device_id: str) -> subprocess.Popen[bytes]:
    """A device: keepalive 5 s, a will, subscribed to its command topic, then ``online``."""
    client_id, topic = f"bench-{device_id}", f"{TOPIC_PREFIX}/{device_id}"
    command = ["mosquitto_sub", "-h", HOST, "-p", str(broker.port), "-i", client_id]
    command += ["-k", str(KEEPALIVE), "-t", f"{topic}/cmd", "--will-topic", f"{topic}/status"]
    command += ["--will-payload", "offline", "--will-qos", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    broker.wait_for_subscription(client_id, f"{topic}/cmd")
    online = ["mosquitto_pub", "-h", HOST, "-p", str(broker.port), "-q", "1"]
    subprocess.run([*online, "-t", f"{topic}/status", "-m", "online"], check=True, timeout=10)
    return proc


def _statuses(serve: Serve, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {device_id: serve.get(f"/api/devices/{device_id}") for device_id in ids}


def _wait_offline(
    serve: Serve, ids: list[str], timeout: float
) -> dict[str, tuple[float, float, str]]:
    """Poll each device every 10 ms: (when the API first showed offline, when serve
    received the will, the reason)."""
    seen: dict[str, tuple[float, float, str]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(ids):
        for device_id in ids:
            if device_id in seen:
                continue
            device = serve.get(f"/api/devices/{device_id}")
            if device.get("status") == "offline":
                changed = datetime.fromisoformat(device["status_changed_at"]).timestamp()
                seen[device_id] = (time.time(), changed, str(device.get("status_reason")))
        if time.monotonic() > deadline:
            raise TimeoutError(f"still online after {timeout:.0f} s: {set(ids) - set(seen)}")
        time.sleep(API_POLL_S)
    return seen


def _summarise(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "max_s": max(values)}


def measure_presence(broker: Broker, workroot: Path, per_mode: int) -> dict[str, Any]:
    """Kill or freeze ``per_mode`` devices each, all at once; the delays, split in two."""
    workdir = workroot / "presence"
    ids = {mode: [f"p{mode[0]}{n}" for n in range(per_mode)] for mode in MODES}
    every = [device_id for group in ids.values() for device_id in group]
    devices: dict[str, subprocess.Popen[bytes]] = {}
    with provision("sqlite", workdir) as database:
        serve, watcher = Serve(broker, workdir, database.url), None
        try:
            serve.start()
            api_ms = api_request_ms(serve)
            watcher = WillWatcher(broker)
            devices = {device_id: start_device(broker, device_id) for device_id in every}
            wait_until(
                lambda: all(d["status"] == "online" for d in _statuses(serve, every).values()),
                20,
                "the devices to show online",
            )
            signalled = {}
            for mode, group in ids.items():
                for device_id in group:
                    devices[device_id].send_signal(MODES[mode])
                    signalled[device_id] = time.time()
            seen = _wait_offline(serve, every, KEEPALIVE * 1.5 + 20)
            wait_until(lambda: set(every) <= set(watcher.offline_at), 5, "the watcher's wills")
        finally:
            for proc in devices.values():
                proc.kill()  # SIGKILL also ends a stopped process
                proc.wait()
            if watcher is not None:
                watcher.stop()
            serve.stop()
    return {**_report(ids, signalled, watcher.offline_at, seen), "api_get_ms": api_ms}


def _report(
    ids: dict[str, list[str]],
    signalled: dict[str, float],
    wills: dict[str, float],
    seen: dict[str, tuple[float, float, str]],
) -> dict[str, Any]:
    result: dict[str, Any] = {"keepalive_s": KEEPALIVE, "api_poll_ms": API_POLL_S * 1000}
    for mode, group in ids.items():
        broker_part = [seen[d][1] - signalled[d] for d in group]
        ours = [seen[d][0] - seen[d][1] for d in group]
        result[mode] = {
            "devices": len(group),
            "broker": _summarise(broker_part),
            "mqtthub": _summarise(ours),
            "total": _summarise([seen[d][0] - signalled[d] for d in group]),
            "watcher": _summarise([wills[d] - signalled[d] for d in group]),
            "reasons": sorted({seen[d][2] for d in group}),
        }
        log(
            f"presence {mode}: will after {statistics.median(broker_part):.2f} s, "
            f"API offline {statistics.median(ours) * 1000:.0f} ms later"
        )
    return result
