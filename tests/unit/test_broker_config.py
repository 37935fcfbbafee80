"""Unit tests for mqtthub.broker_config: which device ids are refused, and the generated files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mqtthub.broker_config import (
    DeviceListener,
    broker_config_problems,
    device_listener,
    emqx_acl,
    emqx_conf,
    mosquitto_acl,
    mosquitto_conf,
    mosquitto_passwd,
    provisioning_refusal,
    write_atomic,
)

RULES = {"backend_user": "backend", "prefix": "devices", "app_prefix": "mqtt_app"}


@pytest.mark.parametrize(
    "device_id", ["esp-42", "pump_3", "sensor.kitchen", "A", "x" * 64, "...", "mqtthub2"]
)
def test_ordinary_device_ids_are_accepted(device_id: str) -> None:
    """Letters, digits, '_', '-' and '.' up to 64 characters can be provisioned."""
    assert provisioning_refusal(device_id, reserved={"backend"}) is None


@pytest.mark.parametrize(
    ("device_id", "why"),
    [
        ("a:b", "password file"),  # Mosquitto's passwd is user:hash
        ("a b", "' '"),
        ('a"b', "'\"'"),  # would end a string in EMQX's acl.conf
        ("a\\b", "'\\\\'"),
        ("a/b", "'/'"),  # a topic level separator
        ("a+b", "'+'"),
        ("dev#", "'#'"),
        ("%u", "'%'"),
        ("${username}", "'$'"),
        ("ünïcode", "'ï'"),
        ("a\nb", "'\\n'"),
        ("", "1 to 64"),
        ("x" * 65, "1 to 64"),
    ],
)
def test_ids_the_broker_files_cannot_hold_are_refused(device_id: str, why: str) -> None:
    """An id with a character the broker's files or topics cannot carry is refused, saying why."""
    refusal = provisioning_refusal(device_id)
    assert refusal is not None
    assert why in refusal


@pytest.mark.parametrize("device_id", [".", ".."])
def test_dot_and_dot_dot_are_refused(device_id: str) -> None:
    """'.' and '..' are path segments the dashboard cannot open."""
    refusal = provisioning_refusal(device_id)
    assert refusal is not None
    assert "path segment" in refusal


def test_the_backend_username_is_refused() -> None:
    """A device named like the backend's MQTT user would lock the backend out."""
    refusal = provisioning_refusal("backend", reserved={"backend", "mqtthub-host-1"})
    assert refusal is not None
    assert "reserved" in refusal
    assert "backend's entry" in refusal
    assert provisioning_refusal("mqtthub-host-1", reserved={"mqtthub-host-1"}) is not None


def test_mqtthub_own_names_are_always_refused() -> None:
    """'mqtthub' (the default backend user) and the 'mqtthub-' client ids are never devices."""
    assert "reserved" in (provisioning_refusal("mqtthub") or "")
    assert "client ids" in (provisioning_refusal("mqtthub-listen-61016968-ab12") or "")


def test_broker_config_refuses_a_device_named_like_the_backend() -> None:
    """The backend user twice in the files would lock it out: reported, with the fix."""
    problems = broker_config_problems(["dev-a", "backend"], backend_user="backend")
    assert len(problems) == 1
    assert "'backend' has the backend's MQTT username" in problems[0]
    assert "DELETE /api/devices/backend" in problems[0]


def test_broker_config_refuses_users_the_files_cannot_hold() -> None:
    """A registry id from before the rules (with ':') or an odd backend user is reported."""
    problems = broker_config_problems(["a:b", "ok"], backend_user="#admin")
    assert any("'a:b'" in p and "':'" in p for p in problems)
    assert any("'#admin'" in p and "comment" in p for p in problems)
    assert broker_config_problems(["dev-a", "dev-b"], backend_user="backend") == []


