"""Unit tests for mqtthub.config: environment, .env, flags, TLS and secret masking."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from pydantic import SecretStr

from mqtthub.config import BrokerEndpoint, Settings, build_ssl_context, load_settings
from mqtthub.errors import ConfigError, MqttHubError

PASSWORD = "hunter2-S3cret"


pytestmark = pytest.mark.usefixtures("clean_environment")


def config_error(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], **flags: object) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(**flags)
    return str(caught.value)


def set_env(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


# --- defaults and broker endpoint -----------------------------------------------------


def test_defaults_need_no_configuration() -> None:
    """With nothing set, mqtthub talks plain MQTT to a local broker and serves on :8000."""
    settings = load_settings()
    assert settings.broker == BrokerEndpoint("127.0.0.1", 1883, False, None, None)
    assert settings.http_port == 8000
    assert settings.broker.is_local


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://broker.example", "broker.example", 1883, False),
        ("mqtt://broker.example:1884", "broker.example", 1884, False),
        ("tcp://broker.example:1884", "broker.example", 1884, False),
        ("mqtts://broker.example", "broker.example", 8883, True),
        ("mqtts://broker.example:1884", "broker.example", 1884, True),
        ("ssl://broker.example", "broker.example", 8883, True),
        ("mqtt://broker.example:8883", "broker.example", 8883, True),
        ("mqtt://broker.example:18883", "broker.example", 18883, True),
        ("mqtt://[::1]:1883", "::1", 1883, False),
    ],
)
def test_tls_is_automatic_for_mqtts_and_tls_ports(
    monkeypatch: pytest.MonkeyPatch, url: str, host: str, port: int, tls: bool
) -> None:
    """mqtts://, ssl:// and ports 8883/18883 turn TLS on; plain mqtt:// elsewhere stays plain."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", url)
    endpoint = load_settings().broker
    assert (endpoint.host, endpoint.port, endpoint.tls) == (host, port, tls)


def test_credentials_in_the_url_are_percent_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """mqtt://user:p%40ss@host logs in as `user` with password `p@ss`."""
    monkeypatch.setenv("MQTTHUB_BROKER_URL", "mqtt://sensor%2Dhub:p%40ss@broker.example")
    endpoint = load_settings().broker
    assert endpoint.username == "sensor-hub"
    assert endpoint.password is not None
    assert endpoint.password.get_secret_value() == "p@ss"


