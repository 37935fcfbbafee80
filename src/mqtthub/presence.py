"""Device presence: a pure state machine with explainable transitions (no I/O).

A device is ``online`` or ``offline`` and every change has a reason:

* ``status_message``: the device published ``online`` / ``offline`` (with a ``ts``);
* ``last_will``: an ``offline`` without ``ts`` on the status topic, which is what a
  device's static last-will payload looks like when the broker publishes it;
* ``heartbeat_timeout``: no message within the device's deadline;
* ``activity``: any message from an offline device brings it back online;
* ``manual``: an operator set it.

Status messages carry time order: an ``offline`` older than the device's last activity,
or a retained one without ``ts`` replayed by the broker for a known device, does not flip
it (the heartbeat deadline still catches a device that is really gone). Every status
remembers when the event that decided it happened (``status_ts``: the device's ``ts`` for a
timed status message, else the receive time), and an event older than that never changes
it: with several workers, a device's messages can be handled out of order. A retained
reading or heartbeat registers a new device but does not claim it is online. The
heartbeat deadline is configured per device or globally, or learned: the median of recent
heartbeat intervals times ``missed_intervals``.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from mqtthub.messages import Accepted, Kind, Status

RECENT_INTERVALS = 8


class PresenceReason(StrEnum):
    """Why a device's status changed."""

    STATUS_MESSAGE = "status_message"
    LAST_WILL = "last_will"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    ACTIVITY = "activity"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class Transition:
    """One presence change, to log, store and stream."""

    device_id: str
    status: Status
    reason: PresenceReason
    at: float
    detail: str = ""


@dataclass(slots=True)
class DeviceState:
    """What the engine knows about one device."""

    status: Status
    last_activity: float
    heartbeat_timeout: float | None = None
    last_heartbeat: float | None = None
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_INTERVALS))
    learned_interval: float | None = None
    status_ts: float | None = None

    def is_newer(self, when: float) -> bool:
        """Whether an event at ``when`` may decide the status (not older than the last)."""
        return self.status_ts is None or when >= self.status_ts

    def decided(self, status: Status, when: float) -> None:
        """Set ``status``, decided by an event at ``when``."""
        self.status = status
        self.status_ts = when if self.status_ts is None else max(self.status_ts, when)

    def deadline(self, *, default_timeout: float | None, missed_intervals: int) -> float | None:
        """When the device counts as gone, or None when no timeout applies."""
        timeout = self.heartbeat_timeout or default_timeout
        if timeout is None and self.learned_interval is not None:
            timeout = self.learned_interval * missed_intervals
        return None if timeout is None else self.last_activity + timeout


