"""The inbox window under Qt's offscreen platform, against a real Mosquitto and serve.

``QT_QPA_PLATFORM=offscreen`` is set before Qt loads, so the tests need no screen.
pytest-qt's ``qtbot`` drives the window: it clicks real buttons and waits for conditions
while Qt's event loop runs.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mqtthub.config import load_settings
from mqtthub.inbox.app import close_inbox, open_inbox
from mqtthub.inbox.window import InboxWindow

RECIPIENT = "61016968"

OpenInbox = Callable[..., InboxWindow]


@pytest.fixture
def open_window(qapp: object, tmp_path: Path, clean_environment: Path) -> Iterator[OpenInbox]:
    """Open inbox windows for RECIPIENT on a broker port; all are closed after the test.
    No MQTTHUB_* variable or .env of the developer's reaches their settings.

    ``open_window(port, state_dir=...)``: each state folder stands for one computer.
    """
    windows: list[InboxWindow] = []

    def open_(port: int, state_dir: Path | None = None, **flags: str) -> InboxWindow:
        flags = {"broker_url": f"mqtt://127.0.0.1:{port}", **flags}
        window = open_inbox(
            settings=load_settings(**flags),
            flags=flags,
            recipient=RECIPIENT,
            state_dir=state_dir or tmp_path / "inbox-state",
        )
        windows.append(window)
        return window

    yield open_
    for window in windows:
        close_inbox(window)  # idempotent: some tests closed theirs already
