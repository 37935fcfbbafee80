"""The doctor as a task app (``mqtthub doctor --recipient``, the inbox's Check connection).

The subscribe and publish rules name what was checked ("the task topics of 61016968"),
give Mosquitto ACL lines for the app's own filters, and fail a refused receipt: an app
whose receipts never reach the server is broken, where serve's refused probe is a warning.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from mqtthub.doctor.checks import Cause, Outcome
from mqtthub.doctor.mqtt_rules import DeliveryEvidence, check_publish, check_subscribe
from mqtthub.doctor.network_rules import check_config
from mqtthub.doctor.probes import app_delivery_plan
from mqtthub.doctor.run import load_config
from mqtthub.downlink.topics import Route, route
from mqtthub.inbox.tasks import state_of_receipt
from mqtthub.profiles import topic_matches
from support.doctor import delivery

V311 = "MQTT 3.1.1"
RECIPIENT = "61016968"
TASKS = f"mqtt_app/tasks/{RECIPIENT}/+"
RECEIPTS = f"mqtt_app/tasks/{RECIPIENT}/+/ack"
PROBE = f"mqtt_app/tasks/{RECIPIENT}/mqtthub-doctor-0123456789abcdef/ack"


pytestmark = pytest.mark.usefixtures("clean_environment")


#: What the probe records for an app whose ACL is right: both filters granted, the
#: receipt delivered.
APP_DELIVERY = delivery(
    granted={TASKS: 1, RECEIPTS: 1}, probe_topic=PROBE, username="app", recipient=RECIPIENT
)


def app_delivery(**changes: Any) -> DeliveryEvidence:
    return replace(APP_DELIVERY, **changes)


# --- the probe ------------------------------------------------------------------------


def test_the_probe_is_a_receipt_only_the_ack_filter_brings_back() -> None:
    """The app's two filters; the probe topic matches ``+/ack`` and not ``+``."""
    filters, topic, payload = app_delivery_plan("mqtt_app", RECIPIENT, "0123456789abcdef")
    assert filters == [TASKS, RECEIPTS]
    assert topic == PROBE
    assert topic_matches(RECEIPTS, topic)
    assert not topic_matches(TASKS, topic)
    assert json.loads(payload) == {"state": "delivered", "doctor_probe": "0123456789abcdef"}


def test_serve_and_the_inbox_take_the_probe_as_a_receipt_they_ignore() -> None:
    """serve routes it as a receipt for task ``mqtthub-doctor-<nonce>`` (which no one
    created, so its UPDATE changes nothing); the inbox ignores a ``delivered`` receipt."""
    _filters, topic, payload = app_delivery_plan("mqtt_app", RECIPIENT, "0123456789abcdef")
    routed = route(topic, prefix="devices", app_prefix="mqtt_app")
    assert (routed.route, routed.subject, routed.item) == (
        Route.TASK_RECEIPT,
        RECIPIENT,
        "mqtthub-doctor-0123456789abcdef",
    )
    assert state_of_receipt(json.loads(payload)["state"]) is None


def test_config_says_what_is_checked_and_refuses_a_bad_recipient() -> None:
    """The config line names the app; a recipient of several levels is a config failure."""
    _settings, evidence = load_config({}, RECIPIENT)
    check = check_config(evidence)
    assert check.status is Outcome.PASS
    assert f"checked_as=task app of {RECIPIENT}" in check.detail
    assert "app_prefix=mqtt_app" in check.detail
    settings, evidence = load_config({}, "a/b")
    assert settings is None
    check = check_config(evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.CONFIG_INVALID)
    assert "--recipient" in check.detail
    _settings, evidence = load_config({})
    assert "checked_as" not in check_config(evidence).detail


# --- subscribe ------------------------------------------------------------------------


def test_app_mode_passes_with_both_filters_granted_and_the_receipt_delivered() -> None:
    evidence = app_delivery()
    subscribe = check_subscribe(evidence)
    assert subscribe.status is Outcome.PASS
    assert subscribe.detail == (
        f"granted {TASKS} (QoS 1), {RECEIPTS} (QoS 1); probe on {PROBE} delivered"
    )
    publish = check_publish(evidence)
    assert (publish.status, publish.detail) == (Outcome.PASS, f"published to {PROBE}")


