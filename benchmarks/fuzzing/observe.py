"""What the fuzz watches while it runs and reads afterwards: serve's RSS, canaries,
/api/stats progress, the dead_letters and readings tables, serve's log.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from suite.procs import HOST, Broker, Serve, rss_kib

from fuzzing.mix import classify, is_downlink
from fuzzing.model import CANARY, dumps, topic
from fuzzing.publisher import Link, publish_packet

RSS_SAMPLE_S = 0.25
TIMELINE_S = 5.0
# Lines of an exception nobody handled (asyncio's last resort), and of any traceback.
UNHANDLED = ("Task exception was never retrieved", "Exception in callback")
TRACEBACK = "Traceback (most recent call last)"


class SysBroker(Broker):
    """The suite's private Mosquitto, publishing its $SYS counters every second."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self._conf.write_text(self._conf.read_text() + "sys_interval 1\n")

    def held(self) -> dict[str, int | None]:
        """Messages the broker still holds for a client (queued or unacknowledged).

        Mosquitto's message store holds every retained message and every message some
        client has yet to receive or acknowledge: the difference is what is owed.
        """
        time.sleep(1.0)  # let one more $SYS interval pass
        topics = ("$SYS/broker/store/messages/count", "$SYS/broker/retained messages/count")
        # Listen for 3 s (both are retained, then updated when they change): the last
        # value of each wins.
        command = ["mosquitto_sub", "-h", HOST, "-p", str(self.port), "-v", "-W", "3"]
        for name in topics:
            command += ["-t", name]
        out = subprocess.run(command, capture_output=True, text=True, check=False).stdout
        values = dict(line.rsplit(" ", 1) for line in out.splitlines() if " " in line)
        store, retained = (int(values[t]) if t in values else None for t in topics)
        held = None if store is None or retained is None else store - retained
        return {"store": store, "retained": retained, "held": held}


