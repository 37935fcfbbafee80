"""Unit tests for the doctor's report: the checklist, the JSON, and the order of checks.

``_finish`` (mqtthub.doctor.run) decides which checks a report lists as skipped and in
what order; report.py renders the result for people (text) and for scripts (JSON).
"""

from __future__ import annotations

import json

import pytest

from mqtthub.doctor import report
from mqtthub.doctor.checks import Cause, Check, Outcome, passed, skipped
from mqtthub.doctor.run import OPTIONAL, ORDER, DoctorOptions, _finish

TARGET = "mqtt://hub:***@broker.example:1883"

CONFIG_OK = passed("config", "broker=mqtt://hub:***@broker.example:1883, tls=no")
DNS_OK = passed("dns", "broker.example -> 10.0.0.5")
TCP_REFUSED = Check(
    "tcp",
    Outcome.FAIL,
    Cause.CONNECTION_REFUSED,
    "connection to broker.example:1883 refused: nothing listens on port 1883",
    "point MQTTHUB_BROKER_URL at the port the broker listens on",
)
CERT_SOON = Check(
    "tls",
    Outcome.WARN,
    None,
    "certificate expires in 12 days; subject CN=broker.example",
    "renew the broker certificate",
)


def basic_passes() -> list[Check]:
    """The five basic layers passing, in the order run_doctor appends them."""
    return [
        passed("config", "broker=mqtt://broker.example:1883"),
        passed("dns", "broker.example -> 10.0.0.5"),
        passed("tcp", "broker.example:1883 accepts connections"),
        passed("tls", "plain MQTT on both sides (no TLS)"),
        passed("mqtt_connect", "connected with MQTT 5"),
        passed("subscribe", "granted devices/+/+ (QoS 1)"),
        passed("publish", "published to devices/mqtthub-doctor/heartbeat"),
    ]


# --- JSON -----------------------------------------------------------------------------


def test_json_has_ok_and_the_checks_in_order() -> None:
    """Scripts get {"ok": ..., "checks": [...]} with each check as a plain object."""
    data = json.loads(report.as_json([CONFIG_OK, DNS_OK, TCP_REFUSED]))
    assert set(data) == {"ok", "checks"}
    assert [c["id"] for c in data["checks"]] == ["config", "dns", "tcp"]
    assert data["checks"][2] == {
        "id": "tcp",
        "status": "fail",
        "cause": "connection_refused",
        "detail": "connection to broker.example:1883 refused: nothing listens on port 1883",
        "fix": "point MQTTHUB_BROKER_URL at the port the broker listens on",
    }
    assert data["checks"][0]["cause"] is None
    assert data["checks"][0]["fix"] is None


@pytest.mark.parametrize(
    ("checks", "ok"),
    [
        ([CONFIG_OK, DNS_OK], True),
        ([CONFIG_OK, CERT_SOON], True),
        ([CONFIG_OK, skipped("pipeline", "not requested (--api URL)")], True),
        ([CONFIG_OK, TCP_REFUSED, skipped("tls", "skipped: tcp failed")], False),
        ([CERT_SOON, TCP_REFUSED], False),
        ([], True),
    ],
    ids=["all-pass", "warning", "skipped", "failure", "warning-and-failure", "empty"],
)
def test_json_ok_is_false_exactly_when_a_check_failed(checks: list[Check], ok: bool) -> None:
    """Warnings and skips keep ok true; any failure makes it false."""
    assert json.loads(report.as_json(checks))["ok"] is ok
    assert report.failed(checks) is not ok


# --- text -----------------------------------------------------------------------------


def test_text_checklist_shows_marks_causes_and_fixes() -> None:
    """One line per check, the cause before the detail, the fix indented below it."""
    text = report.as_text(
        [CONFIG_OK, DNS_OK, TCP_REFUSED, skipped("tls", "skipped: tcp failed")], target=TARGET
    )
    assert text.splitlines() == [
        f"mqtthub doctor: {TARGET}",
        "",
        "  [ok  ] config        broker=mqtt://hub:***@broker.example:1883, tls=no",
        "  [ok  ] dns           broker.example -> 10.0.0.5",
        "  [FAIL] tcp           connection_refused: connection to broker.example:1883 refused: "
        "nothing listens on port 1883",
        "                       fix: point MQTTHUB_BROKER_URL at the port the broker listens on",
        "  [skip] tls           skipped: tcp failed",
        "",
        "1 failed, 0 warnings",
    ]


def test_warnings_get_a_fix_and_count_in_the_summary() -> None:
    """A warning shows its fix too; the summary counts it."""
    text = report.as_text([CONFIG_OK, CERT_SOON], target=TARGET)
    assert "  [WARN] tls           certificate expires in 12 days" in text
    assert "fix: renew the broker certificate" in text
    assert text.endswith("\n0 failed, 1 warnings")


def test_fix_is_shown_only_under_failures_and_warnings() -> None:
    """A fix attached to a passing or skipped check is not printed."""
    checks = [
        Check("config", Outcome.PASS, None, "fine", "should not be printed (pass)"),
        Check("dns", Outcome.SKIP, None, "skipped", "should not be printed (skip)"),
        TCP_REFUSED,
        CERT_SOON,
    ]
    fixes = [line.strip() for line in report.as_text(checks, target=TARGET).splitlines()]
    fixes = [line for line in fixes if line.startswith("fix:")]
    assert fixes == [f"fix: {TCP_REFUSED.fix}", f"fix: {CERT_SOON.fix}"]


