"""The Qt binding itself stays sound under the calls the inbox makes all day long.

PySide6 6.12.0 lost a reference to ``None`` on every call that returns nothing (a
``QLabel.setText``) and to ``True``/``False`` on every signal emitted across threads with
a boolean: the window's 4-per-second status refresh would bring down the interpreter
("deallocating None") after some hours. ``pyproject.toml`` keeps it out; this test says
so loudly if a release with such a bug gets in again.
"""

from __future__ import annotations

import os
import subprocess
import sys

CALLS = 200_000  # more than the references None and the booleans hold at start

PROBE = f"""
import sys
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QLabel

class Signals(QObject):
    sent = Signal(str, str, bool)
    stopped = Signal(object)

app = QApplication([])
label, signals, got = QLabel(), Signals(), []
signals.sent.connect(lambda *args: got.append(args[2]))
signals.stopped.connect(lambda error: got.append(error))
before = sys.getrefcount(None), sys.getrefcount(True)
for _ in range({CALLS}):
    label.setText("Connected")
    signals.sent.emit("task", "done", True)
    signals.stopped.emit(None)
    got.clear()
after = sys.getrefcount(None), sys.getrefcount(True)
print(before[0] - after[0], before[1] - after[1])
"""


def test_calls_and_signals_keep_the_references_of_none_and_booleans() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"the Qt binding crashed the interpreter: {result.stderr}"
    lost_none, lost_true = (int(n) for n in result.stdout.split())
    assert lost_none < 100, f"{lost_none} references to None lost in {CALLS} calls"
    assert lost_true < 100, f"{lost_true} references to True lost in {CALLS} signals"