class PresenceEngine:
    """Tracks every device's presence from messages and the clock."""

    def __init__(self, *, default_timeout: float | None = None, missed_intervals: int = 3) -> None:
        """Configure the rules.

        Args:
            default_timeout: seconds without a message before a device is offline; None
                means learn it from the heartbeat interval.
            missed_intervals: how many learned heartbeat intervals may be missed.
        """
        self.default_timeout = default_timeout
        self.missed_intervals = missed_intervals
        self.devices: dict[str, DeviceState] = {}

    def snapshot(self, device_id: str) -> DeviceState | None:
        """A copy of what the engine knows about ``device_id`` now (None: nothing)."""
        state = self.devices.get(device_id)
        if state is None:
            return None
        return DeviceState(  # not dataclasses.replace: this runs once per device per batch
            state.status,
            state.last_activity,
            state.heartbeat_timeout,
            state.last_heartbeat,
            deque(state.intervals, maxlen=state.intervals.maxlen),
            state.learned_interval,
            state.status_ts,
        )

    def restore(self, snapshots: dict[str, DeviceState | None]) -> None:
        """Put devices back as :meth:`snapshot` saw them (a batch that was not stored)."""
        for device_id, state in snapshots.items():
            if state is None:
                self.devices.pop(device_id, None)
            else:
                self.devices[device_id] = state

    def load(self, device_id: str, state: DeviceState) -> None:
        """Seed the engine with a device's stored state (at start-up, or from the database
        before each batch when several workers share the devices)."""
        self.devices[device_id] = state

    def observe(
        self, message: Accepted, *, received_at: float, retained: bool
    ) -> Transition | None:
        """Apply one accepted message; return the transition it causes, if any."""
        state = self.devices.get(message.device_id)
        if message.kind is Kind.STATUS and message.status is Status.OFFLINE:
            return self._offline_message(message, state, received_at=received_at, retained=retained)
        if retained and state is not None:
            return None  # a replayed old message says nothing about now
        if state is None:
            state = self.devices[message.device_id] = DeviceState(Status.OFFLINE, received_at)
            if retained and message.kind is not Kind.STATUS:
                return None  # registered, but a replayed reading says nothing about now
        self._record_activity(state, message.kind, received_at)
        when = message.ts if message.kind is Kind.STATUS and message.timed else received_at
        if not state.is_newer(when):
            return None  # handled late: the status was decided by something newer
        if state.status is Status.ONLINE:
            if message.kind is Kind.STATUS:
                state.decided(Status.ONLINE, when)
            return None
        state.decided(Status.ONLINE, when)
        reason = (
            PresenceReason.STATUS_MESSAGE
            if message.kind is Kind.STATUS
            else PresenceReason.ACTIVITY
        )
        return Transition(message.device_id, Status.ONLINE, reason, received_at, str(message.kind))

    def _offline_message(
        self, message: Accepted, state: DeviceState | None, *, received_at: float, retained: bool
    ) -> Transition | None:
        device_said_when = message.timed
        reason = PresenceReason.STATUS_MESSAGE if device_said_when else PresenceReason.LAST_WILL
        when = message.ts if device_said_when else received_at
        if state is None:
            self.devices[message.device_id] = DeviceState(
                Status.OFFLINE, received_at, status_ts=when
            )
            return Transition(message.device_id, Status.OFFLINE, reason, received_at, "first seen")
        if device_said_when:
            if message.ts < state.last_activity:
                return None  # late: the device was active after it said it went offline
        elif retained:
            return None  # a replay without a time cannot overrule a known device
        if not state.is_newer(when):
            return None  # handled late: the status was decided by something newer
        if state.status is Status.OFFLINE:
            state.decided(Status.OFFLINE, when)
            return None
        state.decided(Status.OFFLINE, when)
        return Transition(message.device_id, Status.OFFLINE, reason, received_at)

    def _record_activity(self, state: DeviceState, kind: Kind, received_at: float) -> None:
        state.last_activity = max(state.last_activity, received_at)
        if kind is Kind.HEARTBEAT:
            if state.last_heartbeat is not None and received_at > state.last_heartbeat:
                state.intervals.append(received_at - state.last_heartbeat)
                if len(state.intervals) >= 2:
                    state.learned_interval = statistics.median(state.intervals)
            state.last_heartbeat = received_at

    def expire(self, now: float, device_ids: Iterable[str] | None = None) -> list[Transition]:
        """Mark every online device (of ``device_ids``, if given) whose deadline passed as
        offline."""
        transitions = []
        states = (
            self.devices.items()
            if device_ids is None
            else [(i, self.devices[i]) for i in device_ids if i in self.devices]
        )
        for device_id, state in states:
            if state.status is not Status.ONLINE:
                continue
            deadline = state.deadline(
                default_timeout=self.default_timeout, missed_intervals=self.missed_intervals
            )
            if deadline is not None and now >= deadline:
                state.decided(Status.OFFLINE, now)
                silent = now - state.last_activity
                transitions.append(
                    Transition(
                        device_id,
                        Status.OFFLINE,
                        PresenceReason.HEARTBEAT_TIMEOUT,
                        now,
                        f"no message for {silent:.1f} s "
                        f"(deadline {deadline - state.last_activity:.1f} s)",
                    )
                )
        return transitions

    def set_manual(self, device_id: str, status: Status, now: float) -> Transition | None:
        """An operator sets a device's status."""
        state = self.devices.get(device_id)
        if state is None or state.status is status:
            return None
        state.decided(status, now)
        if status is Status.ONLINE:
            state.last_activity = now
        return Transition(device_id, status, PresenceReason.MANUAL, now)
