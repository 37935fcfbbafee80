"""The dashboard in a real headless Chromium, against a running serve and a real broker.

Screenshots land in tests/artifacts/ (look at them); the fleet first-view time with 5,000
devices is written to tests/artifacts/fleet_timing.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from playwright.sync_api import Page

from mqtthub.pipeline import RawMessage, build_batch, parse_all
from mqtthub.presence import PresenceEngine
from mqtthub.store.database import Store
from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import ServeProcess, device, serve_for, wait_until

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
XSS_NAME = "<img src=x onerror=alert(1)>"


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=full_page)
    return path


def test_a_device_appears_and_turns_online_live(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The fleet page shows a device as soon as it publishes, without a reload."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        page.goto(serve.base_url + "/")
        page.wait_for_selector("#fleet-empty:not([hidden])")
        mosquitto_pub(mosquitto, "devices/live1/sensor", '{"temperature": 21.5, "humidity": 40}')
        page.wait_for_selector('tr[data-id="live1"] .dot.online', timeout=10_000)
        row = page.locator('tr[data-id="live1"]')
        assert "temperature=21.5" in row.inner_text()
        assert page.locator("#count-online").inner_text() == "1"
        mosquitto_pub(mosquitto, "devices/live1/status", "offline")
        page.wait_for_selector('tr[data-id="live1"] .dot.offline', timeout=10_000)
        screenshot(page, "fleet-live.png")


def test_device_page_shows_a_chart_with_points(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Opening a device shows one chart per metric, with the readings as points."""
    now = time.time()
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        readings = [
            {"ts": now - 3000 + i * 300, "temperature": 20 + i / 2, "humidity": 50 - i}
            for i in range(10)
        ]
        mosquitto_pub(mosquitto, "devices/chart1/sensor", json.dumps(readings))
        page.goto(serve.base_url + "/")
        page.click('tr[data-id="chart1"] a')
        page.wait_for_selector('.chart[data-metric="temperature"] .main-svg', timeout=15_000)
        points = page.evaluate(
            "document.querySelector('.chart[data-metric=\"temperature\"]').data[2].y.length"
        )
        assert points == 10
        assert page.locator("#device-title").inner_text() == "chart1"
        assert "chart1/sensor" in page.locator("#recent-messages").inner_text()
        screenshot(page, "device.png")


def test_hostile_names_render_as_text(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A device named <img src=x onerror=alert(1)> shows as that text, and nothing runs."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        mosquitto_pub(mosquitto, "devices/evil1/sensor", '{"t": 1}')
        wait_until(lambda: device(serve, "evil1"), what="evil1 stored")
        serve_patch = httpx.patch(
            f"{serve.base_url}/api/devices/evil1", json={"name": XSS_NAME}, timeout=5
        )
        assert serve_patch.status_code == 200
        mosquitto_pub(mosquitto, "devices/evil1/status", '{"status": "offline", "ts": 1}')
        page.goto(serve.base_url + "/")
        name_cell = page.locator('tr[data-id="evil1"] td').nth(2)
        name_cell.wait_for()
        assert name_cell.inner_text() == XSS_NAME
        assert page.locator("#device-rows img").count() == 0
        page.click('tr[data-id="evil1"] a')
        page.locator("#device-title", has_text="evil1").wait_for()
        assert XSS_NAME in page.locator("#device-title").inner_text()
        policy = httpx.get(serve.base_url + "/", timeout=5).headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_token_is_asked_once_and_kept_for_the_session(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """With MQTTHUB_API_TOKEN the dashboard asks for the token, then works."""
    token = "browser-test-token-1"
    with serve_for(mosquitto.port, tmp_path / "serve", MQTTHUB_API_TOKEN=token) as serve:
        mosquitto_pub(mosquitto, "devices/tok1/sensor", '{"t": 1}')
        page.goto(serve.base_url + "/")
        page.wait_for_selector("#token-form:not([hidden])")
        page.fill("#token-input", token)
        page.click("#token-form button")
        page.wait_for_selector('tr[data-id="tok1"]')
        page.reload()
        page.wait_for_selector('tr[data-id="tok1"]')
        assert page.locator("#token-form").is_hidden()


def seed_fleet(database: Path, count: int) -> None:
    """Register ``count`` devices with seven values each, straight into the store."""
    store = Store.open(f"sqlite:///{database}")
    now = time.time()
    payload = (
        '{"temperature":23.4,"humidity":51.2,"pressure":1012.8,"light":312,"rssi":-61,'
        '"voltage":3.29,"uptime":86400}'
    )
    messages = [
        RawMessage(f"devices/fleet{n:05d}/sensor", payload.encode(), 1, False, now)
        for n in range(count)
    ]
    store.write(
        build_batch(
            parse_all(messages, prefix="devices", max_payload=65536), presence=PresenceEngine()
        )
    )
    store.close()


def test_fleet_of_5000_devices_renders_its_first_view(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """5,000 devices: the fleet page's first full view; the time goes to the artifacts."""
    workdir = tmp_path / "serve"
    (workdir / "data").mkdir(parents=True)
    seed_fleet(workdir / "data" / "mqtthub.db", 5000)
    with ServeProcess(
        workdir=workdir, env={"MQTTHUB_BROKER_URL": f"mqtt://127.0.0.1:{mosquitto.port}"}
    ) as serve:
        page.goto(serve.base_url + "/")
        # Locators, not wait_for_function: the page's CSP forbids the eval that would need.
        page.locator("#device-rows tr").nth(29).wait_for(timeout=30_000)
        first_view_ms = page.evaluate("performance.now()")  # the first screenful is there
        page.locator("#device-rows tr").nth(4999).wait_for(timeout=30_000)
        all_rows_ms = page.evaluate("performance.now()")
        ARTIFACTS.mkdir(exist_ok=True)
        timing = {"devices": 5000, "first_view_ms": first_view_ms, "all_rows_ms": all_rows_ms}
        (ARTIFACTS / "fleet_timing.json").write_text(json.dumps(timing))
        print(f"5000 devices: first view {first_view_ms:.0f} ms, all rows {all_rows_ms:.0f} ms")
        assert page.locator("#count-total").inner_text() == "5000"
        assert first_view_ms < 10_000  # a gross regression; the figure itself is reported
        screenshot(page, "fleet-5000.png", full_page=False)  # 5,000 rows are too tall
