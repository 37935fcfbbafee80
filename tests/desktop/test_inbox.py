"""`mqtthub inbox` as a person uses it: real Mosquitto, real serve, Qt offscreen."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from mqtthub.client import TaskListener
from mqtthub.config import load_settings
from mqtthub.inbox.app import close_inbox, run_inbox
from mqtthub.inbox.store import InboxStore
from mqtthub.inbox.tasks import TaskState
from mqtthub.inbox.window import COLUMNS, InboxWindow
from mqtthub.transport.history import LinkEvent
from support.certs import TlsFiles
from support.mosquitto import (
    MosquittoBroker,
    MosquittoFactory,
    mosquitto_pub,
    mosquitto_sub_once,
    mosquitto_subscribe_persistent,
)
from support.serve import ServeProcess, serve_for, wait_until

from .conftest import RECIPIENT, OpenInbox

BROKER_S = 30_000  # ms: a broker restart and the link's backoff, on a busy machine


def post_task(serve: ServeProcess, title: str, body: str = "check it") -> dict[str, Any]:
    response = serve.http.post(
        "/api/tasks", json={"recipient": RECIPIENT, "title": title, "body": body}
    )
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def api_state(serve: ServeProcess, task_id: str) -> str:
    tasks = serve.get("/api/tasks", params={"recipient": RECIPIENT}).json()
    return str(next(t["state"] for t in tasks if t["id"] == task_id))


def cell(window: InboxWindow, task_id: str, column: str) -> str:
    row = window.row_of(task_id)
    assert row is not None, f"task {task_id} not shown"
    item = window.table.item(row, COLUMNS.index(column))
    assert item is not None
    return item.text()


def connected(window: InboxWindow) -> bool:
    return window.link is not None and window.link.state()[0].connected


def wait_connected(qtbot: QtBot, *windows: InboxWindow) -> None:
    qtbot.waitUntil(lambda: all(connected(w) for w in windows), timeout=BROKER_S)


def wait_shown(qtbot: QtBot, task_id: str, *windows: InboxWindow, timeout: int = 5_000) -> None:
    """Until every window shows the task (a broker's delivery on this machine)."""
    qtbot.waitUntil(lambda: all(w.row_of(task_id) is not None for w in windows), timeout=timeout)


def status(window: InboxWindow) -> str:
    return window.status_label.text()


@pytest.fixture
def serve(mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[ServeProcess]:
    """`mqtthub serve` on the test's Mosquitto."""
    with serve_for(mosquitto.port, tmp_path / "serve") as process:
        yield process


@pytest.fixture
def window(
    serve: ServeProcess, mosquitto: MosquittoBroker, qtbot: QtBot, open_window: OpenInbox
) -> InboxWindow:
    """An inbox window on the test's Mosquitto, connected, with serve running."""
    window = open_window(mosquitto.port)
    wait_connected(qtbot, window)
    return window


def test_a_task_appears_within_a_second_highlighted_and_announced_once(
    mosquitto: MosquittoBroker, serve: ServeProcess, qtbot: QtBot, window: InboxWindow
) -> None:
    assert status(window).startswith(f"Connected to mqtt://127.0.0.1:{mosquitto.port} since")
    posted = time.monotonic()
    task = post_task(serve, "<b>Inspect</b> pump 3", "Valve <img src=x> leaks\nsince 6:00")
    wait_shown(qtbot, task["id"], window)
    shown_after = time.monotonic() - posted
    assert shown_after < 1.0, f"shown after {shown_after:.2f} s"
    # Shown as written, never as markup; new tasks are highlighted and counted.
    assert cell(window, task["id"], "Title") == "<b>Inspect</b> pump 3"
    assert cell(window, task["id"], "Text") == "Valve <img src=x> leaks since 6:00"
    assert cell(window, task["id"], "State") == "new"
    row = window.row_of(task["id"])
    assert row is not None
    item = window.table.item(row, 1)
    assert item is not None
    assert item.font().bold()
    assert window.windowTitle() == f"mqtthub inbox — {RECIPIENT} (1 new)"
    assert window.announced == [task["id"]]
    window.table.selectRow(row)
    assert (
        window.detail.toPlainText()
        == "<b>Inspect</b> pump 3\n\nValve <img src=x> leaks\nsince 6:00"
    )
    wait_until(lambda: api_state(serve, task["id"]) == "delivered", what="delivered")


def test_seen_and_done_buttons_move_the_task_on_the_server(
    serve: ServeProcess, qtbot: QtBot, window: InboxWindow
) -> None:
    task = post_task(serve, "Replace filter")
    wait_shown(qtbot, task["id"], window)

    seen = window.button(task["id"], "Seen")
    assert seen is not None
    qtbot.mouseClick(seen, Qt.MouseButton.LeftButton)
    assert cell(window, task["id"], "State") == "seen"
    assert window.windowTitle() == f"mqtthub inbox — {RECIPIENT}"
    wait_until(lambda: api_state(serve, task["id"]) == "seen", what="seen on the server")
    seen = window.button(task["id"], "Seen")
    assert seen is not None
    assert not seen.isEnabled()

    done = window.button(task["id"], "Done")
    assert done is not None
    qtbot.mouseClick(done, Qt.MouseButton.LeftButton)
    assert cell(window, task["id"], "State") == "done"
    wait_until(lambda: api_state(serve, task["id"]) == "done", what="done on the server")
    done = window.button(task["id"], "Done")
    assert done is not None
    assert not done.isEnabled()


def test_broker_stopped_shows_the_reason_and_the_link_comes_back_by_itself(
    mosquitto: MosquittoBroker, serve: ServeProcess, qtbot: QtBot, window: InboxWindow
) -> None:
    mosquitto.stop()
    qtbot.waitUntil(lambda: "next attempt in" in status(window), timeout=BROKER_S)
    text = status(window)
    assert text.startswith("Disconnected: "), text
    assert (
        "connection to the broker was lost" in text
        or "the broker is shutting down" in text
        or f"nothing listens at mqtt://127.0.0.1:{mosquitto.port}" in text
    ), text
    assert window.status_label.styleSheet() == "color: #b71c1c"

    mosquitto.start()
    wait_connected(qtbot, window)
    assert status(window).startswith("Connected to ")
    # Subscribed again: a new task arrives (serve reconnects on its own backoff).
    wait_until(lambda: serve.get("/healthz").status_code == 200, timeout=30, what="serve")
    task = post_task(serve, "After the restart")
    wait_shown(qtbot, task["id"], window, timeout=BROKER_S)


def test_done_clicked_while_the_broker_is_down_reaches_the_server_once_it_is_back(
    mosquitto_factory: MosquittoFactory, tmp_path: Path, qtbot: QtBot, open_window: OpenInbox
) -> None:
    broker = mosquitto_factory(persistence=True)  # serve's session, and so the receipt, kept
    with serve_for(broker.port, tmp_path / "serve") as serve:
        window = open_window(broker.port)
        wait_connected(qtbot, window)
        task = post_task(serve, "Close the valve")
        wait_shown(qtbot, task["id"], window)
        wait_until(lambda: api_state(serve, task["id"]) == "delivered", what="delivered")
        broker.stop()
        qtbot.waitUntil(lambda: not connected(window), timeout=BROKER_S)
        done = window.button(task["id"], "Done")
        assert done is not None
        qtbot.mouseClick(done, Qt.MouseButton.LeftButton)
        assert cell(window, task["id"], "State") == "done"
        assert window.store.unsent_receipts() == [(task["id"], TaskState.DONE)]
        broker.start()
        wait_connected(qtbot, window)
        qtbot.waitUntil(lambda: not window.store.unsent_receipts(), timeout=BROKER_S)
        wait_until(
            lambda: api_state(serve, task["id"]) == "done", timeout=30, what="done on the server"
        )


def test_a_task_the_window_could_not_keep_is_sent_again(
    mosquitto: MosquittoBroker,
    serve: ServeProcess,
    qtbot: QtBot,
    window: InboxWindow,
    open_window: OpenInbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`delivered` goes out only once the task is in the window's file: a task that could
    not be kept (the file locked, the app killed) stays queued and comes again."""

    def locked(_store: InboxStore, _task: object) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(InboxStore, "add", locked)
    with qtbot.captureExceptions() as exceptions:
        task = post_task(serve, "Kept on the second try")
        qtbot.waitUntil(lambda: bool(exceptions), timeout=5_000)
    assert window.row_of(task["id"]) is None
    assert api_state(serve, task["id"]) == "queued"
    monkeypatch.undo()
    close_inbox(window)

    again = open_window(mosquitto.port)  # the server re-sends queued tasks on `online`
    wait_shown(qtbot, task["id"], again, timeout=BROKER_S)
    wait_until(lambda: api_state(serve, task["id"]) == "delivered", what="delivered")
    assert again.announced == [task["id"]]


def test_client_id_taken_over_is_said_in_words(
    mosquitto: MosquittoBroker, qtbot: QtBot, open_window: OpenInbox
) -> None:
    """Another program connecting with the window's client id, again and again (Mosquitto
    2.0.11 closes the taken-over connection without a reason code)."""
    window = open_window(mosquitto.port)
    assert window.link is not None
    for _ in range(3):
        wait_connected(qtbot, window)
        mosquitto_pub(mosquitto, "elsewhere/x", "1", client_id=window.link.client_id)
        qtbot.waitUntil(lambda: not connected(window), timeout=10_000)
    qtbot.waitUntil(lambda: "took over the connection" in status(window), timeout=BROKER_S)
    assert "another program connected with this window's client id" in status(window)


def test_a_wrong_password_and_an_untrusted_certificate_are_said_in_words(
    mosquitto_factory: MosquittoFactory, tls_files: TlsFiles, qtbot: QtBot, open_window: OpenInbox
) -> None:
    guarded = mosquitto_factory(users={"app": "right-pass"})
    wrong = open_window(guarded.port, broker_url=f"mqtt://app:wrong@127.0.0.1:{guarded.port}")
    qtbot.waitUntil(lambda: "next attempt in" in status(wrong), timeout=BROKER_S)
    assert status(wrong).startswith(
        "Disconnected: not authorized: the broker refused the user name or password"
    ), status(wrong)
    assert "wrong" not in status(wrong)  # the password is never shown

    tls = mosquitto_factory(tls=tls_files)
    untrusted = open_window(
        tls.port,
        broker_url=f"mqtts://localhost:{tls.port}",
        ca_file=str(tls_files.other_ca_file),
    )
    qtbot.waitUntil(lambda: "next attempt in" in status(untrusted), timeout=BROKER_S)
    assert status(untrusted).startswith("Disconnected: TLS problem: TLS certificate not trusted")


def test_a_task_posted_while_the_app_was_closed_appears_once(
    mosquitto: MosquittoBroker, serve: ServeProcess, qtbot: QtBot, open_window: OpenInbox
) -> None:
    task = post_task(serve, "Missed while away")
    first = open_window(mosquitto.port)
    wait_shown(qtbot, task["id"], first, timeout=BROKER_S)
    wait_until(lambda: api_state(serve, task["id"]) == "delivered", what="delivered")
    assert first.announced == [task["id"]]
    close_inbox(first)

    again = open_window(mosquitto.port)  # the same computer, started again
    wait_connected(qtbot, again)
    later = post_task(serve, "After the restart")
    wait_shown(qtbot, later["id"], again)
    assert again.table.rowCount() == 2
    assert cell(again, task["id"], "Title") == "Missed while away"
    assert again.announced == [later["id"]]  # the old one is not announced twice


def test_two_copies_both_show_the_task_follow_each_other_and_never_kick_each_other(
    mosquitto: MosquittoBroker,
    serve: ServeProcess,
    tmp_path: Path,
    qtbot: QtBot,
    open_window: OpenInbox,
) -> None:
    desk = open_window(mosquitto.port, state_dir=tmp_path / "desk")
    laptop = open_window(mosquitto.port, state_dir=tmp_path / "laptop")
    wait_connected(qtbot, desk, laptop)
    assert desk.link is not None
    assert laptop.link is not None
    assert desk.link.client_id != laptop.link.client_id
    task = post_task(serve, "For both copies")
    wait_shown(qtbot, task["id"], desk, laptop)
    for window in (desk, laptop):
        assert window.announced == [task["id"]]

    done = desk.button(task["id"], "Done")
    assert done is not None
    qtbot.mouseClick(done, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(laptop, task["id"], "State") == "done", timeout=5_000)
    wait_until(lambda: api_state(serve, task["id"]) == "done", what="done on the server")
    for window in (desk, laptop):
        assert [e.event for e in window.history.events] == [LinkEvent.CONNECTED]


def test_two_copies_on_one_computer_announce_a_task_once_and_follow_each_other(
    mosquitto: MosquittoBroker, serve: ServeProcess, qtbot: QtBot, open_window: OpenInbox
) -> None:
    one = open_window(mosquitto.port)
    two = open_window(mosquitto.port)
    wait_connected(qtbot, one, two)
    task = post_task(serve, "Shared desk")
    wait_shown(qtbot, task["id"], one, two)
    assert sorted(one.announced + two.announced) == [task["id"]]
    done = one.button(task["id"], "Done")
    assert done is not None
    qtbot.mouseClick(done, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cell(two, task["id"], "State") == "done", timeout=5_000)


def test_closed_to_the_tray_it_keeps_receiving(
    serve: ServeProcess, qtbot: QtBot, window: InboxWindow
) -> None:
    window.close_to_tray = True  # as where the platform has a tray (offscreen has none)
    window.close()
    assert not window.isVisible()
    task = post_task(serve, "While hidden")
    wait_shown(qtbot, task["id"], window)
    assert window.announced == [task["id"]]
    assert connected(window)
    window.bring_back()
    assert window.isVisible()


def test_check_connection_shows_the_doctors_report_in_the_window(
    mosquitto: MosquittoBroker, qtbot: QtBot, open_window: OpenInbox
) -> None:
    window = open_window(mosquitto.port)
    qtbot.mouseClick(window.check_button, Qt.MouseButton.LeftButton)
    assert window.check_output.isVisible()
    qtbot.waitUntil(lambda: window.check_button.isEnabled(), timeout=BROKER_S)
    report = window.check_output.toPlainText()
    assert report.startswith(f"mqtthub doctor: mqtt://127.0.0.1:{mosquitto.port}"), report
    assert report.endswith("all good"), report

    mosquitto.stop()
    qtbot.mouseClick(window.check_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.check_button.isEnabled(), timeout=BROKER_S)
    report = window.check_output.toPlainText()
    assert "1 failed" in report, report
    assert window.check_output.styleSheet() == "color: #b71c1c"


def test_the_inbox_command_runs_receives_and_quits_on_sigterm(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """`mqtthub inbox` as a person starts it: the window receives a task, SIGTERM closes it
    cleanly (the broker hears `offline`), and the task stays in its file."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MQTT")}
    state = tmp_path / "state"
    status_topic = f"mqtt_app/status/{RECIPIENT}"
    mosquitto_subscribe_persistent(mosquitto, status_topic, client_id="status-watch")
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        inbox = subprocess.Popen(
            [
                *(sys.executable, "-m", "mqtthub", "inbox", "--recipient", RECIPIENT),
                *("--state-dir", str(state)),
            ],
            env={
                **clean,
                "QT_QPA_PLATFORM": "offscreen",
                "MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            task = post_task(serve, "From the command")
            wait_until(
                lambda: api_state(serve, task["id"]) == "delivered", timeout=30, what="delivered"
            )
            inbox.send_signal(signal.SIGTERM)
            assert inbox.wait(15) == 0, inbox.stdout.read() if inbox.stdout else ""
        finally:
            if inbox.poll() is None:
                inbox.kill()
                inbox.wait()
    said = mosquitto_sub_once(
        mosquitto, status_topic, count=2, client_id="status-watch", clean_session=False
    )
    assert said == ["online", "offline"]
    store = InboxStore(state / f"inbox-{RECIPIENT}.sqlite")
    assert [t.title for t in store.tasks()] == ["From the command"]
    store.close()


def test_a_dead_link_is_logged_shown_and_ends_the_app_with_status_1(
    mosquitto: MosquittoBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Supervision: the listener ending by a bug (a fake: its run raises) is not silent."""

    async def broken(_self: TaskListener) -> None:
        raise RuntimeError("a bug in the listener")

    monkeypatch.setattr(TaskListener, "run", broken)
    flags = {"broker_url": f"mqtt://127.0.0.1:{mosquitto.port}"}
    status = run_inbox(
        settings=load_settings(**flags), flags=flags, recipient=RECIPIENT, state_dir=tmp_path
    )
    assert status == 1
    assert "the broker link stopped" in caplog.text
    assert "a bug in the listener" in caplog.text


def test_signals_still_queued_when_the_window_closes_are_dropped(
    qapp: QApplication, qtbot: QtBot, tmp_path: Path
) -> None:
    """The link's last signals may still be queued when the window closes: they must not
    reach its closed task file."""
    store = InboxStore(tmp_path / "inbox.sqlite")
    window = InboxWindow(store=store, recipient=RECIPIENT, check_connection=lambda: ("", True))
    emitter = threading.Thread(target=window.signals.online.emit)  # as the link's thread
    emitter.start()
    emitter.join()
    close_inbox(window)
    with qtbot.captureExceptions() as exceptions:
        qapp.processEvents()
    assert exceptions == []
