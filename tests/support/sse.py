"""Read mqtthub's live stream (``/api/stream``, Server-Sent Events) from a test."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["EventStream"]


class EventStream:
    """``/api/stream`` read on a thread of its own while the test goes on.

    ``with EventStream(url, until=...) as stream:`` returns once the stream is open; the
    events arrive in :attr:`events` as ``(kind, data)`` until ``until(stream)`` holds or
    the ``with`` block has waited ``timeout`` seconds for it after its body (``timeout``
    is also the longest silence between two events).
    """

    def __init__(
        self,
        base_url: str,
        *,
        until: Callable[[EventStream], bool],
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Prepare the reader; entering the ``with`` block opens the stream."""
        self.events: list[tuple[str, Any]] = []
        self._url = base_url + "/api/stream"
        self._until = until
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._opened = threading.Event()
        self._closing = threading.Event()
        #: The stream's HTTP status (200 once open).
        self.status: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)

    def of(self, kind: str) -> list[Any]:
        """The data of the events of ``kind`` so far (``device``, ``stats``, ...)."""
        return [data for event, data in list(self.events) if event == kind]

    def join(self, timeout: float) -> None:
        """Wait until ``until`` held (or the stream ended)."""
        self._thread.join(timeout)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._opened.wait(10):
            raise TimeoutError(f"{self._url} did not open within 10 s")
        if self.status != 200:
            raise AssertionError(f"{self._url} answered {self.status}")
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.join(self._timeout)
        self._closing.set()  # the next event ends the reader (daemon thread) for good

    def _read(self) -> None:
        with httpx.stream("GET", self._url, headers=self._headers, timeout=self._timeout) as rsp:
            self.status = rsp.status_code
            self._opened.set()
            kind = ""
            for line in rsp.iter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    self.events.append((kind, json.loads(line[6:])))
                    if self._until(self) or self._closing.is_set():
                        return
