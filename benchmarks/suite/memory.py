"""Resident memory of ``serve`` with N connected simulated devices.

For each N a fresh serve (SQLite) starts; its idle VmRSS is the baseline. Then
``mqtthub simulate`` (its own process: one MQTT 3.1.1 connection per device, a sensor
reading and a heartbeat every 30 s each, 1,000 connections/s) connects N devices, and once
``/api/stats`` counts N devices online serve's VmRSS and VmHWM (peak) are read from /proc.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from suite.databases import provision
from suite.procs import (
    HOST,
    TOPIC_PREFIX,
    Broker,
    Serve,
    clean_env,
    log,
    raise_nofile,
    rss_kib,
    stop_process,
    wait_until,
)

POLL_S = 0.5


def start_fleet(broker: Broker, devices: int, workdir: Path) -> subprocess.Popen[bytes]:
    """``mqtthub simulate`` with ``devices`` devices, ids m<devices>-..., in its own process."""
    command = [sys.executable, "-m", "mqtthub", "simulate"]
    command += ["--broker-url", f"mqtt://{HOST}:{broker.port}", "--prefix", TOPIC_PREFIX]
    command += ["--devices", str(devices), "--id-prefix", f"m{devices}x", "--seed", "1"]
    command += ["--sensor-interval", "30", "--heartbeat-interval", "30"]
    command += ["--connect-rate", "1000", "--mqtt-version", "3.1.1"]
    with (workdir / "simulate.log").open("ab") as log_file:
        return subprocess.Popen(
            command,
            cwd=workdir,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            preexec_fn=raise_nofile,
        )


def _online(serve: Serve, fleet: subprocess.Popen[bytes]) -> int:
    if fleet.poll() is not None:
        raise RuntimeError(f"simulate exited with {fleet.returncode}")
    devices = serve.stats().get("devices") or {}
    return int(devices.get("online", 0))


def measure_one(broker: Broker, workroot: Path, devices: int, settle: float) -> dict[str, Any]:
    """serve's RSS idle and with ``devices`` online (each read ``settle`` s after the change)."""
    workdir = workroot / f"memory-{devices}"
    with provision("sqlite", workdir) as database:
        serve, fleet = Serve(broker, workdir, database.url), None
        try:
            serve.start()
            time.sleep(settle)
            idle = rss_kib(serve.pid)
            started = time.monotonic()
            fleet = start_fleet(broker, devices, workdir)
            wait_until(
                lambda: _online(serve, fleet) >= devices,
                devices / 1000 * 5 + 60,
                f"{devices} devices online",
                POLL_S,
            )
            to_online = time.monotonic() - started
            time.sleep(settle)
            loaded = rss_kib(serve.pid)
            others = {"broker": rss_kib(broker.pid), "simulate": rss_kib(fleet.pid)}
        finally:
            stop_process(fleet, 30)
            serve.stop()
    delta = loaded["VmRSS"] - idle["VmRSS"]
    log(f"memory: {devices} devices: serve {loaded['VmRSS'] / 1024:.1f} MiB (+{delta / 1024:.1f})")
    return {
        "devices": devices,
        "idle_rss_mib": idle["VmRSS"] / 1024,
        "rss_mib": loaded["VmRSS"] / 1024,
        "peak_rss_mib": loaded["VmHWM"] / 1024,
        "delta_mib": delta / 1024,
        "kib_per_device": delta / devices,
        "ratio_to_idle": loaded["VmRSS"] / idle["VmRSS"],
        "seconds_to_all_online": to_online,
        "broker_rss_mib": others["broker"]["VmRSS"] / 1024,
        "simulate_rss_mib": others["simulate"]["VmRSS"] / 1024,
    }


def measure_memory(
    broker: Broker, workroot: Path, sizes: tuple[int, ...], settle: float
) -> dict[str, Any]:
    """:func:`measure_one` for each fleet size."""
    levels = [measure_one(broker, workroot, size, settle) for size in sizes]
    return {"settle_s": settle, "levels": levels}
