"""`serve` against a real Mosquitto that requires client certificates: it says why it
cannot connect (in its log and on /healthz) instead of a generic TLS or connection error."""

from __future__ import annotations

from pathlib import Path

from support.certs import make_client_cert, make_tls_files
from support.mosquitto import MosquittoFactory
from support.serve import ServeProcess, wait_until


def test_serve_names_a_missing_client_certificate_and_works_with_one(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    broker = mosquitto_factory(tls=tls, require_certificate=True)
    env = {
        "MQTTHUB_BROKER_URL": f"mqtts://localhost:{broker.port}",
        "MQTTHUB_CA_FILE": str(tls.ca_file),
        "MQTTHUB_EMBEDDED_BROKER": "never",
    }
    without = ServeProcess(workdir=tmp_path / "without", env=env).start(wait_healthy=False)
    try:
        health = wait_until(
            lambda: (
                (h := without.get("/healthz").json()).get("reason") == "client_cert_required" and h
            ),
            timeout=20,
            what="/healthz naming the missing client certificate",
        )
        assert health["mqtt"] != "connected"
        assert "requires a client certificate" in without.log_text()
        assert "MQTTHUB_CLIENT_CERT" in without.log_text()
        assert "falling back to MQTT 3.1.1" not in without.log_text()
    finally:
        without.stop()
    client = make_client_cert(tls, "backend")
    env |= {"MQTTHUB_CLIENT_CERT": str(client.cert), "MQTTHUB_CLIENT_KEY": str(client.key)}
    with ServeProcess(workdir=tmp_path / "with", env=env) as serve:
        health = serve.get("/healthz").json()
        assert health["mqtt"] == "connected", health
