"""How fast does a task reach the inbox window? (issue 17: "within a second")

One private Mosquitto and one ``mqtthub serve`` (SQLite), started here. Each task is
posted through ``POST /api/tasks``; the time until it is a row in the inbox window (Qt
offscreen, in this process) is measured against the time until a bare paho-mqtt
subscriber on the same topic received it: the baseline is serve's publish plus the
broker, so the ratio is what the window adds. Tasks go one at a time, each after the
previous one is shown, posted from a thread while Qt's loop runs; both sides recognise a
task by its title, so neither waits for the API's answer. Prints one JSON object
(milliseconds and the ratio of medians).

Usage: ``.venv/bin/python benchmarks/inbox_latency.py [--tasks 50]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import httpx
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from PySide6.QtWidgets import QApplication
from suite.procs import HOST, Broker, Serve, wait_until

from mqtthub.config import load_settings
from mqtthub.inbox.app import close_inbox, open_inbox
from mqtthub.inbox.window import COLUMNS, InboxWindow

RECIPIENT = "61016968"


class Baseline:
    """A paho-mqtt subscriber to the recipient's tasks: arrival time per task title."""

    def __init__(self, port: int) -> None:
        self.arrived: dict[str, float] = {}
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")
        self.client.on_connect = lambda c, *_: c.subscribe(f"mqtt_app/tasks/{RECIPIENT}/+", 1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._take
        self.client.connect(HOST, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("the baseline subscriber did not subscribe")

    def _take(self, _client: Any, _userdata: Any, message: Any) -> None:
        self.arrived[json.loads(message.payload)["title"]] = time.monotonic()

    def stop(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def shown(window: InboxWindow, title: str) -> bool:
    """True once a row of the window shows a task with ``title``."""
    column = COLUMNS.index("Title")
    items = (window.table.item(row, column) for row in range(window.table.rowCount()))
    return any(item is not None and item.text() == title for item in items)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    """Measure and print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        broker = Broker(work)
        broker.start()
        serve = Serve(broker, work / "serve", f"sqlite:///{work / 'serve.db'}")
        try:
            serve.start()
            flags = {"broker_url": f"mqtt://{HOST}:{broker.port}"}
            window = open_inbox(
                settings=load_settings(**flags),
                flags=flags,
                recipient=RECIPIENT,
                state_dir=work / "inbox",
            )
            link = window.link
            assert link is not None

            def pump_until(condition: Any, timeout: float = 10.0) -> None:
                deadline = time.monotonic() + timeout
                while not condition():
                    if time.monotonic() > deadline:
                        raise TimeoutError(str(condition))
                    app.processEvents()
                    time.sleep(0.0005)

            pump_until(lambda: link.state()[0].connected)
            baseline = Baseline(broker.port)
            url = f"http://{HOST}:{serve.http_port}/api/tasks"
            to_window, to_client = [], []
            for n in range(args.tasks):
                title = f"task {n}"
                body = {"recipient": RECIPIENT, "title": title, "body": "measure me"}
                # Posted from a thread, so that Qt's loop runs meanwhile, as in the app.
                poster = threading.Thread(target=httpx.post, args=(url,), kwargs={"json": body})
                posted = time.monotonic()
                poster.start()
                pump_until(lambda title=title: shown(window, title))
                to_window.append((time.monotonic() - posted) * 1000)
                poster.join()
                wait_until(lambda title=title: title in baseline.arrived, 10, "baseline")
                to_client.append((baseline.arrived[title] - posted) * 1000)
            baseline.stop()
            close_inbox(window)
        finally:
            serve.stop()
            broker.stop()
    window_ms, client_ms = statistics.median(to_window), statistics.median(to_client)
    print(
        json.dumps(
            {
                "tasks": args.tasks,
                "window_ms": {
                    "p50": round(window_ms, 1),
                    "p95": round(percentile(to_window, 0.95), 1),
                    "max": round(max(to_window), 1),
                },
                "baseline_ms": {
                    "p50": round(client_ms, 1),
                    "p95": round(percentile(to_client, 0.95), 1),
                    "max": round(max(to_client), 1),
                },
                "ratio_p50": round(window_ms / client_ms, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