def test_app_mode_names_the_task_topics_when_dropped_silently() -> None:
    """Granted but never delivered (Mosquitto 2.0 and an ACL without read): the texts say
    the task topics of the recipient, and the ACL lines are the app's two filters."""
    check = check_subscribe(app_delivery(delivered=False))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert check.fix == (
        f"allow app to read the task topics of {RECIPIENT} in the broker's ACL (Mosquitto: "
        f"`topic read {TASKS}` and `topic read {RECEIPTS}` under `user app`)"
    )
    assert "device" not in check.detail + check.fix


def test_app_mode_refused_filters_are_each_named_in_the_acl_lines() -> None:
    check = check_subscribe(app_delivery(granted={TASKS: 0x87, RECEIPTS: 0x87}, delivered=False))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert f"refused the subscription to {TASKS}, {RECEIPTS} (SUBACK 0x87, 0x87)" in check.detail
    assert f"`topic read {TASKS}` and `topic read {RECEIPTS}` under `user app`" in (check.fix or "")


def test_app_mode_without_a_suback_names_the_task_topics() -> None:
    evidence = replace(
        app_delivery(granted={}, delivered=False),
        extra={"no_suback": True, "connection_lost": True},
    )
    check = check_subscribe(evidence)
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert f"SUBSCRIBE for the task topics of {RECIPIENT} and closed the connection" in (
        check.detail
    )
    assert f"`topic read mqtt_app/tasks/{RECIPIENT}/#` under `user app`" in (check.fix or "")
    assert check_publish(evidence).status is Outcome.SKIP


def test_serve_mode_still_names_the_device_topics() -> None:
    """Without a recipient the texts are serve's, as before."""
    evidence = delivery(delivered=False)
    assert evidence.subject == "the device topics"
    check = check_subscribe(evidence)
    assert check.fix == (
        "allow hub to read the device topics in the broker's ACL "
        "(Mosquitto: `topic read devices/+/+` under `user hub`)"
    )


# --- publish --------------------------------------------------------------------------


def test_app_mode_refused_receipt_fails_and_says_what_it_breaks() -> None:
    """PUBACK 0x87 on the receipt: a failure, not serve's warning; receipts never arrive."""
    evidence = app_delivery(publish_code=0x87, delivered=False)
    publish = check_publish(evidence)
    assert (publish.status, publish.cause) == (Outcome.FAIL, Cause.ACL_DENIED_PUBLISH)
    assert f"refused a publish to {PROBE} (PUBACK 0x87)" in publish.detail
    assert "receipts (delivered, seen, done)" in publish.detail
    assert "never reach the server" in publish.detail
    assert f"the task topics of {RECIPIENT}" in publish.detail
    assert publish.fix == (
        f"allow app to write the receipts of {RECIPIENT} in the broker's ACL "
        f"(Mosquitto: `topic write {RECEIPTS}` under `user app`)"
    )
    subscribe = check_subscribe(evidence)
    assert (subscribe.status, subscribe.fix) == (Outcome.WARN, "see the publish check")


def test_app_mode_refused_receipt_fix_for_anonymous_clients() -> None:
    publish = check_publish(app_delivery(publish_code=0x87, delivered=False, username=None))
    assert publish.fix == (
        "allow anonymous clients to write the receipts of 61016968 in the broker's ACL "
        f"(Mosquitto: `topic write {RECEIPTS}` before the first `user` line, for anonymous "
        "clients)"
    )


def test_serve_mode_refused_publish_stays_a_warning() -> None:
    evidence = delivery(publish_code=0x87, delivered=False)
    publish = check_publish(evidence)
    assert (publish.status, publish.cause) == (Outcome.WARN, Cause.ACL_DENIED_PUBLISH)
    assert "allow hub to write the device topics" in (publish.fix or "")
    assert "`topic write devices/#` under `user hub`" in (publish.fix or "")


def test_app_mode_on_311_a_lost_receipt_still_fails() -> None:
    """MQTT 3.1.1 has no PUBACK reason, so a refused receipt is silent: the subscribe
    check fails and says that a refused publish looks the same."""
    evidence = app_delivery(delivered=False, protocol=V311, publish_code=None)
    subscribe = check_subscribe(evidence)
    assert (subscribe.status, subscribe.cause) == (Outcome.FAIL, Cause.ACL_DENIED_SUBSCRIBE)
    assert "(on MQTT 3.1.1 a refused probe publish looks the same)" in subscribe.detail
