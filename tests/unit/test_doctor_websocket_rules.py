"""The doctor's pure rules for MQTT over WebSockets: every upgrade answer gets its cause."""

from __future__ import annotations

import pytest

from mqtthub.doctor.checks import Cause, Check, Outcome
from mqtthub.doctor.network_rules import TlsEvidence, check_tls
from mqtthub.doctor.websocket_rules import (
    UpgradeAnswer,
    WebSocketEvidence,
    check_websocket,
    websocket_tls,
)

URL = "ws://hub:***@broker.example:8083/wrong"


def verdict(answer: UpgradeAnswer, *others: UpgradeAnswer) -> Check:
    return check_websocket(WebSocketEvidence(URL, answer, others))


def test_an_upgrade_with_mqtt_passes() -> None:
    check = verdict(UpgradeAnswer("/mqtt", "upgraded", 101, subprotocol="mqtt"))
    assert check.status is Outcome.PASS


def test_a_404_where_another_path_upgrades_names_that_path_in_the_url() -> None:
    """EMQX answers 404 off /mqtt: the fix is the URL with /mqtt, password still masked."""
    check = verdict(
        UpgradeAnswer("/wrong", "status", 404, "Cowboy"),
        UpgradeAnswer("/mqtt", "upgraded", 101, subprotocol="mqtt"),
        UpgradeAnswer("/ws", "status", 404, "Cowboy"),
    )
    assert check.cause is Cause.WS_PATH_NOT_FOUND
    assert check.fix is not None
    assert "ws://hub:***@broker.example:8083/mqtt" in check.fix
    assert "HTTP 404" in check.detail
    assert "Server: Cowboy" in check.detail


def test_a_404_everywhere_is_still_a_wrong_path() -> None:
    check = verdict(
        UpgradeAnswer("/wrong", "status", 404),
        UpgradeAnswer("/mqtt", "status", 404),
        UpgradeAnswer("/", "status", 404),
    )
    assert check.cause is Cause.WS_PATH_NOT_FOUND
    assert check.fix is not None
    assert "8083" in check.fix


def test_a_server_that_serves_pages_instead_of_upgrading_is_not_a_websocket_server() -> None:
    check = verdict(
        UpgradeAnswer("/mqtt", "status", 404, "SimpleHTTP/0.6"),
        UpgradeAnswer("/", "status", 200, "SimpleHTTP/0.6"),
    )
    assert check.cause is Cause.WS_NOT_WEBSOCKET_SERVER
    assert "SimpleHTTP" in check.detail


def test_an_upgrade_without_the_mqtt_subprotocol() -> None:
    check = verdict(UpgradeAnswer("/mqtt", "no_subprotocol", 101, detail="chose none"))
    assert check.cause is Cause.WS_NO_MQTT_SUBPROTOCOL
    assert check.fix is not None
    assert "Sec-WebSocket-Protocol" in check.fix


@pytest.mark.parametrize("outcome", ["not_http", "timeout"])
def test_no_http_answer_means_probably_an_mqtt_port(outcome: str) -> None:
    check = verdict(UpgradeAnswer("/mqtt", outcome, detail="closed"))
    assert check.cause is Cause.WS_NOT_HTTP
    assert check.fix is not None
    assert "mqtt://" in check.fix


@pytest.mark.parametrize("status", [401, 403, 502])
def test_other_statuses_are_a_refused_upgrade(status: int) -> None:
    check = verdict(
        UpgradeAnswer("/mqtt", "status", status, "nginx"),
        UpgradeAnswer("/ws", "status", status, "nginx"),
    )
    assert check.cause is Cause.WS_UPGRADE_REFUSED
    assert check.fix is not None
    assert "proxy" in check.fix


def test_plain_http_to_a_tls_port_says_wss() -> None:
    check = websocket_tls(check_tls(TlsEvidence(configured=False, offered=True)))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.WS_TLS_EXPECTED)
    assert check.fix is not None
    assert "wss://" in check.fix


def test_tls_to_a_plain_port_says_ws() -> None:
    check = websocket_tls(check_tls(TlsEvidence(configured=True, offered=False)))
    assert (check.status, check.cause) == (Outcome.FAIL, Cause.WS_TLS_NOT_OFFERED)
    assert check.fix is not None
    assert "ws://" in check.fix


def test_other_tls_verdicts_stay_as_for_mqtts() -> None:
    plain = check_tls(TlsEvidence(configured=False, offered=False))
    assert websocket_tls(plain) is plain
