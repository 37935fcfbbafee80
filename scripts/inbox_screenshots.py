"""Take the inbox screenshots in docs/ (Qt offscreen, real Mosquitto and serve).

    .venv/bin/python scripts/inbox_screenshots.py

Starts a Mosquitto and `mqtthub serve` of its own (the test suite's helpers), posts three
tasks, marks one seen and one done, and saves the window; then stops the broker, runs
Check connection and saves the disconnected window.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from PySide6.QtCore import QEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from mqtthub.config import load_settings  # noqa: E402
from mqtthub.inbox.app import close_inbox, open_inbox  # noqa: E402
from mqtthub.inbox.tasks import TaskState  # noqa: E402
from mqtthub.inbox.window import InboxWindow  # noqa: E402
from support.mosquitto import MosquittoBroker  # noqa: E402
from support.serve import serve_for  # noqa: E402

RECIPIENT = "61016968"
TASKS = (
    ("Inspect pump 3", "Pressure dropped to 1.2 bar at 06:10; check the inlet valve."),
    ("Replace filter in hall B", "Filter B-7 reported clogged twice this week."),
    ("Confirm the night shift roster", "Reply in the roster tool before Friday."),
)


def wait(app: QApplication, condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Run Qt's loop until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {condition}")
        app.processEvents()
        time.sleep(0.02)


def settle(app: QApplication, seconds: float = 0.5) -> None:
    """Let Qt lay out and paint what changed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        app.sendPostedEvents(None, QEvent.Type.DeferredDelete)  # exec() would do this
        time.sleep(0.02)


def main() -> None:
    """Save docs/inbox-tasks.png and docs/inbox-disconnected.png."""
    app = QApplication([])
    out = ROOT / "docs"
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        broker = MosquittoBroker(workdir=work / "mosquitto")
        broker.start()
        try:
            with serve_for(broker.port, work / "serve") as serve:
                flags = {"broker_url": f"mqtt://127.0.0.1:{broker.port}"}
                window: InboxWindow = open_inbox(
                    settings=load_settings(**flags),
                    flags=flags,
                    recipient=RECIPIENT,
                    state_dir=work / "state",
                )
                link = window.link
                assert link is not None
                wait(app, lambda: link.state()[0].connected)
                ids = []
                for title, body in TASKS:
                    response = serve.http.post(
                        "/api/tasks", json={"recipient": RECIPIENT, "title": title, "body": body}
                    )
                    ids.append(response.json()["id"])
                    wait(app, lambda task_id=ids[-1]: window.row_of(task_id) is not None)
                window.mark(ids[0], TaskState.DONE)
                window.mark(ids[1], TaskState.SEEN)
                row = window.row_of(ids[1])
                assert row is not None
                window.table.selectRow(row)
                settle(app)
                window.grab().save(str(out / "inbox-tasks.png"))

                broker.stop()
                wait(app, lambda: "next attempt in" in window.status_label.text())
                window.check_connection()
                wait(app, window.check_button.isEnabled)
                settle(app)
                window.grab().save(str(out / "inbox-disconnected.png"))
                close_inbox(window)
        finally:
            broker.stop()
    print(f"saved {out / 'inbox-tasks.png'} and {out / 'inbox-disconnected.png'}")


if __name__ == "__main__":
    main()
