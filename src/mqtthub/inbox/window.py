"""The inbox window (Qt): the task list, Seen/Done, the link's status, Check connection.

Everything here runs on Qt's thread. The broker link (:class:`~mqtthub.inbox.link.Link`)
calls back on its own thread; those calls arrive here as queued Qt signals. Text a task
carries is shown as plain text only (table cells, a plain-text pane; tray messages are
escaped where the desktop's notification server reads markup): a title such as
``<img src=...>`` is shown as written, never rendered.
"""

from __future__ import annotations

import html
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QBrush, QCloseEvent, QColor, QFont
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMainWindow,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QSystemTrayIcon,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mqtthub.inbox.link import Link
from mqtthub.inbox.status import describe_link
from mqtthub.inbox.store import InboxStore
from mqtthub.inbox.tasks import InboxTask, TaskState, from_message, state_of_receipt
from mqtthub.transport.history import ConnectionEvent, ConnectionHistory

__all__ = ["InboxWindow", "LinkSignals"]

log = logging.getLogger("mqtthub.inbox")

COLUMNS = ("Arrived", "Title", "Text", "State", "")
ACTIONS = len(COLUMNS) - 1  # the column of the Seen and Done buttons
NEW_BACKGROUND = QColor("#fff3c4")
STATUS_REFRESH_MS = 250


def _colour(ok: bool) -> str:
    """The style sheet of a line that says all is well (green) or not (red)."""
    return "color: #1b5e20" if ok else "color: #b71c1c"


class LinkSignals(QObject):
    """The link's callbacks as Qt signals (emitted on the link's thread, handled on Qt's)."""

    task = Signal(dict)
    receipt = Signal(str, str)
    link_event = Signal(object)
    online = Signal()
    stopped = Signal(object)
    checked = Signal(str, bool)


