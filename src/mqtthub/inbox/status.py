"""What the inbox's status bar says about the broker link (pure, no I/O).

A person reads it, so it speaks in words: connected since when, or why not (another copy
took over the client id, the broker cannot be reached, not authorized, a TLS problem) and
in how many seconds the next attempt starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from mqtthub.transport.base import LinkPhase, LinkState
from mqtthub.transport.history import ConnectionEvent, LinkEvent

__all__ = ["LinkStatus", "describe_link", "reason_in_words"]


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One status-bar line and whether the link is up."""

    text: str
    connected: bool


_WORDS = {
    "client_id_conflict": "another program connected with this window's client id and took "
    "over the connection",
    "session_taken_over": "another program took over this window's session",
    "connection_refused": "the broker cannot be reached (nothing listens at {broker})",
    "connection_timeout": "the broker cannot be reached ({broker} does not answer)",
    "network_error": "the broker cannot be reached ({broker})",
    "connection_lost": "the connection to the broker was lost",
    "keepalive_timeout": "the broker heard nothing from this computer for too long",
    "server_shutting_down": "the broker is shutting down",
    "server_unavailable": "the broker is unavailable",
    "server_busy": "the broker is busy",
    "bad_credentials": "not authorized: the broker refused the user name or password",
    "not_authorized": "not authorized: the broker refused the user name or password",
    "probable_bad_credentials": "not authorized: the broker closed the connection, most "
    "likely because of the user name or password",
    "banned": "not authorized: the broker has banned this client",
    "closed_before_connack": "the broker closed the connection without answering",
    "unsupported_protocol": "the broker does not speak this MQTT version",
}


def reason_in_words(reason: str | None, *, broker: str, detail: str = "") -> str:
    """Why the link is down, as a sentence fragment for people.

    Args:
        reason: the transport's reason name (``connection_refused``, ...), if any.
        broker: the broker's address, password masked.
        detail: the transport's own sentence, used for TLS problems and unknown reasons.
    """
    if reason is None:
        return "not connected yet"
    if reason.startswith(("tls", "client_cert")):
        return f"TLS problem: {detail}" if detail else "TLS problem"
    words = _WORDS.get(reason)
    if words is not None:
        return words.format(broker=broker)
    return detail or reason.replace("_", " ")


def describe_link(
    state: LinkState,
    *,
    now: float,
    next_attempt_at: float | None,
    last_event: ConnectionEvent | None,
    taken_over: bool = False,
) -> LinkStatus:
    """The status-bar line for the link ``state`` at ``now``.

    Args:
        state: the transport's current phase, reason and since when.
        now: the current time (epoch seconds).
        next_attempt_at: when the next connection attempt starts, while waiting for it.
        last_event: the latest connection event, whose sentence explains TLS problems.
        taken_over: the drops so far show another client using this client id (a broker
            that closes the connection without saying why: see
            :class:`~mqtthub.transport.history.ConnectionHistory`).
    """
    if state.phase is LinkPhase.CONNECTED:
        since = datetime.fromtimestamp(state.since).strftime("%H:%M:%S")
        text = f"Connected to {state.broker} since {since}"
        if taken_over:
            text += f"; but {_WORDS['client_id_conflict']} several times"
        return LinkStatus(text, connected=True)
    if state.phase in (LinkPhase.STARTING, LinkPhase.CONNECTING):
        if last_event is None or last_event.event is LinkEvent.CONNECTED:
            return LinkStatus(f"Connecting to {state.broker}…", connected=False)
        last = "client_id_conflict" if taken_over else last_event.reason
        why = reason_in_words(last, broker=state.broker, detail=last_event.detail)
        return LinkStatus(f"Connecting to {state.broker}… (last attempt: {why})", False)
    detail = last_event.detail if last_event and last_event.reason == state.reason else ""
    now_reason = "client_id_conflict" if taken_over else state.reason
    why = reason_in_words(now_reason, broker=state.broker, detail=detail)
    if next_attempt_at is None:
        return LinkStatus(f"Disconnected: {why}; reconnecting…", connected=False)
    seconds = max(0, math.ceil(next_attempt_at - now))
    return LinkStatus(f"Disconnected: {why}; next attempt in {seconds} s", connected=False)