def test_legacy_mqtt_broker_variables_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Old deployments with MQTT_BROKER_HOST/PORT/USERNAME/PASSWORD keep connecting."""
    set_env(
        monkeypatch,
        MQTT_BROKER_HOST="broker.example",
        MQTT_BROKER_PORT="1884",
        MQTT_USERNAME="hub",
        MQTT_PASSWORD=PASSWORD,
    )
    endpoint = load_settings().broker
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("broker.example", 1884, False)
    assert endpoint.username == "hub"
    assert endpoint.password is not None
    assert endpoint.password.get_secret_value() == PASSWORD


@pytest.mark.parametrize(("port", "tls"), [("8883", True), ("18883", True), ("1883", False)])
def test_legacy_port_alone_picks_tls_by_port(
    monkeypatch: pytest.MonkeyPatch, port: str, tls: bool
) -> None:
    """MQTT_BROKER_PORT=8883 on its own means TLS to the default host."""
    set_env(monkeypatch, MQTT_BROKER_HOST="broker.example", MQTT_BROKER_PORT=port)
    endpoint = load_settings().broker
    assert (endpoint.port, endpoint.tls) == (int(port), tls)


def test_legacy_host_defaults_to_port_1883(monkeypatch: pytest.MonkeyPatch) -> None:
    """MQTT_BROKER_HOST without a port connects to 1883 without TLS."""
    monkeypatch.setenv("MQTT_BROKER_HOST", "broker.example")
    endpoint = load_settings().broker
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("broker.example", 1883, False)


def test_broker_url_beats_legacy_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """When both MQTTHUB_BROKER_URL and MQTT_BROKER_HOST are set, the URL is used."""
    set_env(
        monkeypatch,
        MQTTHUB_BROKER_URL="mqtt://new.example:1999",
        MQTT_BROKER_HOST="old.example",
        MQTT_BROKER_PORT="1884",
    )
    endpoint = load_settings().broker
    assert (endpoint.host, endpoint.port) == ("new.example", 1999)


# --- ConfigError names the variable ---------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MQTTHUB_BROKER_URL", "http://broker.example"),
        ("MQTTHUB_BROKER_URL", "broker.example:1883"),
        ("MQTTHUB_BROKER_URL", "mqtt://"),
        ("MQTTHUB_BROKER_URL", "mqtt://broker.example:99999"),
        ("MQTTHUB_BROKER_URL", "mqtt://broker.example:port"),
        pytest.param(
            "MQTTHUB_BROKER_URL",
            "mqtt://broker.example:0",
        ),
        ("MQTTHUB_HTTP_PORT", "70000"),
        ("MQTTHUB_HTTP_PORT", "0"),
        ("MQTTHUB_HTTP_PORT", "eighty"),
        pytest.param(
            "MQTT_BROKER_PORT",
            "0",
        ),
        pytest.param(
            "MQTT_BROKER_PORT",
            "70000",
        ),
        ("MQTTHUB_DATABASE_URL", "mysql://db.example/mqtthub"),
        ("MQTTHUB_DATABASE_URL", "data/mqtthub.db"),
        ("MQTTHUB_DATABASE_URL", "sqlite://data/mqtthub.db"),
        ("MQTTHUB_CA_FILE", "/nonexistent/ca.pem"),
        ("MQTTHUB_KEEPALIVE", "1"),
        ("MQTTHUB_MAX_PAYLOAD", "10"),
        ("MQTTHUB_TOPIC_PREFIX", "devices/#"),
        ("MQTTHUB_TOPIC_PREFIX", "/devices"),
        ("MQTTHUB_LOG_LEVEL", "chatty"),
        ("MQTTHUB_EMBEDDED_BROKER", "sometimes"),
    ],
)
def test_bad_values_raise_config_error_starting_with_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """`mqtthub serve` with a bad setting says which variable to fix, first thing."""
    message = config_error(monkeypatch, {variable: value})
    assert message.startswith(f"{variable}:"), message


def test_missing_ca_file_message_names_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """MQTTHUB_CA_FILE pointing nowhere says the file does not exist."""
    message = config_error(monkeypatch, {"MQTTHUB_CA_FILE": "/nonexistent/ca.pem"})
    assert message.startswith("MQTTHUB_CA_FILE:")
    assert "/nonexistent/ca.pem" in message
    assert "does not exist" in message


def test_ca_file_that_is_a_directory_is_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """MQTTHUB_CA_FILE must be a readable file, not a directory."""
    message = config_error(monkeypatch, {"MQTTHUB_CA_FILE": str(tmp_path)})
    assert message.startswith("MQTTHUB_CA_FILE:")


def test_ca_file_that_is_not_pem_is_rejected_for_tls(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A TLS broker with a CA file that holds no certificate fails before connecting."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    message = config_error(
        monkeypatch,
        {"MQTTHUB_BROKER_URL": "mqtts://broker.example", "MQTTHUB_CA_FILE": str(bogus)},
    )
    assert message.startswith("MQTTHUB_CA_FILE:")


def test_empty_ca_file_means_no_ca_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A .env template line `MQTTHUB_CA_FILE=` means "use the system CA store"."""
    monkeypatch.setenv("MQTTHUB_CA_FILE", "")
    assert load_settings().ca_file is None


def test_client_key_without_certificate_is_rejected(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, tmp_path: Path
) -> None:
    """Setting only MQTTHUB_CLIENT_KEY is a configuration error naming that variable."""
    key = tmp_path / "client.key"
    ca.issue_cert("client.example").private_key_pem.write_to_path(str(key))
    message = config_error(monkeypatch, {"MQTTHUB_CLIENT_KEY": str(key)})
    assert message.startswith("MQTTHUB_CLIENT_KEY")


