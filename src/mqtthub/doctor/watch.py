"""``mqtthub doctor --watch SECONDS``: repeat the checklist, report only what changed.

For a cron job or a systemd timer: the first round prints the whole checklist, later
rounds only the checks whose status or cause changed, and the first round with a failure
ends the watch with exit status 1.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from mqtthub.doctor.checks import Check
from mqtthub.doctor.report import as_text, failed, line


def changes(previous: Mapping[str, Check] | None, current: Sequence[Check]) -> list[Check]:
    """The checks of ``current`` whose status or cause differs from ``previous`` (all of
    them on the first round)."""
    if previous is None:
        return list(current)
    return [
        check
        for check in current
        if (old := previous.get(check.id)) is None
        or (old.status, old.cause) != (check.status, check.cause)
    ]


def render_round(
    changed: Sequence[Check], checks: Sequence[Check], *, first: bool, target: str, at: float
) -> str:
    """The text for one round: the whole checklist first, then only the changes."""
    if first:
        return as_text(checks, target=target)
    stamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    verdict = "failed" if failed(checks) else "ok"
    lines = [f"{stamp} {len(changed)} changed ({verdict}):"]
    for check in changed:
        lines += line(check)
    return "\n".join(lines)


def render_json_round(changed: Sequence[Check], checks: Sequence[Check], *, at: float) -> str:
    """One JSON line per round: ``{"at": ..., "ok": ..., "changes": [...]}``."""
    return json.dumps(
        {"at": at, "ok": not failed(checks), "changes": [check.as_dict() for check in changed]}
    )


Runner = Callable[[], Any]  # an awaitable of (checks, target)


async def watch(
    run: Runner, seconds: float, emit: Callable[[str], None], *, as_json: bool = False
) -> int:
    """Run the checklist every ``seconds`` until a check fails; return exit status 1.

    ``run`` is called each round (``run_doctor`` with the options); ``emit`` prints.
    """
    previous: dict[str, Check] | None = None
    while True:
        started = time.monotonic()
        checks, target = await run()
        changed = changes(previous, checks)
        if changed:
            at = time.time()
            if as_json:
                emit(render_json_round(changed, checks, at=at))
            else:
                emit(render_round(changed, checks, first=previous is None, target=target, at=at))
        if failed(checks):
            return 1
        previous = {check.id: check for check in checks}
        # The next round starts ``seconds`` after this one started: a schedule, not a wait
        # for a condition.
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
