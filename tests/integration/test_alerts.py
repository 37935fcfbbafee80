"""Alert rules end to end: a real Mosquitto, a real serve, a real local HTTP server for
webhooks and a real local SMTP server (aiosmtpd) for e-mail."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from support.mosquitto import MosquittoBroker, mosquitto_pub, mosquitto_sub_once
from support.ports import free_port
from support.serve import ServeProcess, device, serve_for, wait_until

SECRET = "s3cret-for-tests"


class Webhook:
    """A local HTTP server that answers the given statuses in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append((dict(self.headers), body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.requests]


class Mailbox:
    """aiosmtpd's handler interface: keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook([500])
    yield hook
    hook.server.shutdown()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


def rule(serve: ServeProcess, **fields: Any) -> dict[str, Any]:
    response = serve.http.post("/api/alert-rules", json=fields)
    assert response.status_code == 201, response.text
    return dict(response.json())


def alerts(serve: ServeProcess, state: str | None = None) -> list[dict[str, Any]]:
    params = {"state": state} if state else {}
    return list(serve.get("/api/alerts", params=params).json())


def test_a_threshold_rule_fires_once_retries_its_webhook_and_resolves(
    mosquitto: MosquittoBroker, tmp_path: Path, webhook: Webhook
) -> None:
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        created = rule(
            serve,
            name="too hot",
            condition="above",
            metric="t",
            threshold=30,
            notify=[{"type": "webhook", "url": webhook.url, "secret": SECRET}],
        )
        assert created["notify"][0]["secret"] == "***"  # secrets are never shown
        port = webhook.url.split(":")[2].split("/")[0]
        assert created["notify"][0]["url"] == f"http://127.0.0.1:{port}/…"  # nor paths
        # A rule changed with what the API shows keeps its webhook's URL and secret.
        changed = serve.http.patch(
            f"/api/alert-rules/{created['id']}",
            json={"threshold": 30.5, "notify": created["notify"]},
        )
        assert changed.status_code == 200, changed.text
        assert serve.http.patch(
            f"/api/alert-rules/{created['id']}", json={"threshold": 30}
        ).is_success
        mosquitto_pub(mosquitto, "devices/oven/sensor", '{"t": 25}')
        mosquitto_pub(mosquitto, "devices/oven/sensor", '{"t": 35}')
        mosquitto_pub(mosquitto, "devices/oven/sensor", '{"t": 36}')
        # The webhook answered 500 first: the notification is retried and delivered once.
        log = wait_until(
            lambda: [
                n for n in serve.get("/api/notifications").json() if n["state"] == "delivered"
            ],
            timeout=15,
            what="the webhook delivered",
        )
        assert (log[0]["channel"], log[0]["attempts"]) == ("webhook", 2)
        assert len(webhook.requests) == 2
        headers, body = webhook.requests[-1]
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert headers["X-Mqtthub-Signature"] == expected
        message = json.loads(body)
        assert message["rule"]["name"] == "too hot"
        assert (message["device_id"], message["state"], message["value"]) == (
            "oven",
            "firing",
            35.0,
        )
        assert message["at"].endswith("Z")
        [firing] = alerts(serve, "firing")  # one alert for 35 and 36
        mosquitto_pub(mosquitto, "devices/oven/sensor", '{"t": 20}')
        wait_until(lambda: alerts(serve, "resolved"), timeout=10, what="resolved")
        wait_until(lambda: len(webhook.requests) == 3, timeout=10, what="the resolved webhook")
        assert webhook.bodies()[-1]["state"] == "resolved"
        history = serve.get(f"/api/alerts/{firing['id']}").json()["events"]
        assert [(e["state"], e["value"]) for e in history] == [("firing", 35.0), ("resolved", 20.0)]


def test_acknowledge_then_resolve_and_an_mqtt_notification(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        rule(
            serve,
            name="battery",
            condition="below",
            metric="v",
            threshold=3.3,
            labels={"site": "lab"},
            notify=[{"type": "mqtt", "topic": "alerts/battery"}],
        )
        mosquitto_pub(mosquitto, "devices/node1/sensor", '{"v": 3.6}')
        wait_until(lambda: device(serve, "node1"), what="node1 stored")
        assert serve.http.patch("/api/devices/node1", json={"labels": {"site": "lab"}}).is_success
        received: list[list[str]] = []
        listener = threading.Thread(
            target=lambda: received.append(mosquitto_sub_once(mosquitto, "alerts/battery")),
            daemon=True,
        )
        listener.start()
        wait_until(
            lambda: "alerts/battery" in mosquitto.log_text(), timeout=10, what="the subscriber"
        )
        mosquitto_pub(mosquitto, "devices/node1/sensor", '{"v": 3.1}')
        listener.join(15)
        assert json.loads(received[0][0])["device_id"] == "node1"
        [firing] = wait_until(lambda: alerts(serve, "firing"), what="firing")
        acked = serve.http.post(f"/api/alerts/{firing['id']}/ack", json={"note": "on it"})
        assert acked.json()["state"] == "acknowledged"
        mosquitto_pub(mosquitto, "devices/node1/sensor", '{"v": 3.7}')
        wait_until(lambda: alerts(serve, "resolved"), timeout=10, what="resolved after ack")
        history = serve.get(f"/api/alerts/{firing['id']}").json()["events"]
        assert [e["state"] for e in history] == ["firing", "acknowledged", "resolved"]


def test_an_offline_device_alert_is_mailed(
    mosquitto: MosquittoBroker, tmp_path: Path, mailbox: tuple[Mailbox, int]
) -> None:
    box, port = mailbox
    with serve_for(
        mosquitto.port, tmp_path / "serve", MQTTHUB_SMTP_URL=f"smtp://127.0.0.1:{port}"
    ) as serve:
        rule(
            serve,
            name="gone",
            condition="offline",
            for_seconds=1,
            device_id="pump",
            notify=[{"type": "email", "to": "ops@example.com"}],
        )
        mosquitto_pub(mosquitto, "devices/pump/status", "online")
        mosquitto_pub(mosquitto, "devices/pump/status", "offline")
        wait_until(lambda: box.messages, timeout=20, what="the e-mail")
        mail = box.messages[0]
        assert mail["To"] == "ops@example.com"
        assert "gone" in mail["Subject"]
        assert "pump" in mail["Subject"]


def test_bad_rules_get_a_clear_answer(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        for fields, words in (
            ({"name": "x", "condition": "above", "metric": "t"}, "threshold"),
            ({"name": "x", "condition": "offline"}, "for_seconds"),
            (
                {"name": "x", "condition": "above", "metric": "t", "threshold": 1,
                 "notify": [{"type": "webhook", "url": "file:///etc/passwd"}]},
                "http",
            ),
        ):  # fmt: skip
            response = serve.http.post("/api/alert-rules", json=fields)
            assert response.status_code == 422
            assert words in response.text


def test_rules_fire_and_resolve_with_simulated_devices(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """`mqtthub simulate` devices: a threshold rule fires for each; when the fleet stops,
    an offline rule fires for each device, and resolves when the fleet comes back."""
    simulate = [
        *(sys.executable, "-m", "mqtthub", "simulate"),
        *("--broker-url", f"mqtt://127.0.0.1:{mosquitto.port}", "--devices", "3"),
        *("--sensor-interval", "0.3", "--heartbeat-interval", "0.5", "--id-prefix", "fleet"),
    ]
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        rule(serve, name="warm", condition="above", metric="temperature", threshold=10)
        rule(serve, name="gone", condition="offline", for_seconds=1)
        subprocess.run([*simulate, "--duration", "2"], check=True, timeout=60, cwd=tmp_path)

        def firing(name: str) -> set[str]:
            return {a["device_id"] for a in alerts(serve, "open") if a["rule_name"] == name}

        fleet = {"fleet0001", "fleet0002", "fleet0003"}
        wait_until(lambda: firing("warm") == fleet, timeout=15, what="threshold alerts")
        wait_until(lambda: firing("gone") == fleet, timeout=20, what="offline alerts")
        back = subprocess.Popen([*simulate, "--duration", "30"], cwd=tmp_path)
        try:
            wait_until(lambda: not firing("gone"), timeout=25, what="offline alerts resolved")
        finally:
            back.terminate()
            back.wait(15)
        resolved = {a["device_id"] for a in alerts(serve, "resolved") if a["rule_name"] == "gone"}
        assert resolved == fleet
