"""Hostile traffic against a real ``mqtthub serve``: nothing may stop ingestion or get lost.

Usage::

    .venv/bin/python benchmarks/fuzz.py [--messages 200000] [--seed 1] [--skip KIND,...]
        [--rate 8000] [--json out.json] [--keep] [--list-kinds]

Starts its own Mosquitto on a free 127.0.0.1 port and its own ``mqtthub serve`` (SQLite in
a temporary folder; ``MQTTHUB_MAX_PAYLOAD`` 1 MiB so that 100,000-level documents and
10,000-key objects reach the parser instead of stopping at the size check). A separate
publisher process sends ``--messages`` messages at ``--rate`` per second (the default is
more than serve stores on 2 cores: backpressure is part of the run): valid sensor, status
and heartbeat messages interleaved with one generator per hostile kind (``--list-kinds``),
QoS 0 and 1 mixed. Everything it sends follows from ``--seed``. Topics the broker may
refuse (control characters, invalid UTF-8, wildcards) go out one at a time on their own
connection, so a refusal costs nothing else. A canary sensor message goes out every
``--canary-interval`` seconds on a third connection, and once more at the end.

Each message's device id starts with its kind's tag (``nested-3``, ``long-xxxx...``), so
every dead letter can be traced back to the generator that made it. The run checks:

* serve never stops ingesting: every canary is stored, the last one within 30 s; the
  counters never stall for 30 s; serve is alive and ``/healthz`` answers 200 at the end,
  and it exits with status 0 on SIGTERM;
* nothing is lost: ``messages_received`` equals what the broker accepted for serve's
  subscriptions; stored + dead letters equals what reached the device pipeline (messages
  on downlink topics -- receipts, replies, app status -- are handled by the downlink,
  unless they fail and become dead letters); ``/api/stats`` agrees with the dead_letters
  table reason by reason; Mosquitto holds no unacknowledged message at the end;
* every rejection says why: each kind's outcome is what the README promises where it is
  predictable (a NaN is a ``non_finite_number`` dead letter; a heartbeat with any
  non-object payload is stored), no ``internal_error`` dead letter, no traceback or
  unhandled exception in serve's log;
* every valid message is stored: each ``seq`` a valid message carried is in ``readings``
  (read from the SQLite file, read-only);
* memory stays bounded: serve's VmRSS (sampled every 0.25 s) and its queue depth (see
  :mod:`fuzzing.checks` for the limits and why);
* the whole run takes at most ``--time-limit`` seconds.

Prints a summary to stdout, progress to stderr (``--json`` also writes every figure); exit
status 0 when every check passed, 1 when one failed, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzing.checks import FINAL_CANARY_S, evaluate, render
from fuzzing.mix import KIND_BY_NAME, KINDS, plan_counts
from fuzzing.model import TOO_LARGE
from fuzzing.observe import Canary, SysBroker, Watch, healthz, read_database, scan_log
from fuzzing.publisher import Publisher
from suite.databases import provision
from suite.procs import Serve, log, stop_process
from suite.report import machine_facts

MAX_PAYLOAD = 1 << 20
STALL_S = 30.0  # no progress for this long while work is pending: ingestion stopped
POLL_S = 0.5


class Fuzz:
    """One run: serve under the mix, then every check."""

    def __init__(self, args: argparse.Namespace, broker: SysBroker, serve: Serve, db: Path) -> None:
        self.args, self.broker, self.serve, self.db_path = args, broker, serve, db
        self.watch = Watch(serve, db)
        self.results: dict[str, Any] = {}
        self.workdir = serve.workdir
        self.error: str | None = None
        self.stall: str | None = None
        self.broker_held: dict[str, int | None] = {"held": None}

    def run(self) -> None:
        """Publish the mix with canaries, wait for serve to take everything, observe."""
        watch = self.watch
        started = time.monotonic()
        watch.rss.start()
        time.sleep(1.0)  # settle, then take the starting RSS
        rss_start = watch.rss.now()
        canary = Canary(self.broker.port, self.args.canary_interval)
        summary: dict[str, Any] = {}
        final: dict[str, Any] = {"number": None, "seconds": None}
        try:
            summary = self._publish(canary, started)
            self._drain(summary, canary, started)
            final = self._final_canary(canary)
            self.broker_held = self.broker.held()
        except (OSError, RuntimeError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log(f"run failed: {self.error}")
        finally:
            canary.stop()
            watch.rss.stop()
        self.results = self._observe(summary, canary, final, rss_start, started)
        self.results["error"] = self.error
        self.results["stall"] = self.stall
        self.results["broker_held"] = self.broker_held

    def _publish(self, canary: Canary, started: float) -> dict[str, Any]:
        """Run the publisher process with canaries alongside; what it says it sent."""
        args = self.args
        config = {
            "port": self.broker.port,
            "messages": args.messages,
            "seed": args.seed,
            "skip": sorted(args.skip),
            "rate": args.rate,
            "max_payload": args.max_payload,
            "now": time.time(),
        }
        config_path = self.workdir / "publisher.json"
        config_path.write_text(json.dumps(config))
        summary_path = self.workdir / "published.json"
        with summary_path.open("wb") as out:
            publisher = subprocess.Popen(
                [sys.executable, __file__, "_publish", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
            )
        canary.start()
        try:
            self._wait_publisher(publisher, started)
        finally:
            canary.stop()  # the last one goes out once serve has taken everything
            stop_process(publisher)
        summary: dict[str, Any] = json.loads(summary_path.read_text() or "{}")
        if not summary:
            raise RuntimeError(f"the publisher reported nothing (status {publisher.returncode})")
        if summary["error"]:
            self.error = f"publisher: {summary['error']}"
        return summary

    def _deadline_passed(self, started: float) -> bool:
        return time.monotonic() - started > self.args.time_limit

    def _wait_publisher(self, publisher: subprocess.Popen[bytes], started: float) -> None:
        half = self.args.messages // 2
        while publisher.poll() is None:
            time.sleep(POLL_S)
            self.watch.poll(half)
            if not self.watch.alive() or self._deadline_passed(started):
                return
            if self.watch.stalled() > STALL_S and self.watch.stats.get("queue_depth", 0):
                self.stall = f"no progress for {STALL_S:.0f} s while publishing: {self.watch.stats}"
                log(self.stall)
                return
        if publisher.returncode != 0:
            raise RuntimeError(f"the publisher failed with status {publisher.returncode}")

    def _drain(self, summary: dict[str, Any], canary: Canary, started: float) -> None:
        """Wait until serve received and processed everything (or stalled, or died).

        Done when it received at least what the broker must deliver (all but the huge
        messages the broker may drop), stored or dead-lettered everything it received on
        device topics, and has nothing queued.
        """
        kinds = summary.get("kinds", {}).values()
        downlink = sum(entry["downlink"] for entry in kinds)
        droppable = sum(entry["expect"].get(TOO_LARGE, 0) for entry in kinds)
        target = len(canary.sent) + downlink + sum(entry["device"] for entry in kinds) - droppable
        watch = self.watch
        log(f"waiting for serve to process at least {target:,} messages")
        watch.progress_at = reported = time.monotonic()
        while watch.alive() and not self._deadline_passed(started):
            watch.poll(self.args.messages // 2)
            stats = watch.stats
            if time.monotonic() - reported > 5:
                reported = time.monotonic()
                log(
                    f"serve: received {stats.get('messages_received', 0):,}, stored "
                    f"{stats.get('messages_stored', 0):,}, dead letters "
                    f"{stats.get('dead_letters', 0):,}, queued {stats.get('queue_depth')}"
                )
            received = stats.get("messages_received", 0)
            done = stats.get("messages_stored", 0) + stats.get("dead_letters", 0)
            if (
                received >= target
                and done >= received - downlink
                and not stats.get("queue_depth", 1)
            ):
                return
            if watch.stalled() > STALL_S:
                self.stall = f"no progress for {STALL_S:.0f} s after publishing: {stats}"
                log(self.stall)
                return
            time.sleep(POLL_S)

    def _final_canary(self, canary: Canary) -> dict[str, Any]:
        """Publish one more canary; how long it took to be stored (None: never)."""
        if not self.watch.alive():
            return {"number": None, "seconds": None}
        number = canary.send()
        sent = canary.sent[number]
        deadline = sent + FINAL_CANARY_S
        while time.monotonic() < deadline and number not in self.watch.canary_seen:
            time.sleep(0.05)
            self.watch.read_canaries()
        seen = self.watch.canary_seen.get(number)
        with contextlib.suppress(OSError, ConnectionError):
            canary.link.finish(5.0)
        self.watch.poll(None)
        return {"number": number, "seconds": None if seen is None else round(seen - sent, 3)}

    def _observe(
        self,
        summary: dict[str, Any],
        canary: Canary,
        final: dict[str, Any],
        rss_start: int,
        started: float,
    ) -> dict[str, Any]:
        watch = self.watch
        alive = watch.alive()
        health = healthz(self.serve) if alive else (None, {})
        rss = [kib for _, kib in watch.rss.samples]
        latencies = [
            watch.canary_seen[n] - sent for n, sent in canary.sent.items() if n in watch.canary_seen
        ]
        database = read_database(self.db_path, summary.get("valid_seqs", {}))
        return {
            "published": summary,
            "stats": watch.stats,
            "alive": alive,
            "died": watch.died,
            "healthz": {"status": health[0], "body": health[1]},
            "canaries": {
                "sent": len(canary.sent),
                "stored": sum(1 for n in canary.sent if n in watch.canary_seen),
                "missing": sorted(set(canary.sent) - set(watch.canary_seen))[:20],
                "max_latency_s": round(max(latencies), 2) if latencies else None,
                "median_latency_s": round(sorted(latencies)[len(latencies) // 2], 3)
                if latencies
                else None,
                "final": final,
            },
            "rss_mib": {
                "start": round(rss_start / 1024, 1),
                "max": round(max(rss, default=rss_start) / 1024, 1),
                "mid": round(watch.rss_mid / 1024, 1) if watch.rss_mid else None,
                "end": round(rss[-1] / 1024, 1) if rss else None,
                "samples": len(rss),
                "timeline": watch.timeline,
            },
            "max_queue_depth": watch.max_queue,
            "database": database,
            "seconds": round(time.monotonic() - started, 1),
        }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages in the mix")
    parser.add_argument("--seed", type=int, default=1, help="makes the mix reproducible")
    parser.add_argument(
        "--skip",
        type=lambda text: frozenset(filter(None, text.split(","))),
        default=frozenset(),
        help="comma-separated kinds to leave out (see --list-kinds)",
    )
    parser.add_argument(
        "--rate", type=float, default=8000.0, help="messages per second (above what serve stores)"
    )
    parser.add_argument(
        "--max-payload", type=int, default=MAX_PAYLOAD, help="serve's MQTTHUB_MAX_PAYLOAD"
    )
    parser.add_argument("--canary-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds for the run")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, db)")
    parser.add_argument("--list-kinds", action="store_true", help="describe the kinds and exit")
    args = parser.parse_args(argv)
    unknown = args.skip - set(KIND_BY_NAME)
    if unknown:
        parser.error(f"--skip: unknown kinds {sorted(unknown)}; see --list-kinds")
    if "valid" in args.skip:
        parser.error("--skip: valid messages are what the run checks; they cannot be skipped")
    if args.messages < 1000:
        parser.error("--messages: at least 1000 (every kind needs room for its cases)")
    return args


def list_kinds() -> str:
    """One line per kind: name, share, minimum, what it sends."""
    lines = []
    for kind in KINDS:
        share = "rest" if kind.name == "valid" else f"{kind.share:.2%}"
        about = (kind.make.__doc__ or "").strip().splitlines()[0]
        lines.append(f"{kind.name:<10} {share:>6}  min {kind.minimum:>3}  {about}")
    return "\n".join(lines)


def _serve_source(serve_env: dict[str, str]) -> str:
    """Which mqtthub package serve imports (PYTHONPATH may point at another checkout)."""
    result = subprocess.run(
        [sys.executable, "-c", "import mqtthub; print(mqtthub.__file__)"],
        capture_output=True,
        text=True,
        env=serve_env,
        check=False,
    )
    return result.stdout.strip() or result.stderr.strip()[-200:]


def run_fuzz(args: argparse.Namespace, workroot: Path) -> dict[str, Any]:
    """A private broker and serve, the run against them, and serve's exit afterwards."""
    broker = SysBroker(workroot)
    try:
        broker.start()
        with provision("sqlite", workroot / "serve") as database:
            assert database.sqlite_path is not None
            extra = {"MQTTHUB_MAX_PAYLOAD": str(args.max_payload)}
            serve = Serve(broker, workroot / "serve", database.url, extra_env=extra)
            serve.start()
            try:
                fuzz = Fuzz(args, broker, serve, database.sqlite_path)
                fuzz.run()
            finally:
                serve.stop()
    finally:
        broker.stop()
    assert serve.proc is not None
    # Read the log again: what serve wrote while shutting down counts too.
    return fuzz.results | {
        "exit_status": serve.proc.returncode,
        "serve_log": scan_log(serve.workdir / "serve.log"),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the fuzz; 0 when every check passed, 1 otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_publish"]:
        config = json.loads(Path(argv[1]).read_text())
        print(json.dumps(Publisher(config).run()), flush=True)
        return 0
    args = parse_args(argv)
    if args.list_kinds:
        print(list_kinds())
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so every child gets stopped
    started = time.monotonic()
    workroot = Path(tempfile.mkdtemp(prefix="mqtthub-fuzz-"))
    results: dict[str, Any] = {
        "messages": args.messages,
        "seed": args.seed,
        "skip": sorted(args.skip),
        "rate": args.rate,
        "max_payload": args.max_payload,
        "counts": plan_counts(args.messages, args.skip),
        "machine": machine_facts(),
        "serve_source": _serve_source(dict(os.environ)),
    }
    try:
        results |= run_fuzz(args, workroot)
    except (OSError, RuntimeError, TimeoutError) as exc:  # the broker or serve did not start
        print(f"FAILED: could not start the run: {type(exc).__name__}: {exc}", flush=True)
        return 1
    finally:
        if args.keep:
            log(f"work folder kept: {workroot}")
        else:
            shutil.rmtree(workroot, ignore_errors=True)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    checks = evaluate(results, args)
    results["checks"] = [check.__dict__ for check in checks]
    results["ok"] = all(check.ok for check in checks)
    print(render(results, checks), flush=True)
    if args.json:
        results["published"].pop("valid_seqs", None)
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