def test_config_error_is_an_mqtthub_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Callers catching MqttHubError also catch configuration errors."""
    monkeypatch.setenv("MQTTHUB_HTTP_PORT", "70000")
    with pytest.raises(MqttHubError):
        load_settings()


def test_bad_flag_value_names_the_variable_too() -> None:
    """A bad --http-port flag is reported with the variable name users look up."""
    with pytest.raises(ConfigError, match=r"^MQTTHUB_HTTP_PORT:"):
        load_settings(http_port=70000)


# --- secrets never leak ---------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"MQTTHUB_BROKER_URL": f"http://hub:{PASSWORD}@broker.example"}, id="scheme"),
        pytest.param({"MQTTHUB_BROKER_URL": f"mqtt://hub:{PASSWORD}@"}, id="no-host"),
        pytest.param({"MQTTHUB_BROKER_URL": f"mqtt://hub:{PASSWORD}@b.example:99999"}, id="port"),
        pytest.param({"MQTTHUB_BROKER_URL": f"mqtt://hub:{PASSWORD}@b.example:x"}, id="bad-port"),
        pytest.param(
            {"MQTTHUB_DATABASE_URL": f"mysql://hub:{PASSWORD}@db.example/hub"}, id="db-scheme"
        ),
        pytest.param(
            {"MQTTHUB_BROKER_URL": f"mqtt://hub:{PASSWORD}@b.example", "MQTTHUB_KEEPALIVE": "1"},
            id="other-field-with-url-password",
        ),
        pytest.param(
            {"MQTTHUB_PASSWORD": PASSWORD, "MQTTHUB_HTTP_PORT": "70000"}, id="password-variable"
        ),
        pytest.param(
            {"MQTT_PASSWORD": PASSWORD, "MQTTHUB_BROKER_URL": "mqtt://b.example:99999"},
            id="legacy-password-variable",
        ),
        pytest.param(
            {"MQTTHUB_BROKER_URL": f"mqtt//hub:{PASSWORD}@broker.example"},
            id="typo-missing-colon",
        ),
        pytest.param(
            {"MQTTHUB_DATABASE_URL": f"postgresql:/hub:{PASSWORD}@db.example/hub"},
            id="typo-single-slash",
        ),
        pytest.param(
            {"MQTTHUB_DATABASE_URL": f"sqlite://hub:{PASSWORD}@db.example/hub"},
            id="sqlite-with-credentials",
        ),
    ],
)
def test_passwords_never_appear_in_config_errors(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """A config error printed to the terminal or a log never shows the broker/db password."""
    message = config_error(monkeypatch, env)
    assert PASSWORD not in message


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        (
            BrokerEndpoint("broker.example", 8883, True, "hub", SecretStr(PASSWORD)),
            "mqtts://hub:***@broker.example:8883",
        ),
        (
            BrokerEndpoint("broker.example", 1883, False, "hub", None),
            "mqtt://hub@broker.example:1883",
        ),
        (BrokerEndpoint("broker.example", 1883, False, None, None), "mqtt://broker.example:1883"),
        (BrokerEndpoint("::1", 1883, False, None, None), "mqtt://[::1]:1883"),
    ],
)
def test_display_masks_the_password(endpoint: BrokerEndpoint, shown: str) -> None:
    """The broker address logged at startup shows user and host but *** for the password."""
    assert endpoint.display() == shown
    assert PASSWORD not in repr(endpoint)


@pytest.mark.parametrize(
    "env",
    [
        {"MQTTHUB_BROKER_URL": "mqtt://hub:p%40ss%2Fw0rd@broker.example"},
        {"MQTTHUB_BROKER_URL": "mqtt://hub@broker.example", "MQTTHUB_PASSWORD": "p@ss/w0rd"},
        {
            "MQTT_BROKER_HOST": "broker.example",
            "MQTT_USERNAME": "hub",
            "MQTT_PASSWORD": "p@ss/w0rd",
        },
    ],
)
def test_display_of_configured_broker_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """However the password was configured, display() shows *** and neither raw nor encoded."""
    set_env(monkeypatch, **env)
    shown = load_settings().broker.display()
    assert shown == "mqtt://hub:***@broker.example:1883"
    assert "p@ss" not in shown
    assert "p%40ss" not in shown


def test_empty_password_means_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """MQTTHUB_PASSWORD= (empty) logs in without a password."""
    set_env(monkeypatch, MQTTHUB_USERNAME="hub", MQTTHUB_PASSWORD="")
    endpoint = load_settings().broker
    assert endpoint.password is None
    assert endpoint.display() == "mqtt://hub@127.0.0.1:1883"


# --- flags, environment and .env ------------------------------------------------------


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`mqtthub serve --http-port 9000 --broker-url ...` beats the exported variables."""
    set_env(
        monkeypatch,
        MQTTHUB_HTTP_PORT="8001",
        MQTTHUB_BROKER_URL="mqtt://env.example:1883",
        MQTT_USERNAME="env-user",
        MQTT_PASSWORD="env-password",
    )
    settings = load_settings(
        http_port=9000,
        broker_url="mqtt://flag.example:1999",
        username="flag-user",
        password="flag-password",
    )
    assert settings.http_port == 9000
    endpoint = settings.broker
    assert (endpoint.host, endpoint.port) == ("flag.example", 1999)
    assert endpoint.username == "flag-user"
    assert endpoint.password is not None
    assert endpoint.password.get_secret_value() == "flag-password"