def test_warning_without_a_fix_prints_no_fix_line() -> None:
    """A warning that has nothing to fix (no devices yet) has no empty 'fix:' line."""
    quiet = Check("traffic", Outcome.WARN, None, "0 messages; no devices registered yet")
    assert "fix:" not in report.as_text([quiet], target=TARGET)


def test_all_good_summary_when_nothing_failed_or_warned() -> None:
    """Passes and skips only: the last line says all good."""
    text = report.as_text(
        [*basic_passes(), skipped("traffic", "not requested (--expect-traffic SECONDS)")],
        target=TARGET,
    )
    assert text.splitlines()[-1] == "all good"
    assert "fix:" not in text


def test_summary_counts_every_failure_and_warning() -> None:
    """Several failures and warnings are counted separately."""
    other_failure = Check("dns", Outcome.FAIL, Cause.DNS_FAILURE, "no such host", "fix the host")
    text = report.as_text([other_failure, TCP_REFUSED, CERT_SOON], target=TARGET)
    assert text.splitlines()[-1] == "2 failed, 1 warnings"


def test_every_outcome_has_a_mark_of_equal_width() -> None:
    """The checklist columns line up whatever the verdict."""
    assert set(report.MARKS) == set(Outcome)
    assert {len(mark) for mark in report.MARKS.values()} == {4}


# --- which checks a report lists, and in what order (run._finish) ----------------------


def test_first_failure_skips_every_later_layer_naming_it() -> None:
    """After tcp fails, every later check is listed as skipped because tcp failed."""
    checks = _finish([CONFIG_OK, DNS_OK, TCP_REFUSED], DoctorOptions(), "tcp")
    assert [c.id for c in checks] == list(ORDER)
    later = checks[3:]
    assert {c.status for c in later} == {Outcome.SKIP}
    assert {c.detail for c in later} == {"skipped: tcp failed"}
    assert not report.failed(later)


def test_config_failure_skips_everything_else() -> None:
    """An invalid configuration is the only real line; the rest are skipped."""
    invalid = Check("config", Outcome.FAIL, Cause.CONFIG_INVALID, "MQTTHUB_KEEPALIVE: bad", "x")
    checks = _finish([invalid], DoctorOptions(soak=30.0), "config")
    assert [c.id for c in checks] == list(ORDER)
    assert [c.status for c in checks] == [Outcome.FAIL] + [Outcome.SKIP] * (len(ORDER) - 1)


def test_unrequested_optional_checks_say_how_to_request_them() -> None:
    """Without --soak, --expect-traffic or --api those checks are skipped with the flag."""
    checks = _finish(basic_passes(), DoctorOptions(), None)
    assert [c.id for c in checks] == list(ORDER)
    by_id = {c.id: c for c in checks}
    for check_id, why in OPTIONAL.items():
        assert (by_id[check_id].status, by_id[check_id].detail) == (Outcome.SKIP, why)
    assert "--soak" in by_id["stability"].detail
    assert "--expect-traffic" in by_id["traffic"].detail
    assert "--api" in by_id["pipeline"].detail


def test_requested_optional_checks_are_sorted_into_report_order() -> None:
    """run_doctor appends traffic and pipeline before stability; the report reorders them."""
    ran = [
        *basic_passes(),
        passed("traffic", "42 messages from 3 devices in 30 s"),
        passed("pipeline", "http://127.0.0.1:8000 stored the probe reading"),
        passed("stability", "connected for 60 s without a drop"),
    ]
    options = DoctorOptions(soak=60.0, expect_traffic=30.0, api="http://127.0.0.1:8000")
    checks = _finish(list(ran), options, None)
    assert [c.id for c in checks] == list(ORDER)
    assert all(c.status is Outcome.PASS for c in checks)


def test_only_the_unrequested_optional_checks_are_skipped() -> None:
    """With only --expect-traffic, stability and pipeline are skipped, traffic is real."""
    ran = [*basic_passes(), passed("traffic", "42 messages from 3 devices in 30 s")]
    checks = _finish(list(ran), DoctorOptions(expect_traffic=30.0), None)
    statuses = {c.id: c.status for c in checks}
    assert statuses["traffic"] is Outcome.PASS
    assert statuses["stability"] is Outcome.SKIP
    assert statuses["pipeline"] is Outcome.SKIP
    assert len(checks) == len(ORDER)


def test_finished_report_renders_and_serialises() -> None:
    """A finished report flows into both renderers: failure in JSON, fix in the text."""
    checks = _finish([CONFIG_OK, DNS_OK, TCP_REFUSED], DoctorOptions(), "tcp")
    assert json.loads(report.as_json(checks))["ok"] is False
    text = report.as_text(checks, target=TARGET)
    assert text.count("[skip]") == len(ORDER) - 3
    assert text.splitlines()[-1] == "1 failed, 0 warnings"
