"""Broker URLs for MQTT over WebSockets: ws:// and wss:// with a path."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from mqtthub.config import load_settings
from mqtthub.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_environment")


@pytest.mark.parametrize(
    ("url", "host", "port", "tls", "path"),
    [
        ("ws://broker.example:8083/mqtt", "broker.example", 8083, False, "/mqtt"),
        ("wss://broker.example:8084/mqtt", "broker.example", 8084, True, "/mqtt"),
        ("ws://broker.example", "broker.example", 80, False, "/mqtt"),
        ("wss://broker.example", "broker.example", 443, True, "/mqtt"),
        ("ws://broker.example:8083/", "broker.example", 8083, False, "/"),
        (
            "ws://broker.example:9001/ws/mqtt?token=abc",
            "broker.example",
            9001,
            False,
            "/ws/mqtt?token=abc",
        ),
        ("ws://[::1]:8083/mqtt", "::1", 8083, False, "/mqtt"),
        # The scheme alone decides TLS for WebSockets: no switch by port as for mqtt://.
        ("ws://broker.example:8883/mqtt", "broker.example", 8883, False, "/mqtt"),
    ],
)
def test_websocket_urls_give_host_port_tls_and_path(
    monkeypatch: pytest.MonkeyPatch, url: str, host: str, port: int, tls: bool, path: str
) -> None:
    """ws:// and wss:// default to /mqtt and to ports 80 and 443; EMQX's ports are given."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", url)
    endpoint = load_settings().broker
    assert (endpoint.host, endpoint.port, endpoint.tls, endpoint.websocket_path) == (
        host,
        port,
        tls,
        path,
    )


def test_mqtt_urls_are_not_websockets(monkeypatch: pytest.MonkeyPatch) -> None:
    """mqtt:// stays MQTT over TCP, with or without a path."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://broker.example:1883/mqtt")
    endpoint = load_settings().broker
    assert endpoint.websocket_path is None
    assert endpoint.address == "mqtt://broker.example:1883"


def test_display_and_address_keep_the_scheme_and_path_and_hide_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Logs show wss://user:***@host:port/path; credentials go into MQTT CONNECT."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "wss://hub:s3cret@broker.example:8084/mqtt")
    endpoint = load_settings().broker
    assert endpoint.display() == "wss://hub:***@broker.example:8084/mqtt"
    assert endpoint.address == "wss://broker.example:8084/mqtt"
    assert endpoint.username == "hub"
    assert endpoint.password is not None
    assert endpoint.password.get_secret_value() == "s3cret"


def test_credentials_from_settings_apply_to_websocket_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MQTTHUB_USERNAME/PASSWORD work with ws:// as with mqtt://."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "ws://broker.example:8083/mqtt")
    monkeypatch.setenv("MQTTHUB_USERNAME", "hub")
    monkeypatch.setenv("MQTTHUB_PASSWORD", "pw")
    endpoint = load_settings().broker
    assert endpoint.username == "hub"
    assert endpoint.display() == "ws://hub:***@broker.example:8083/mqtt"


def test_wss_uses_the_same_tls_settings_as_mqtts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A bad MQTTHUB_CA_FILE is refused for wss:// before any connection, as for mqtts://."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "wss://broker.example:8084/mqtt")
    monkeypatch.setenv("MQTTHUB_CA_FILE", str(bad))
    with pytest.raises(ConfigError, match="MQTTHUB_CA_FILE"):
        load_settings()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(bad))
    assert load_settings().broker.tls


def test_device_endpoint_keeps_websocket_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Provisioned devices are told the ws:// endpoint, path included."""
    monkeypatch.setenv("MQTTHUB_DEVICE_BROKER_URL", "ws://user:pw@broker.example:8083/mqtt")
    assert load_settings().device_endpoint == "ws://broker.example:8083/mqtt"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://broker.example/mqtt", "must start with mqtt://, mqtts://, ws:// or wss://"),
        ("ws:///mqtt", "has no host"),
        ("ws://broker.example:99999/mqtt", "outside 1-65535"),
    ],
)
def test_bad_websocket_urls_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv("MQTTHUB_BROKER_URL", url)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith("MQTTHUB_BROKER_URL:")
    assert message in str(caught.value)