class RssSampler(threading.Thread):
    """VmRSS of one process every RSS_SAMPLE_S seconds, in KiB."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.samples.append((time.monotonic(), rss_kib(self.pid)["VmRSS"]))
            self._halt.wait(RSS_SAMPLE_S)

    def now(self) -> int:
        """The current VmRSS (KiB)."""
        return rss_kib(self.pid)["VmRSS"]

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()


class Canary(threading.Thread):
    """Publishes ``{"canary": k}`` to bench/canary/sensor every ``interval`` seconds."""

    def __init__(self, port: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.link = Link(port, f"fuzz-canary-{os.getpid()}")
        self.interval = interval
        self.sent: dict[int, float] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.send()

    def send(self) -> int:
        """Publish the next canary at QoS 1; its number."""
        with self._lock:
            number = len(self.sent) + 1
            payload = dumps({"canary": number})
            packet_id = self.link.packet_id()
            packet = publish_packet(
                topic(CANARY), payload, qos=1, packet_id=packet_id, retain=False, dup=False
            )
            self.link.send(packet, 1)
            self.sent[number] = time.monotonic()
            return number

    def stop(self) -> None:
        """No more periodic canaries."""
        self._halt.set()


class Watch:
    """Everything the run observes about serve while the publisher works."""

    def __init__(self, serve: Serve, db_path: Path) -> None:
        self.serve, self.db_path = serve, db_path
        self.rss = RssSampler(serve.pid)
        self.canary_seen: dict[int, float] = {}
        self.last_progress = (-1, -1)
        self.progress_at = time.monotonic()
        self.stats: dict[str, Any] = {}
        self.rss_mid: int | None = None
        self.died: str | None = None
        self.max_queue = 0
        # (seconds, messages received, queue depth, RSS MiB) every TIMELINE_S seconds
        self.timeline: list[tuple[float, int, int | None, float]] = []
        self._started = self._timeline_at = time.monotonic()

    def alive(self) -> bool:
        """False (and ``died`` says why) once serve has exited."""
        assert self.serve.proc is not None
        code = self.serve.proc.poll()
        if code is not None and self.died is None:
            self.died = f"serve exited with status {code}: {self.serve.log_tail(8)}"
        return code is None

    def poll(self, half: int | None) -> None:
        """Read /api/stats and the canaries; note progress and the mid-run RSS."""
        with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
            self.stats = self.serve.stats()
        done = self.stats.get("messages_stored", 0) + self.stats.get("dead_letters", 0)
        progress = (self.stats.get("messages_received", 0), done)
        if progress != self.last_progress:
            self.last_progress, self.progress_at = progress, time.monotonic()
        if half is not None and self.rss_mid is None and progress[0] >= half:
            with contextlib.suppress(OSError, KeyError):
                self.rss_mid = self.rss.now()
        self.max_queue = max(self.max_queue, self.stats.get("queue_depth") or 0)
        now = time.monotonic()
        if now - self._timeline_at >= TIMELINE_S:
            self._timeline_at = now
            with contextlib.suppress(OSError, KeyError):
                self.timeline.append(
                    (
                        round(now - self._started, 1),
                        progress[0],
                        self.stats.get("queue_depth"),
                        round(self.rss.now() / 1024, 1),
                    )
                )
        self.read_canaries()

    def read_canaries(self) -> None:
        """Note when each canary first shows in readings."""
        with contextlib.suppress(sqlite3.Error):
            uri = f"file:{self.db_path}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
                rows = connection.execute(
                    "SELECT value FROM readings WHERE device_id = ? AND metric = 'canary'",
                    (CANARY,),
                ).fetchall()
            now = time.monotonic()
            for (value,) in rows:
                self.canary_seen.setdefault(int(value), now)

    def stalled(self) -> float:
        """Seconds since the counters last moved."""
        return time.monotonic() - self.progress_at


def healthz(serve: Serve) -> tuple[int | None, dict[str, Any]]:
    """GET /healthz: the status code (None without an answer) and the JSON body."""
    connection = http.client.HTTPConnection(HOST, serve.http_port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return None, {"error": repr(exc)}
    finally:
        connection.close()


def read_database(path: Path, valid_seqs: dict[str, list[int]]) -> dict[str, Any]:
    """Dead letters by kind and reason, and which valid seqs are missing (read-only)."""
    uri = f"file:{path}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        rows = connection.execute(
            "SELECT substr(topic, 1, 120), reason, count(*) FROM dead_letters GROUP BY 1, 2"
        ).fetchall()
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        downlink: dict[str, Counter[str]] = defaultdict(Counter)
        for head, reason, count in rows:
            (downlink if is_downlink(head) else by_kind)[classify(head)][reason] += count
        stored: dict[str, set[int]] = defaultdict(set)
        devices = list(valid_seqs)
        for start in range(0, len(devices), 500):
            chunk = devices[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT device_id, value FROM readings "  # noqa: S608 (only ? placeholders)
                f"WHERE metric = 'seq' AND device_id IN ({marks})"
            )
            for device, value in connection.execute(query, chunk):
                stored[device].add(int(value))
        table_total = connection.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    missing = {
        device: sorted(set(seqs) - stored[device])
        for device, seqs in valid_seqs.items()
        if set(seqs) - stored[device]
    }
    expected = sum(len(set(seqs)) for seqs in valid_seqs.values())
    return {
        "dead_letters_table": table_total,
        "dead_letters_by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
        "downlink_dead_letters_by_kind": {k: dict(v) for k, v in sorted(downlink.items())},
        "valid_seqs_expected": expected,
        "valid_seqs_missing": sum(len(v) for v in missing.values()),
        "valid_seqs_missing_sample": {d: v[:10] for d, v in list(missing.items())[:5]},
    }


def scan_log(path: Path) -> dict[str, Any]:
    """Counts of WARNING/ERROR lines, unhandled exceptions and tracebacks, and an excerpt."""
    text = path.read_text(errors="replace") if path.exists() else ""
    lines = text.splitlines()
    counts = Counter(
        level
        for line in lines
        for level in ("WARNING", "ERROR", "CRITICAL")
        if f" {level} " in line
    )
    unhandled = [i for i, line in enumerate(lines) if any(m in line for m in UNHANDLED)]
    tracebacks = [i for i, line in enumerate(lines) if TRACEBACK in line]
    excerpt: list[str] = []
    if unhandled or tracebacks:
        first = min(unhandled + tracebacks)
        excerpt = [line[:300] for line in lines[max(0, first - 2) : first + 25]]
    return {
        "lines": len(lines),
        "levels": dict(counts),
        "unhandled": len(unhandled),
        "tracebacks": len(tracebacks),
        "excerpt": excerpt,
    }
