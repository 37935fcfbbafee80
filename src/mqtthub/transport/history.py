"""Connection history and the client-id-conflict diagnosis (pure, no I/O).

MQTT 5 brokers say it outright: DISCONNECT 0x8E "session taken over" means another
client connected with our client id. MQTT 3.1.1 brokers just close the socket, so the
pattern gives it away: three or more drops, each within 30 s of a successful CONNACK,
each followed by an immediately successful reconnect.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

SHORT_SESSION_S = 30.0
CONFLICT_DROPS = 3
KEEP_EVENTS = 50


class LinkEvent(StrEnum):
    """What happened to the broker connection."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    REFUSED = "refused"  # a CONNACK with a failure code
    FAILED = "failed"  # no connection, or no CONNACK
    SESSION_LOST = "session_lost"  # a reconnect found no session although one was kept


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """One thing that happened to the broker connection.

    Attributes:
        at: epoch seconds.
        event: ``connected``, ``disconnected``, ``refused`` or ``failed`` (no CONNACK).
        reason: a stable reason name (``client_id_conflict``, ``connection_lost``, ...).
        protocol: ``MQTT 5`` or ``MQTT 3.1.1`` when known.
        reason_code: the MQTT reason code, when the broker sent one.
        lasted: for ``disconnected``, how long the connection had been up, in seconds.
        detail: a sentence for people.
    """

    at: float
    event: LinkEvent
    reason: str
    protocol: str | None = None
    reason_code: int | None = None
    lasted: float | None = None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A conclusion drawn from the connection history."""

    reason: str
    message: str
    evidence: tuple[ConnectionEvent, ...]


class ConnectionHistory:
    """The last events, counts by reason, and the client-id-conflict detector."""

    def __init__(self, client_id: str) -> None:
        """Track the history of the connection using ``client_id``."""
        self.client_id = client_id
        self.events: deque[ConnectionEvent] = deque(maxlen=KEEP_EVENTS)
        self.counts: Counter[str] = Counter()
        self.diagnosis: Diagnosis | None = None
        self._short_drops: list[ConnectionEvent] = []
        self._awaiting_reconnect: ConnectionEvent | None = None
        #: The last time the broker forgot a session it should have kept.
        self.session_lost: ConnectionEvent | None = None

    def add(self, event: ConnectionEvent) -> Diagnosis | None:
        """Record an event; return a diagnosis the first time one is reached."""
        self.events.append(event)
        if event.event != LinkEvent.CONNECTED:
            self.counts[event.reason] += 1
        if event.event == LinkEvent.SESSION_LOST:
            self.session_lost = event  # part of a connect: the drop pattern goes on
            return None
        if event.reason == "client_id_conflict":
            return self._diagnose(
                "client_id_conflict",
                f"another client connected with client id {self.client_id} "
                "(MQTT 5 DISCONNECT 0x8E, session taken over)",
                (event,),
            )
        return self._track_pattern(event)

    def _track_pattern(self, event: ConnectionEvent) -> Diagnosis | None:
        if event.event == LinkEvent.DISCONNECTED:
            short = event.lasted is not None and event.lasted <= SHORT_SESSION_S
            self._awaiting_reconnect = event if short and event.reason_code is None else None
            if not short:
                self.stable()
            return None
        if event.event == LinkEvent.CONNECTED:
            if self._awaiting_reconnect is not None:
                self._short_drops.append(self._awaiting_reconnect)
                self._awaiting_reconnect = None
            if len(self._short_drops) >= CONFLICT_DROPS:
                drops = tuple(self._short_drops[-CONFLICT_DROPS:])
                spans = ", ".join(f"{d.lasted:.1f} s" for d in drops)
                return self._diagnose(
                    "probable_client_id_conflict",
                    f"the broker dropped the connection {len(self._short_drops)} times shortly "
                    f"after accepting it (connections lasted {spans}) and accepted each "
                    f"reconnect at once: probably another client uses client id "
                    f"{self.client_id}",
                    drops,
                )
            return None
        # A failed or refused attempt breaks the "immediately successful reconnect".
        self._awaiting_reconnect = None
        self._short_drops.clear()
        return None

    def _diagnose(
        self, reason: str, message: str, evidence: tuple[ConnectionEvent, ...]
    ) -> Diagnosis | None:
        first_time = self.diagnosis is None or self.diagnosis.reason != reason
        self.diagnosis = Diagnosis(reason, message, evidence)
        return self.diagnosis if first_time else None

    def stable(self) -> None:
        """A connection stayed up for a while: forget an earlier diagnosis."""
        self.diagnosis = None
        self._short_drops.clear()

    def as_dict(self) -> dict[str, Any]:
        """Events (newest first), counts by reason and the diagnosis, as JSON-ready data."""
        diagnosis = self.diagnosis
        return {
            "client_id": self.client_id,
            "events": [event.as_dict() for event in reversed(self.events)],
            "counts": dict(self.counts),
            "session_lost": None if self.session_lost is None else self.session_lost.as_dict(),
            "diagnosis": None
            if diagnosis is None
            else {
                "reason": diagnosis.reason,
                "message": diagnosis.message,
                "evidence": [event.as_dict() for event in diagnosis.evidence],
            },
        }
