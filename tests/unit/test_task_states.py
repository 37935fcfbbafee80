"""A task's receipt rules: queued -> delivered -> seen -> done, never backwards."""

from __future__ import annotations

import pytest

from mqtthub.downlink.service import _receipt_state
from mqtthub.downlink.states import (
    RECEIPT_STATES,
    TaskState,
    receipt_sources,
)

QUEUED, DELIVERED, SEEN, DONE, EXPIRED = (
    TaskState.QUEUED,
    TaskState.DELIVERED,
    TaskState.SEEN,
    TaskState.DONE,
    TaskState.EXPIRED,
)


def test_each_receipt_moves_a_task_from_exactly_the_states_before_it() -> None:
    assert receipt_sources(DELIVERED) == {QUEUED}
    assert receipt_sources(SEEN) == {QUEUED, DELIVERED}
    assert receipt_sources(DONE) == {QUEUED, DELIVERED, SEEN}
    assert {DELIVERED, SEEN, DONE} == RECEIPT_STATES


@pytest.mark.parametrize("state", [QUEUED, EXPIRED])
def test_a_receipt_cannot_report_queued_or_expired(state: TaskState) -> None:
    with pytest.raises(ValueError, match="cannot report"):
        receipt_sources(state)


# (current state, reported by the receipt) -> the state after it; every combination.
RULES = {
    (QUEUED, DELIVERED): DELIVERED,
    (QUEUED, SEEN): SEEN,
    (QUEUED, DONE): DONE,
    (DELIVERED, DELIVERED): DELIVERED,
    (DELIVERED, SEEN): SEEN,
    (DELIVERED, DONE): DONE,
    (SEEN, DELIVERED): SEEN,  # a late delivered receipt changes nothing
    (SEEN, SEEN): SEEN,
    (SEEN, DONE): DONE,
    (DONE, DELIVERED): DONE,
    (DONE, SEEN): DONE,
    (DONE, DONE): DONE,
    (EXPIRED, DELIVERED): EXPIRED,  # an expired task takes no receipt
    (EXPIRED, SEEN): EXPIRED,
    (EXPIRED, DONE): EXPIRED,
}


def test_the_rules_cover_every_state_and_receipt() -> None:
    assert set(RULES) == {(state, reported) for state in TaskState for reported in RECEIPT_STATES}


@pytest.mark.parametrize(("current", "reported"), sorted(RULES))
def test_a_receipt_moves_a_task_only_forward(current: TaskState, reported: TaskState) -> None:
    """What the store's UPDATE does: the reported state where the current one is among
    the receipt's sources, else nothing changes."""
    after = reported if current in receipt_sources(reported) else current
    assert after == RULES[current, reported]


@pytest.mark.parametrize(
    ("payload", "state"),
    [
        (b'{"state": "seen"}', SEEN),
        (b'{"state": "done"}', DONE),
        (b'{"state": "delivered"}', DELIVERED),
        (b"", DELIVERED),
        (b"{}", DELIVERED),
        (b'{"state": "queued"}', DELIVERED),  # not a receipt's state: a plain receipt
        (b'{"state": "expired"}', DELIVERED),
        (b'{"state": "SEEN"}', DELIVERED),
        (b'{"state": ["seen"]}', DELIVERED),
        (b'["seen"]', DELIVERED),
        (b"seen", DELIVERED),
    ],
)
def test_receipt_payloads(payload: bytes, state: TaskState) -> None:
    assert _receipt_state(payload) is state