def test_flag_broker_url_beats_legacy_host_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """--broker-url wins over an MQTT_BROKER_HOST left in the environment."""
    monkeypatch.setenv("MQTT_BROKER_HOST", "old.example")
    endpoint = load_settings(broker_url="mqtts://flag.example").broker
    assert (endpoint.host, endpoint.port, endpoint.tls) == ("flag.example", 8883, True)


def test_unset_flags_leave_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags the user did not pass (None) do not reset variables to defaults."""
    monkeypatch.setenv("MQTTHUB_HTTP_PORT", "8001")
    assert load_settings(http_port=None, broker_url=None).http_port == 8001


def test_dotenv_in_working_directory_is_read(clean_environment: Path) -> None:
    """A .env next to where mqtthub runs configures it, legacy names included."""
    (clean_environment / ".env").write_text(
        "MQTTHUB_HTTP_PORT=8123\n"
        "MQTT_BROKER_HOST=dotenv.example\n"
        "MQTT_USERNAME=hub\n"
        f"MQTT_PASSWORD={PASSWORD}\n"
    )
    settings = load_settings()
    assert settings.http_port == 8123
    endpoint = settings.broker
    assert (endpoint.host, endpoint.username) == ("dotenv.example", "hub")
    assert endpoint.password is not None
    assert endpoint.password.get_secret_value() == PASSWORD


def test_environment_and_flags_beat_dotenv(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    """An exported variable overrides .env, and a flag overrides both."""
    (clean_environment / ".env").write_text("MQTTHUB_HTTP_PORT=8123\nMQTTHUB_KEEPALIVE=30\n")
    monkeypatch.setenv("MQTTHUB_HTTP_PORT", "8124")
    settings = load_settings()
    assert (settings.http_port, settings.keepalive) == (8124, 30)
    assert load_settings(http_port=8125, keepalive=45).http_port == 8125
    assert load_settings(keepalive=45).keepalive == 45


def test_bad_value_in_dotenv_names_the_variable(clean_environment: Path) -> None:
    """A typo in .env is reported like one in the environment."""
    (clean_environment / ".env").write_text("MQTTHUB_HTTP_PORT=70000\n")
    with pytest.raises(ConfigError, match=r"^MQTTHUB_HTTP_PORT:"):
        load_settings()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///data/mqtthub.db", "sqlite:///data/mqtthub.db"),
        ("sqlite:////var/lib/mqtthub.db", "sqlite:////var/lib/mqtthub.db"),
        ("postgresql://hub@db.example/hub", "postgresql+psycopg://hub@db.example/hub"),
        ("postgres://hub@db.example/hub", "postgresql+psycopg://hub@db.example/hub"),
    ],
)
def test_supported_database_urls(monkeypatch: pytest.MonkeyPatch, url: str, expected: str) -> None:
    """SQLite and PostgreSQL URLs (incl. Heroku-style postgres://) are accepted."""
    monkeypatch.setenv("MQTTHUB_DATABASE_URL", url)
    assert load_settings().sqlalchemy_url == expected


# --- TLS context ----------------------------------------------------------------------


def _handshake(client_context: ssl.SSLContext, server_context: ssl.SSLContext, name: str) -> None:
    """Run a TLS handshake in memory (no sockets); raises what the client raises."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=name)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        finished = True
        for side in (client, server):
            try:
                side.do_handshake()
            except ssl.SSLWantReadError:
                finished = False
        server_in.write(client_out.read())
        client_in.write(server_out.read())
        if finished:
            return
    raise AssertionError("TLS handshake did not finish")


def _server_context(ca: trustme.CA, hostname: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(hostname).configure_cert(context)
    return context


def test_default_tls_context_verifies_chain_and_hostname(ca_file: Path) -> None:
    """Without MQTTHUB_TLS_INSECURE both the certificate chain and the hostname are checked."""
    context = build_ssl_context(load_settings(broker_url="mqtts://broker.example", ca_file=ca_file))
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_ca_file_is_trusted(ca: trustme.CA, ca_file: Path) -> None:
    """A broker certificate signed by MQTTHUB_CA_FILE's CA passes verification."""
    context = build_ssl_context(load_settings(broker_url="mqtts://broker.example", ca_file=ca_file))
    _handshake(context, _server_context(ca, "broker.example"), "broker.example")


def test_hostname_mismatch_fails_by_default(ca: trustme.CA, ca_file: Path) -> None:
    """A valid certificate for another name is refused unless TLS_INSECURE is set."""
    context = build_ssl_context(load_settings(broker_url="mqtts://10.0.0.5", ca_file=ca_file))
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, _server_context(ca, "broker.example"), "10.0.0.5")


