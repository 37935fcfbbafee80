"""The device page's Download CSV button in a real headless Chromium, with and without an
API token (a bearer token cannot ride on a link: the page fetches the file with it)."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page

from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import device, serve_for, wait_until


@pytest.mark.parametrize("token", ["", "download-test-token"])
def test_download_button_saves_the_ranges_readings_as_csv(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path, token: str
) -> None:
    """The button downloads the device's readings of the chosen range (1 h by default) as
    a CSV file named after the device: older readings and other devices are not in it."""
    env = {"MQTTHUB_API_TOKEN": token} if token else {}
    now = time.time()
    with serve_for(mosquitto.port, tmp_path / "serve", **env) as serve:
        readings = [{"ts": now - 3000 + i * 300, "t": 20 + i, "h": 50 - i} for i in range(10)]
        readings.append({"ts": now - 7200, "t": -1})  # two hours ago: outside the range
        mosquitto_pub(mosquitto, "devices/dl-1/sensor", json.dumps(readings))
        mosquitto_pub(mosquitto, "devices/dl-2/sensor", json.dumps({"t": 99}))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        wait_until(
            lambda: (
                serve.get("/api/devices/dl-2", headers=headers).status_code == 200
                and serve.get("/api/devices/dl-1", headers=headers).status_code == 200
            ),
            what="both devices",
        )
        if token:
            page.add_init_script(f"sessionStorage.setItem('mqtthub-api-token', '{token}')")
        else:
            assert device(serve, "dl-1") is not None
        page.goto(serve.base_url + "/#/device/dl-1")
        page.wait_for_selector('.chart[data-metric="t"] .main-svg', timeout=15_000)
        with page.expect_download(timeout=15_000) as info:
            page.click("#download-csv")
        download = info.value
        assert download.suggested_filename.startswith("mqtthub-dl-1-")
        assert download.suggested_filename.endswith(".csv")
        rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(), newline="")))
    assert rows[0] == ["device_id", "metric", "ts", "value"]
    assert len(rows) == 1 + 20
    assert {row[0] for row in rows[1:]} == {"dl-1"}
    assert sorted(float(row[3]) for row in rows[1:] if row[1] == "t") == [
        20.0 + i for i in range(10)
    ]