class InboxWindow(QMainWindow):
    """One recipient's tasks, the link's status and the Check connection panel."""

    def __init__(
        self,
        *,
        store: InboxStore,
        recipient: str,
        check_connection: Callable[[], tuple[str, bool]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the window over the tasks in ``store``; :meth:`attach` adds the link.

        Args:
            store: this recipient's task file.
            recipient: whose tasks these are.
            check_connection: runs the doctor's checks (blocking, on a helper thread) and
                returns the report and whether everything passed.
            clock: the time source (epoch seconds).
        """
        super().__init__()
        self.store = store
        self.signals = LinkSignals()
        self.link: Link | None = None
        self._check_connection = check_connection
        self._clock = clock
        #: The link's connection events and what they show (set by :meth:`attach`).
        self.history = ConnectionHistory("")
        self._quitting = False
        #: Set by :func:`~mqtthub.inbox.app.close_inbox` once the window is gone.
        self.closed = False
        self._shown_states: dict[str, TaskState] = {}  # the state each row shows
        #: Task ids this window announced (a tray message, or an alert where none).
        self.announced: list[str] = []
        self._title = f"mqtthub inbox — {recipient}"
        self.setWindowTitle(self._title)
        self.resize(860, 520)
        self._build(recipient)
        self.tray = self._build_tray()
        #: Closing the window hides it to the tray (where the platform has one).
        self.close_to_tray = self.tray is not None
        self.signals.task.connect(self._take_task)
        self.signals.receipt.connect(self._take_receipt)
        self.signals.link_event.connect(self._take_event)
        self.signals.online.connect(self._send_unsent_receipts)
        self.signals.stopped.connect(self._link_stopped)
        self.signals.checked.connect(self._show_check)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh_status)
        self._timer.start(STATUS_REFRESH_MS)
        self.refresh_tasks()

    # -- building ------------------------------------------------------------------------

    def _build(self, recipient: str) -> None:
        header = QLabel(f"Tasks for {recipient}")
        header.setTextFormat(Qt.TextFormat.PlainText)
        font = header.font()
        font.setPointSize(font.pointSize() + 3)
        font.setBold(True)
        header.setFont(font)
        self.check_button = QPushButton("Check connection")
        self.check_button.clicked.connect(self.check_connection)
        self.check_button.setMinimumWidth(self.check_button.sizeHint().width())
        top = QHBoxLayout()
        top.addWidget(header)
        top.addStretch(1)
        top.addWidget(self.check_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        heading = self.table.horizontalHeader()
        heading.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        heading.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        heading.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        heading.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)
        heading.setSectionResizeMode(4, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setColumnWidth(1, 220)
        self.table.itemSelectionChanged.connect(self._show_selected)

        self.detail = QPlainTextEdit()
        self.detail.setReadOnly(True)
        self.detail.setPlaceholderText("Select a task to read it in full.")
        self.check_output = QPlainTextEdit()
        self.check_output.setReadOnly(True)
        self.check_output.setVisible(False)
        self.check_output.setFont(QFont("monospace"))
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.detail)
        lower.addWidget(self.check_output)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(lower)
        splitter.setSizes([300, 180])

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.addLayout(top)
        layout.addWidget(splitter)
        self.setCentralWidget(body)

        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)
        self.statusBar().addWidget(self.status_label, 1)

    def _build_tray(self) -> QSystemTrayIcon | None:
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return None
        icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)
        tray = QSystemTrayIcon(icon, self)
        menu = QMenu(self)
        show = QAction("Open inbox", menu)
        show.triggered.connect(self.bring_back)
        leave = QAction("Quit", menu)
        leave.triggered.connect(self._quit)
        menu.addAction(show)
        menu.addAction(leave)
        tray.setContextMenu(menu)
        tray.activated.connect(lambda _reason: self.bring_back())
        tray.show()
        return tray

    # -- the link ------------------------------------------------------------------------

    def attach(self, link: Link) -> None:
        """Show ``link``'s status and send receipts through it."""
        self.link = link
        self.history = ConnectionHistory(link.client_id)
        self.refresh_status()

    def link_callbacks(self) -> dict[str, Callable[..., None]]:
        """The callbacks a :class:`Link` takes, as signals into this window."""
        return {
            "on_task": self.signals.task.emit,
            "on_receipt": self.signals.receipt.emit,
            "on_event": self.signals.link_event.emit,
            "on_online": self.signals.online.emit,
            "on_stopped": self.signals.stopped.emit,
        }

    def refresh_status(self) -> None:
        """Rewrite the status bar (and the countdown in it)."""
        if self.link is None:
            self.status_label.setText("Not connected")
            return
        state, next_attempt_at = self.link.state()
        diagnosis = self.history.diagnosis
        status = describe_link(
            state,
            now=self._clock(),
            next_attempt_at=next_attempt_at,
            last_event=self.history.events[-1] if self.history.events else None,
            taken_over=diagnosis is not None and diagnosis.reason.endswith("client_id_conflict"),
        )
        self.status_label.setText(status.text)
        self.status_label.setStyleSheet(_colour(status.connected))
        if self.tray is not None:
            self.tray.setToolTip(f"mqtthub inbox\n{status.text}")

    def _take_event(self, event: ConnectionEvent) -> None:
        self.history.add(event)
        self.refresh_status()

    def _link_stopped(self, error: BaseException | None) -> None:
        if self.link is not None and self.link.stopping:
            return
        log.error("the broker link stopped: %r; the inbox exits", error)
        self.status_label.setText(f"The broker link stopped: {error!r}")
        QApplication.exit(1)

    # -- tasks ---------------------------------------------------------------------------

    def _take_task(self, message: dict[str, Any]) -> None:
        task = from_message(message, arrived_at=self._clock())
        if task is None:
            log.warning("ignoring a task without a task_id")
            return
        if self.store.add(task) and self.store.claim_announcement(task.task_id):
            self._announce(task)
        self.refresh_tasks()
        # Only now that the task is in the file: until the server has this receipt it
        # re-sends the task at every `online`, so a task that never got here is not lost.
        self._send_receipt(task.task_id, "delivered")

    def _announce(self, task: InboxTask) -> None:
        self.announced.append(task.task_id)
        if self.tray is not None and QSystemTrayIcon.supportsMessages():
            title, body = f"New task: {task.title}", task.body[:300]
            if sys.platform.startswith("linux"):  # notification servers read body markup
                title, body = html.escape(title), html.escape(body)
            self.tray.showMessage(title, body)
        else:
            QApplication.alert(self)

    def _take_receipt(self, task_id: str, receipt: str) -> None:
        state = state_of_receipt(receipt)
        if state is None:
            return
        self.store.receipt_sent(task_id, state)  # the broker has it: no need to resend
        self.store.advance(task_id, state)
        self.refresh_tasks()  # also when a copy sharing the task file moved it already

    def mark(self, task_id: str, state: TaskState) -> None:
        """The person marked a task ``seen`` or ``done``: keep it and send the receipt."""
        moved = self.store.advance(task_id, state) is not None
        self.refresh_tasks()
        if moved:
            self._send_receipt(task_id, state)

    def _send_receipt(self, task_id: str, state: str) -> None:
        """Publish a receipt now if connected; ``seen``/``done`` count as sent only when
        the broker echoes them back (:meth:`_take_receipt`), else they go again at the next
        ``online``."""
        if self.link is not None:
            self.link.receipt(task_id, state)

    def _send_unsent_receipts(self) -> None:
        for task_id, state in self.store.unsent_receipts():
            self._send_receipt(task_id, state)

    def refresh_tasks(self) -> None:
        """Show the stored tasks, newest first; new ones highlighted."""
        tasks = self.store.tasks()
        for row, task in enumerate(tasks):
            shown = self._shown_states.get(task.task_id)
            if shown is None:  # tasks never go away: rows shown keep their order
                self.table.insertRow(row)
                self.table.setCellWidget(row, ACTIONS, self._actions(task.task_id))
            if shown is not task.state:  # new or moved on
                self._fill_row(row, task)
                self._shown_states[task.task_id] = task.state
        new = sum(task.state is TaskState.NEW for task in tasks)
        self.setWindowTitle(f"{self._title} ({new} new)" if new else self._title)

    def _fill_row(self, row: int, task: InboxTask) -> None:
        arrived = datetime.fromtimestamp(task.arrived_at).strftime("%Y-%m-%d %H:%M")
        cells = (arrived, task.title, task.body.replace("\n", " "), str(task.state))
        for column, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, task.task_id)
            if task.state is TaskState.NEW:
                item.setBackground(QBrush(NEW_BACKGROUND))
                font = item.font()
                font.setBold(True)
                item.setFont(font)
            self.table.setItem(row, column, item)
        seen = self._button_in(row, task.task_id, "Seen")
        done = self._button_in(row, task.task_id, "Done")
        if seen is not None and done is not None:
            seen.setEnabled(task.state is TaskState.NEW)
            done.setEnabled(task.state is not TaskState.DONE)

    def _actions(self, task_id: str) -> QWidget:
        cell = QWidget()
        layout = QHBoxLayout(cell)
        layout.setContentsMargins(2, 0, 2, 0)
        for label, state in (("Seen", TaskState.SEEN), ("Done", TaskState.DONE)):
            button = QPushButton(label)
            button.setObjectName(f"{label.lower()}:{task_id}")
            button.clicked.connect(lambda _checked=False, s=state: self.mark(task_id, s))
            layout.addWidget(button)
        return cell

    def row_of(self, task_id: str) -> int | None:
        """The table row showing ``task_id``, or None."""
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == task_id:
                return row
        return None

    def button(self, task_id: str, label: str) -> QPushButton | None:
        """The ``Seen`` or ``Done`` button of a task's row."""
        row = self.row_of(task_id)
        return None if row is None else self._button_in(row, task_id, label)

    def _button_in(self, row: int, task_id: str, label: str) -> QPushButton | None:
        cell = self.table.cellWidget(row, ACTIONS)
        return None if cell is None else cell.findChild(QPushButton, f"{label.lower()}:{task_id}")

    def selected_task_id(self) -> str | None:
        """The task of the selected row, if any."""
        items = self.table.selectedItems()
        return None if not items else str(items[0].data(Qt.ItemDataRole.UserRole))

    def _show_selected(self) -> None:
        task_id = self.selected_task_id()
        task = None if task_id is None else self.store.get(task_id)
        self.detail.setPlainText("" if task is None else f"{task.title}\n\n{task.body}")

    # -- Check connection ----------------------------------------------------------------

    def check_connection(self) -> None:
        """Run the doctor's checks for this broker on a helper thread; show the result."""
        self.check_button.setEnabled(False)
        self.check_button.setText("Checking…")
        self.check_output.setVisible(True)
        self.check_output.setPlainText("Checking the connection…")
        checked = self.signals.checked.emit

        def run() -> None:
            try:
                report, ok = self._check_connection()
            except Exception as exc:  # shown in the window: the check itself failed
                log.exception("Check connection failed")
                report, ok = f"The check itself failed: {exc!r}", False
            checked(report, ok)

        threading.Thread(target=run, name="mqtthub-inbox-check", daemon=True).start()

    def _show_check(self, report: str, ok: bool) -> None:
        self.check_output.setPlainText(report)
        self.check_output.setStyleSheet(_colour(ok))
        self.check_button.setText("Check connection")
        self.check_button.setEnabled(True)

    # -- closing -------------------------------------------------------------------------

    def bring_back(self) -> None:
        """Show the window again (from the tray)."""
        self.showNormal()
        self.raise_()
        self.activateWindow()

    def close_for_good(self) -> None:
        """Close the window instead of hiding it to the tray."""
        self._quitting = True
        self.close()

    def _quit(self) -> None:
        self.close_for_good()
        QApplication.quit()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 -- Qt's name
        """Hide to the tray, connection kept, where there is one; else close."""
        if self.close_to_tray and not self._quitting:
            event.ignore()
            self.hide()
            if self.tray is not None and QSystemTrayIcon.supportsMessages():
                self.tray.showMessage("mqtthub inbox", "Still receiving tasks here.")
            return
        event.accept()
