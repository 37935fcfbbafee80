"""Where does ``mqtthub serve`` spend its time while it stores a burst (or a paced load)?

Starts the same private Mosquitto and serve as ``benchmarks/run.py``, attaches py-spy
(``.venv/bin/pip install py-spy``; not a project dependency) to serve, sends a burst from
the raw-socket publisher (or a paced load with ``--rate``), stops py-spy once every
message is stored, and summarises the samples: the share of each thread (event loop, DB
writer, others), and the functions with the most samples on their own (self) and
including what they call (inclusive), per thread.

Usage::

    .venv/bin/python benchmarks/profile_serve.py [--messages 50000] [--qos 1]
        [--database sqlite|postgresql] [--rate MSG_PER_S --seconds S] [--gil] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import publishers
from suite.databases import provision
from suite.procs import Broker, Serve, log, stop_process, wait_until

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
TOP = 20


def short_frame(frame: str) -> str:
    """``func (path:line)`` -> ``func (package/module.py)``, without the line number."""
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def thread_role(first: str) -> str:
    """A readable thread name from py-spy's ``thread (tid): name`` frame."""
    name = first.partition(": ")[2] or first
    name = re.sub(r"_\d+$", "", name)
    return {
        "MainThread": "event loop (MainThread)",
        "mqtthub-writer": "DB writer (mqtthub-writer)",
        "AnyIO worker thread": "HTTP (AnyIO worker threads)",
    }.get(name, name)


def summarise(raw: Path) -> dict[str, Any]:
    """Samples per thread, and per thread the top functions: self, inclusive, by line."""
    per_role: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    lines: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        first, *frames = stack.split(";")
        if not frames or not count_text.isdigit():
            continue
        count, role = int(count_text), thread_role(first)
        per_role[role] += count
        own[role][short_frame(frames[-1])] += count
        for name in {short_frame(frame) for frame in frames}:
            inclusive[role][name] += count
        for frame in set(frames):  # with line numbers: which statement of a function
            lines[role][frame] += count
    total = sum(per_role.values()) or 1
    return {
        "samples": total,
        "threads": {role: round(n / total, 3) for role, n in per_role.most_common()},
        "self": {r: _top(c, per_role[r]) for r, c in own.items()},
        "inclusive": {r: _top(c, per_role[r]) for r, c in inclusive.items()},
        "inclusive_lines": {r: _top(c, per_role[r]) for r, c in lines.items()},
    }


def _top(counter: collections.Counter[str], total: int) -> list[tuple[str, float]]:
    return [(name, round(n / max(total, 1), 3)) for name, n in counter.most_common(TOP)]


def record(args: argparse.Namespace, workdir: Path, raw: Path) -> dict[str, Any]:
    """Run the load against serve under py-spy; return the load's figures."""
    spy_bin = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    broker = Broker(workdir)
    broker.start()
    try:
        with provision(args.database, workdir / "serve") as database:
            serve = Serve(broker, workdir / "serve", database.url)
            spy, publisher = None, None
            try:
                serve.start()
                command = [spy_bin, "record", "--pid", str(serve.pid), "--rate", "250"]
                command += ["--format", "raw", "--threads", "--nonblocking", "-o", str(raw)]
                spy = subprocess.Popen(
                    command + (["--gil"] if args.gil else []), stdout=subprocess.DEVNULL
                )
                time.sleep(1.0)  # py-spy attaches
                load: tuple[object, ...]
                if args.rate:
                    load = ("paced", broker.port, args.rate, args.seconds, 0, "profile-pub")
                    count = max(1, round(args.rate * args.seconds))
                else:
                    load = ("burst", broker.port, args.qos, args.messages, "profile-pub")
                    count = args.messages
                publisher = publishers.launch(*load)
                started = time.monotonic()
                wait_until(lambda: serve.stats()["messages_stored"] >= count, 600, "stored")
                elapsed = time.monotonic() - started
                stats = serve.stats()
            finally:
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
                stop_process(publisher)
                serve.stop()
    finally:
        broker.stop()
    return {"messages": count, "seconds": elapsed, "batches": stats["batches"]}


def main() -> None:
    """Profile, write ``profile.json`` and ``profile-raw.txt``, print the summary."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rate", type=float, help="paced load (QoS 1) instead of a burst")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of --rate")
    parser.add_argument("--gil", action="store_true", help="only samples holding the GIL")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "profile-raw.txt"
    with tempfile.TemporaryDirectory(prefix="mqtthub-profile-") as tmp:
        load = record(args, Path(tmp), raw)
    summary = {"load": load, "options": vars(args) | {"out": str(args.out)}, **summarise(raw)}
    (args.out / "profile.json").write_text(json.dumps(summary, indent=2) + "\n")
    log(f"wrote {args.out}/profile.json and {raw.name}")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
