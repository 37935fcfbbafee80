"""Export memory: does ``GET /api/export`` of a million readings keep serve's memory flat?

Fills a fresh database (SQLite file or a PostgreSQL database made for the run) with
``--readings`` readings (samples of 7 metrics, as the throughput payload, over
``--devices`` devices, one sample a second) through the store's own write path, starts a
real ``mqtthub serve`` on it (with a private Mosquitto), warms the export up with a small
one, then downloads the whole export while sampling serve's resident memory (VmRSS from
/proc) every 20 ms. Reports the RSS before, the peak during, the growth, the time, the
rate and the bytes, and checks the line count.

Usage: ``.venv/bin/python benchmarks/export_memory.py --readings 1000000 --database sqlite``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite.databases import provision
from suite.procs import Broker, Serve, rss_kib

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store

METRICS = ("temperature", "humidity", "pressure", "light", "rssi", "voltage", "uptime")
START = 1_780_000_000.0


def fill(url: str, *, readings: int, devices: int, batch: int = 5000) -> int:
    """Store about ``readings`` readings (whole samples of 7) over ``devices``; the count."""
    store = Store.open(url.replace("postgresql://", "postgresql+psycopg://", 1))
    presence = PresenceEngine()
    samples = -(-readings // len(METRICS))
    written = 0
    now = time.time()
    try:
        for first in range(0, samples, batch):
            raw = []
            for n in range(first, min(samples, first + batch)):
                device, second = f"exp-{n % devices:04d}", n // devices
                body = {m: round(20 + (n * 7 + i) % 1000 / 10, 2) for i, m in enumerate(METRICS)}
                body["ts"] = START + second
                payload = json.dumps(body).encode()
                raw.append(RawMessage(f"devices/{device}/sensor", payload, 1, False, now))
            parsed = build_batch(
                parse_all(raw, prefix="devices", max_payload=65536), presence=presence
            )
            if parsed.dead_letters:
                raise RuntimeError(f"not stored: {parsed.dead_letters[0]}")
            store.write(parsed)
            written += len(raw) * len(METRICS)
    finally:
        store.close()
    return written


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid)["VmRSS"])
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def download(base_url: str, params: dict[str, Any]) -> tuple[int, int]:
    """Stream ``/api/export`` to nowhere: (bytes, lines)."""
    size = lines = 0
    with httpx.stream("GET", base_url + "/api/export", params=params, timeout=600) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            size += len(chunk)
            lines += chunk.count(b"\n")
    return size, lines


def measure(*, pid: int, base_url: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Warm up with a small export, then the whole one under the RSS sampler."""
    params = params or {}
    download(base_url, {**params, "until": START + 5})  # code paths, threads, pools
    time.sleep(0.3)
    before = rss_kib(pid)["VmRSS"]
    started = time.perf_counter()
    with RssSampler(pid) as sampler:
        size, lines = download(base_url, params)
    seconds = time.perf_counter() - started
    readings = lines - (params.get("format", "csv") == "csv")  # the CSV header line
    return {
        "readings": readings,
        "bytes": size,
        "seconds": round(seconds, 2),
        "readings_per_s": round(readings / seconds),
        "rss_before_mib": round(before / 1024, 1),
        "rss_peak_mib": round(max(sampler.peak_kib, before) / 1024, 1),
        "rss_growth_mib": round((max(sampler.peak_kib, before) - before) / 1024, 1),
        "rss_samples": sampler.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mqtthub-export-") as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir)
        broker.start()
        try:
            with provision(args.database, workdir) as database:
                started = time.perf_counter()
                stored = fill(database.url, readings=args.readings, devices=args.devices)
                print(f"stored {stored:,} readings in {time.perf_counter() - started:.1f} s")
                serve = Serve(broker, workdir / "serve", database.url)
                serve.start()
                try:
                    result = measure(
                        pid=serve.pid,
                        base_url=f"http://127.0.0.1:{serve.http_port}",
                        params={"format": args.format},
                    )
                finally:
                    serve.stop()
        finally:
            broker.stop()
    result.update(database=args.database, format=args.format, stored=stored)
    print(json.dumps(result, indent=2))
    if result["readings"] != stored:
        sys.exit(f"exported {result['readings']} readings, stored {stored}")


if __name__ == "__main__":
    main()
