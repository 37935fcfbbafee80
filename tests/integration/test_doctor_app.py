"""`mqtthub doctor --recipient`: subscribe and publish checked as a task app would, against
a real Mosquitto with a password file and an ACL that gives the app user only its tasks.

The inbox's Check connection runs these checks; an app user whose ACL allows only
``mqtt_app/tasks/<recipient>/#`` must pass them, where the serve checks (the device
topics) would blame the ACL for something the app never does.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from mqtthub.doctor.run import DoctorOptions
from support.doctor import doctor_checks, doctor_cli
from support.mosquitto import MosquittoBroker, MosquittoFactory

RECIPIENT = "61016968"
TASKS = f"mqtt_app/tasks/{RECIPIENT}"
USERS = {"app": "pw-app"}


pytestmark = pytest.mark.usefixtures("clean_environment")


def app_url(broker: MosquittoBroker) -> str:
    return f"mqtt://app:pw-app@127.0.0.1:{broker.port}"


def doctor(options: DoctorOptions, broker: MosquittoBroker) -> dict[str, dict[str, Any]]:
    """Run the doctor in-process as user ``app``; its checks by id."""
    return doctor_checks({"broker_url": app_url(broker)}, options)


def checks_of(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in json.loads(result.stdout)["checks"]}


@pytest.mark.parametrize("version", ["auto", "3.1.1"])
def test_an_app_user_passes_as_the_app(mosquitto_factory: MosquittoFactory, version: str) -> None:
    """ACL: `app` may read and write its own task topics only. `--recipient` passes
    subscribe and publish, the probe coming back through `+/ack`."""
    broker = mosquitto_factory(users=USERS, acl=f"user app\ntopic readwrite {TASKS}/#\n")
    env = {"MQTTHUB_MQTT_VERSION": version}
    as_app = doctor_cli(
        "--json", "--recipient", RECIPIENT, "--broker-url", app_url(broker), env=env
    )
    assert as_app.returncode == 0, as_app.stdout + as_app.stderr
    checks = checks_of(as_app)
    assert [checks[k]["status"] for k in ("mqtt_connect", "subscribe", "publish")] == ["pass"] * 3
    assert checks["subscribe"]["detail"].startswith(
        f"granted {TASKS}/+ (QoS 1), {TASKS}/+/ack (QoS 1); probe on {TASKS}/mqtthub-doctor-"
    )
    assert checks["subscribe"]["detail"].endswith("/ack delivered")
    assert checks["publish"]["detail"].startswith(f"published to {TASKS}/mqtthub-doctor-")
    assert f"checked_as=task app of {RECIPIENT}" in checks["config"]["detail"]


def test_the_same_app_user_checked_as_serve_is_blamed_for_the_device_topics(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """Plain doctor with the app's credentials checks serve's device topics, which the
    app never reads. On MQTT 3.1.1 (a refused publish is silent) subscribe fails with
    acl_denied_subscribe; on MQTT 5 the refused probe (PUBACK 0x87) leaves subscribe
    unconfirmed (warn) and publish warns: what Check connection used to show."""
    broker = mosquitto_factory(users=USERS, acl=f"user app\ntopic readwrite {TASKS}/#\n")
    on_311 = doctor_cli(
        "--json", "--broker-url", app_url(broker), env={"MQTTHUB_MQTT_VERSION": "3.1.1"}
    )
    assert on_311.returncode == 1, on_311.stdout + on_311.stderr
    subscribe = checks_of(on_311)["subscribe"]
    assert (subscribe["status"], subscribe["cause"]) == ("fail", "acl_denied_subscribe"), subscribe
    assert "the device topics" in subscribe["fix"]
    on_5 = checks_of(doctor_cli("--json", "--broker-url", app_url(broker)))
    assert (on_5["subscribe"]["status"], on_5["subscribe"]["cause"]) == ("warn", None)
    assert (on_5["publish"]["status"], on_5["publish"]["cause"]) == ("warn", "acl_denied_publish")
    assert "devices/mqtthub-doctor/heartbeat" in on_5["publish"]["detail"]


def test_an_app_that_may_not_write_receipts_fails_publish(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """ACL: `app` may read its task topics but not write: the receipt probe is refused
    (PUBACK 0x87), a failure naming the receipts and the ACL line for them."""
    broker = mosquitto_factory(users=USERS, acl=f"user app\ntopic read {TASKS}/#\n")
    checks = doctor(DoctorOptions(recipient=RECIPIENT), broker)
    publish = checks["publish"]
    assert (publish["status"], publish["cause"]) == ("fail", "acl_denied_publish"), publish
    assert "PUBACK 0x87" in publish["detail"]
    assert "receipts (delivered, seen, done)" in publish["detail"]
    assert f"`topic write {TASKS}/+/ack` under `user app`" in publish["fix"]
    assert checks["subscribe"]["status"] == "warn"


def test_the_probe_comes_back_through_the_ack_filter_only(
    mosquitto_factory: MosquittoFactory,
) -> None:
    """ACL: `app` may read its tasks (`+`) but not the receipts (`+/ack`), and write the
    receipts. Mosquitto grants both filters and drops the receipt: the probe, which only
    `+/ack` matches, never arrives, and the fix names the app's filters."""
    acl = f"user app\ntopic read {TASKS}/+\ntopic write {TASKS}/+/ack\n"
    broker = mosquitto_factory(users=USERS, acl=acl)
    checks = doctor(DoctorOptions(recipient=RECIPIENT), broker)
    subscribe = checks["subscribe"]
    assert (subscribe["status"], subscribe["cause"]) == ("fail", "acl_denied_subscribe"), subscribe
    assert "never arrived" in subscribe["detail"]
    assert subscribe["fix"] == (
        f"allow app to read the task topics of {RECIPIENT} in the broker's ACL (Mosquitto: "
        f"`topic read {TASKS}/+` and `topic read {TASKS}/+/ack` under `user app`)"
    )
    assert checks["publish"]["status"] == "pass"


def test_cli_recipient_usage_errors() -> None:
    """A recipient of several levels, or --payload-size with --recipient: exit status 2."""
    bad = doctor_cli("--recipient", "a/b")
    assert bad.returncode == 2
    assert "one topic level" in bad.stderr
    both = doctor_cli("--recipient", RECIPIENT, "--payload-size", "100")
    assert both.returncode == 2
    assert "not with --recipient" in both.stderr
    assert "--recipient" in " ".join(doctor_cli("--help").stdout.split())
