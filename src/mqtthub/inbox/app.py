"""Start the inbox: the Qt application, the window, the task file and the broker link."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtWidgets import QApplication

from mqtthub.config import Settings
from mqtthub.inbox.link import Link
from mqtthub.inbox.store import InboxStore
from mqtthub.inbox.window import InboxWindow

__all__ = ["check_connection", "close_inbox", "open_inbox", "run_inbox"]

log = logging.getLogger("mqtthub.inbox")

QUIT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def check_connection(flags: dict[str, Any], recipient: str) -> tuple[str, bool]:
    """Run the doctor's checks with the inbox's settings, as the task app of ``recipient``
    (its own task topics and receipts, not serve's device topics): the report and whether
    all passed."""
    from mqtthub.doctor.report import as_text, failed
    from mqtthub.doctor.run import DoctorOptions, run_doctor

    checks, target = asyncio.run(run_doctor(flags, DoctorOptions(recipient=recipient)))
    return as_text(checks, target=target), not failed(checks)


def open_inbox(
    *, settings: Settings, flags: dict[str, Any], recipient: str, state_dir: Path
) -> InboxWindow:
    """Show the inbox of ``recipient`` and connect it (a QApplication must exist).

    ``flags`` are the settings flags as given on the command line, for Check connection.
    Call :func:`close_inbox` (or quit the application through :func:`run_inbox`) to end it.
    """
    store = InboxStore(state_dir / f"inbox-{recipient}.sqlite")
    window = InboxWindow(
        store=store,
        recipient=recipient,
        check_connection=lambda: check_connection(flags, recipient),
    )
    link = Link(settings=settings, recipient=recipient, **window.link_callbacks())
    window.attach(link)
    window.show()
    link.start()
    log.info("inbox of %s open as client id %s", recipient, link.client_id)
    return window


def close_inbox(window: InboxWindow) -> None:
    """Say ``offline``, disconnect, close the task file and destroy the window (once;
    later calls do nothing)."""
    if window.closed:
        return
    window.closed = True
    if window.link is not None:
        window.link.stop()
    # The link has ended: drop its signals still queued for the window (they would reach
    # a closed task file).
    QCoreApplication.removePostedEvents(window, QEvent.Type.MetaCall)
    window.close_for_good()
    window.store.close()
    # Destroyed here, on Qt's thread. Left to Python's cycle collector, which runs on
    # whichever thread allocates at the time (another window's link thread, say), the
    # window and its status timer would be deleted off Qt's thread: Qt's timer list then
    # points at a freed object and the next timer event crashes the process (seen in the
    # tests, about one run in two, with several windows opened one after another).
    shiboken6.delete(window)


def run_inbox(*, settings: Settings, flags: dict[str, Any], recipient: str, state_dir: Path) -> int:
    """Run the inbox until the person quits; the exit status."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setApplicationName("mqtthub inbox")
    window = open_inbox(settings=settings, flags=flags, recipient=recipient, state_dir=state_dir)
    app.setQuitOnLastWindowClosed(not window.close_to_tray)
    # Qt's loop runs Python code often (the status bar's timer), so these handlers run.
    previous = {sig: signal.signal(sig, lambda _sig, _frame: app.quit()) for sig in QUIT_SIGNALS}
    try:
        return app.exec()
    finally:
        close_inbox(window)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
