"""Render the doctor's checks for people (a checklist) or machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from mqtthub.doctor.checks import Check, Outcome

MARKS = {Outcome.PASS: "ok  ", Outcome.WARN: "WARN", Outcome.FAIL: "FAIL", Outcome.SKIP: "skip"}


def failed(checks: Sequence[Check]) -> bool:
    """True when any check failed."""
    return any(check.status is Outcome.FAIL for check in checks)


def as_json(checks: Sequence[Check]) -> str:
    """One JSON object: ``{"ok": bool, "checks": [...]}``."""
    return json.dumps({"ok": not failed(checks), "checks": [c.as_dict() for c in checks]}, indent=2)


def as_text(checks: Sequence[Check], *, target: str) -> str:
    """A checklist with the fix under each failure or warning."""
    lines = [f"mqtthub doctor: {target}", ""]
    for check in checks:
        lines += line(check)
    failures = sum(c.status is Outcome.FAIL for c in checks)
    warnings = sum(c.status is Outcome.WARN for c in checks)
    lines += ["", f"{failures} failed, {warnings} warnings" if failures or warnings else "all good"]
    return "\n".join(lines)


def line(check: Check) -> list[str]:
    """One check of the checklist: its line, and its fix under a failure or warning."""
    cause = f"{check.cause}: " if check.cause else ""
    lines = [f"  [{MARKS[check.status]}] {check.id:<13} {cause}{check.detail}"]
    if check.fix and check.status in (Outcome.FAIL, Outcome.WARN):
        lines.append(f"         {'':<13} fix: {check.fix}")
    return lines