def test_mosquitto_acl_confines_a_device_to_its_own_topics() -> None:
    """A device writes only its messages and command replies and reads only its commands."""
    acl = mosquitto_acl(["dev-a"], **RULES)
    device_block = acl.split("user dev-a\n", 1)[1].strip().splitlines()
    assert device_block == [
        "topic write devices/dev-a/status",
        "topic write devices/dev-a/sensor",
        "topic write devices/dev-a/heartbeat",
        "topic write devices/dev-a/command/+/reply",
        "topic read devices/dev-a/command",
    ]
    assert "topic write devices/+/command" in acl.split("user dev-a")[0]  # the backend's


def test_mosquitto_passwd_lines() -> None:
    """One user:hash line per user."""
    assert mosquitto_passwd([("a", "$7$x"), ("b", "$7$y")]) == "a:$7$x\nb:$7$y\n"


def test_mosquitto_conf_binds_client_ids_on_the_devices_listener(tmp_path: Path) -> None:
    """The snippet loads the files and sets use_username_as_clientid on the devices' listener."""
    conf = mosquitto_conf(folder=tmp_path, listener=DeviceListener(8883, True, None))
    lines = [line for line in conf.splitlines() if line and not line.startswith("#")]
    assert lines == [
        "allow_anonymous false",
        f"password_file {tmp_path / 'passwd'}",
        f"acl_file {tmp_path / 'acl'}",
        "listener 8883",
        "use_username_as_clientid true",
    ]
    local = mosquitto_conf(folder=tmp_path, listener=DeviceListener(1883, False, "127.0.0.1"))
    assert "listener 1883 127.0.0.1\nuse_username_as_clientid true\n" in local


def test_device_listener_from_the_endpoint() -> None:
    """Port and TLS come from the device endpoint; only a loopback host is bound."""
    assert device_listener("mqtts://broker.example.com:8883") == DeviceListener(8883, True, None)
    assert device_listener("mqtt://127.0.0.1:1884") == DeviceListener(1884, False, "127.0.0.1")
    assert device_listener("mqtt://10.0.0.5") == DeviceListener(1883, False, None)


def test_emqx_acl_confines_a_device_and_checks_its_client_id() -> None:
    """EMQX rules: a device's rights need client id == username; everything else is denied."""
    acl = emqx_acl(["dev-e"], **RULES)
    who = '{\'and\', [{user, "dev-e"}, {clientid, "dev-e"}]}'
    assert (
        f'{{allow, {who}, publish, ["devices/dev-e/status", "devices/dev-e/sensor", '
        '"devices/dev-e/heartbeat", "devices/dev-e/command/+/reply"]}.'
    ) in acl
    assert f'{{allow, {who}, subscribe, ["devices/dev-e/command"]}}.' in acl
    assert '{allow, {user, "backend"}, publish, ["devices/+/command"]}.' in acl
    assert acl.rstrip().endswith("{deny, all}.")
    assert "devices/dev-e/#" not in acl


def test_emqx_conf_binds_client_ids_in_the_devices_zone() -> None:
    """EMQX: the devices' listener joins a zone with use_username_as_clientid."""
    conf = emqx_conf(listener=DeviceListener(8883, True, None))
    assert "zones.devices.mqtt.use_username_as_clientid = true" in conf.splitlines()
    assert "listeners.ssl.default.zone = devices" in conf.splitlines()
    plain = emqx_conf(listener=DeviceListener(1883, False, None))
    assert "listeners.tcp.default.zone = devices" in plain.splitlines()


def test_write_atomic_creates_the_file_private_from_the_start(tmp_path: Path) -> None:
    """Even with umask 000 the file is created 0600 and replaces the old one whole."""
    target = tmp_path / "passwd"
    target.write_text("old\n")
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        write_atomic(target, "user:$7$hash\n", mode=0o600)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.read_text() == "user:$7$hash\n"
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temporary file left


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_write_atomic_keeps_the_owner_the_broker_reads_as(tmp_path: Path) -> None:
    """Regenerating as root keeps a file the operator gave to the broker's user readable by it."""
    target = tmp_path / "passwd"
    target.write_text("old\n")
    os.chown(target, 65534, 65534)
    write_atomic(target, "new\n", mode=0o600)
    assert (target.stat().st_uid, target.stat().st_gid) == (65534, 65534)
    assert target.read_text() == "new\n"