def test_tls_insecure_skips_only_the_hostname_check(
    monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, ca_file: Path
) -> None:
    """MQTTHUB_TLS_INSECURE=true: a broker reached by IP works, the chain is still verified."""
    set_env(
        monkeypatch,
        MQTTHUB_BROKER_URL="mqtts://10.0.0.5",
        MQTTHUB_CA_FILE=str(ca_file),
        MQTTHUB_TLS_INSECURE="true",
    )
    context = build_ssl_context(load_settings())
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    _handshake(context, _server_context(ca, "broker.example"), "10.0.0.5")


def test_tls_insecure_still_refuses_an_untrusted_ca(ca_file: Path) -> None:
    """Even with TLS_INSECURE a certificate from an unknown CA is refused."""
    context = build_ssl_context(
        load_settings(broker_url="mqtts://10.0.0.5", ca_file=ca_file, tls_insecure=True)
    )
    stranger = trustme.CA()
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(context, _server_context(stranger, "10.0.0.5"), "10.0.0.5")


def test_client_certificate_turns_tls_on(ca: trustme.CA, ca_file: Path, tmp_path: Path) -> None:
    """A client certificate implies TLS even on a mqtt:// URL, and the pair loads."""
    cert = ca.issue_cert("hub.example")
    cert_path, key_path = tmp_path / "client.crt", tmp_path / "client.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    settings = load_settings(
        broker_url="mqtt://broker.example:1884",
        ca_file=ca_file,
        client_cert=cert_path,
        client_key=key_path,
    )
    assert settings.broker.tls is True
    assert build_ssl_context(settings).verify_mode == ssl.CERT_REQUIRED


def test_settings_class_reads_environment_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every field is MQTTHUB_<NAME>, e.g. MQTTHUB_BATCH_SIZE."""
    monkeypatch.setenv("MQTTHUB_BATCH_SIZE", "250")
    assert Settings().batch_size == 250


def test_several_workers_or_a_share_group_need_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite takes one writer per file: sharing the stream is refused with the fix."""
    message = config_error(monkeypatch, {"MQTTHUB_WORKERS": "3"})
    assert message.startswith("MQTTHUB_WORKERS=3")
    assert "postgresql://" in message
    monkeypatch.delenv("MQTTHUB_WORKERS")
    message = config_error(monkeypatch, {"MQTTHUB_SHARE_GROUP": "fleet"})
    assert message.startswith("MQTTHUB_SHARE_GROUP=fleet")
    assert "postgresql://" in message


def test_workers_share_the_group_mqtthub_unless_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MQTTHUB_DATABASE_URL", "postgresql://db.example/mqtthub")
    assert load_settings().effective_share_group is None
    assert load_settings(workers=2).effective_share_group == "mqtthub"
    assert load_settings(workers=2, share_group="fleet").effective_share_group == "fleet"


@pytest.mark.parametrize("group", ["a/b", "a+", "#"])
def test_share_group_is_one_topic_level(monkeypatch: pytest.MonkeyPatch, group: str) -> None:
    message = config_error(monkeypatch, {"MQTTHUB_SHARE_GROUP": group})
    assert message.startswith("MQTTHUB_SHARE_GROUP: must be one topic level")
