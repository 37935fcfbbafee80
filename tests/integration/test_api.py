"""The read/write API the dashboard uses, against a running serve and a real broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import device, serve_for, wait_until
from support.sse import EventStream


def test_patch_sets_name_labels_timeout_and_manual_status(
    mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """PATCH changes what an operator may change; status is set by hand as 'manual'."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        mosquitto_pub(mosquitto, "devices/p1/sensor", '{"t": 1}')
        wait_until(lambda: device(serve, "p1"), what="p1")
        body = {"name": "Pump 1", "labels": {"site": "north"}, "heartbeat_timeout": 90}
        patched = serve.http.patch("/api/devices/p1", json=body).json()
        assert (patched["name"], patched["labels"], patched["heartbeat_timeout"]) == (
            "Pump 1",
            {"site": "north"},
            90,
        )
        manual = serve.http.patch("/api/devices/p1", json={"status": "offline"}).json()
        assert (manual["status"], manual["status_reason"]) == ("offline", "manual")
        events = serve.get("/api/devices/p1/events").json()
        assert events[0]["reason"] == "manual"
        assert serve.http.patch("/api/devices/p1", json={"colour": "red"}).status_code == 422
        assert serve.http.patch("/api/devices/nobody", json={"name": "x"}).status_code == 404


def test_delete_removes_the_device_and_its_data(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """DELETE answers 204, then the device and its readings are gone (404)."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        mosquitto_pub(mosquitto, "devices/d1/sensor", '{"t": 1}')
        wait_until(lambda: device(serve, "d1"), what="d1")
        assert serve.http.delete("/api/devices/d1").status_code == 204
        assert serve.get("/api/devices/d1").status_code == 404
        assert serve.get("/api/devices/d1/readings").json() == []
        assert serve.http.delete("/api/devices/d1").status_code == 404


def test_series_is_downsampled_server_side(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """A series comes back as min/avg/max per bucket over the requested range."""
    now = float(int(time.time()) // 60 * 60)  # on a minute: buckets of whole minutes align
    readings = [{"ts": now - 600 + i * 10, "v": float(i)} for i in range(60)]
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        mosquitto_pub(mosquitto, "devices/s1/sensor", json.dumps(readings))
        wait_until(lambda: device(serve, "s1"), what="s1")
        params = {"metric": "v", "since": now - 600, "until": now, "bucket": 120}
        series = serve.get("/api/devices/s1/series", params=params).json()
        assert len(series) == 5
        assert sum(point["count"] for point in series) == 60
        assert (series[0]["min"], series[-1]["max"]) == (0, 59)
        bad = serve.get("/api/devices/s1/series", params={**params, "since": now + 10})
        assert bad.status_code == 422


def test_list_pagination_search_and_latest(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """Lists page with limit/offset, say the total, search ids, and can carry latest values."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        for n in range(5):
            mosquitto_pub(mosquitto, f"devices/page{n}/sensor", f'{{"v": {n}}}')
        mosquitto_pub(mosquitto, "devices/other/sensor", '{"v": 9}')
        wait_until(lambda: len(serve.get("/api/devices").json()) == 6, what="6 devices")
        page = serve.get("/api/devices", params={"limit": 2, "offset": 2})
        assert [d["id"] for d in page.json()] == ["page1", "page2"]
        assert page.headers["x-total-count"] == "6"
        found = serve.get("/api/devices", params={"q": "page", "latest": "true"})
        assert found.headers["x-total-count"] == "5"
        assert found.json()[4]["latest"]["v"]["value"] == 4


def test_stream_delivers_device_events(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """/api/stream sends a device event when a device reports."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        with EventStream(serve.base_url, until=lambda s: bool(s.of("device"))) as stream:
            wait_until(
                lambda: (
                    mosquitto_pub(mosquitto, "devices/live9/sensor", '{"v": 7}')
                    or stream.of("device")
                ),
                interval=0.5,
                what="a device event",
            )
        received = stream.of("device")
        assert received[0]["id"] == "live9"
        assert received[0]["latest"]["v"]["value"] == 7


def test_metrics_for_operators(mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    """/metrics speaks Prometheus and counts what happened."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        mosquitto_pub(mosquitto, "devices/m1/sensor", '{"v": 1}')
        mosquitto_pub(mosquitto, "devices/m1/sensor", "not json")
        wait_until(lambda: serve.get("/api/stats").json()["dead_letters"] == 1, what="counted")
        text = serve.get("/metrics").text
        for line in (
            'mqtthub_messages_stored_total{type="sensor"} 1.0',
            'mqtthub_dead_letters_total{reason="invalid_json"} 1.0',
            "mqtthub_mqtt_connected 1.0",
            'mqtthub_devices{status="online"} 1.0',
            "mqtthub_queue_depth 0.0",
        ):
            assert line in text, line
        assert "mqtthub_commit_seconds_bucket" in text
        assert "mqtthub_batch_messages_count" in text
