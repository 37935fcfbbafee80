"""Hostile messages against a real ``serve`` on a real Mosquitto: none stops ingestion."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import ServeProcess, device, serve_for, wait_until

NESTED = "[" * 1100 + "]" * 1100
VALID = '{"temperature": 21.5}'


def dead_letters(serve: ServeProcess, reason: str) -> list[dict[str, object]]:
    response = serve.get("/api/dead-letters", params={"reason": reason})
    response.raise_for_status()
    letters: list[dict[str, object]] = response.json()
    return letters


def test_deeply_nested_json_is_a_dead_letter_and_ingestion_goes_on(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """1,100 nested arrays at QoS 1 land in dead letters; the next reading is still stored,
    and after a restart (the broker redelivers nothing unacknowledged) too."""
    with serve_for(mosquitto.port, tmp_path) as serve:
        mosquitto_pub(mosquitto, "devices/x/sensor", NESTED, qos=1)
        mosquitto_pub(mosquitto, "devices/after/sensor", VALID, qos=1)
        wait_until(lambda: device(serve, "after"), what="the reading after the bomb")
        [letter] = wait_until(lambda: dead_letters(serve, "invalid_json"))
        assert letter["topic"] == "devices/x/sensor"
        assert "nested too deeply" in str(letter["detail"])
        assert serve.health_status() == 200
    with serve_for(mosquitto.port, tmp_path) as serve:
        mosquitto_pub(mosquitto, "devices/later/sensor", VALID, qos=1)
        wait_until(lambda: device(serve, "later"), what="a reading after the restart")
        assert len(dead_letters(serve, "invalid_json")) == 1


def test_nested_task_receipt_does_not_stop_ingestion(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A receipt nested 1,100 levels deep counts as a plain receipt; devices keep reporting."""
    with serve_for(mosquitto.port, tmp_path) as serve:
        task = serve.http.post("/api/tasks", json={"recipient": "61016968", "title": "t"}).json()
        topic = f"mqtt_app/tasks/61016968/{task['id']}/ack"
        mosquitto_pub(mosquitto, topic, NESTED, qos=1)
        mosquitto_pub(mosquitto, "devices/after/sensor", VALID, qos=1)
        wait_until(lambda: device(serve, "after"), what="the reading after the receipt")
        states = lambda: [t["state"] for t in serve.get("/api/tasks").json()]  # noqa: E731
        assert wait_until(lambda: states() == ["delivered"], what="the task delivered")


def test_huge_device_ids_are_refused_and_kept_small(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """200 messages with 60,000-character device ids: dead letters with the topic and the
    detail cut short, so the database stays small."""
    with serve_for(mosquitto.port, tmp_path) as serve:
        for n in range(200):
            mosquitto_pub(mosquitto, f"devices/{str(n) * (60_000 // len(str(n)))}/sensor", VALID)
        mosquitto_pub(mosquitto, "devices/after/sensor", VALID, qos=1)
        wait_until(lambda: device(serve, "after"), what="the reading after the long ids")
        wait_until(
            lambda: serve.get("/api/stats").json()["dead_letters"] == 200,
            what="200 dead letters",
        )
        letters = dead_letters(serve, "bad_device_id")
        assert len(letters) == 100  # one page of the 200
        for letter in letters:
            assert len(str(letter["topic"])) <= 512
            assert len(str(letter["detail"])) <= 1024
    with sqlite3.connect(tmp_path / "data" / "mqtthub.db") as db:
        topic_bytes, detail_bytes = db.execute(
            "SELECT sum(length(topic)), sum(length(detail)) FROM dead_letters"
        ).fetchone()
    assert topic_bytes <= 200 * 512
    assert detail_bytes <= 200 * 1024


def test_packets_far_over_the_payload_limit_never_reach_serve(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Over MQTT 5, serve announces a Maximum Packet Size: a 3 MB publish is dropped by the
    broker instead of being read into memory, while a payload just over MQTTHUB_MAX_PAYLOAD
    still arrives and becomes a payload_too_large dead letter."""
    big, slightly_big = tmp_path / "big.json", tmp_path / "slightly_big.json"
    big.write_text('{"x": "' + "a" * 3_000_000 + '"}')
    slightly_big.write_text('{"x": "' + "a" * 100_000 + '"}')
    with serve_for(mosquitto.port, tmp_path) as serve:
        assert serve.get("/api/connection").json()["protocol"] == "MQTT 5"
        for path in (big, slightly_big):
            subprocess.run(
                [
                    *("mosquitto_pub", "-h", mosquitto.host, "-p", str(mosquitto.port)),
                    *("-V", "mqttv5", "-q", "1", "-t", "devices/big/sensor", "-f", str(path)),
                ],
                check=True,
                timeout=60,
            )
        mosquitto_pub(mosquitto, "devices/after/sensor", VALID, qos=1)
        wait_until(lambda: device(serve, "after"), what="the reading after the big payloads")
        [letter] = wait_until(lambda: dead_letters(serve, "payload_too_large"))
        assert letter["payload_size"] == slightly_big.stat().st_size
        assert serve.get("/api/stats").json()["messages_received"] == 2
