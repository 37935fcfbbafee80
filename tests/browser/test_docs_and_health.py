"""The API docs and the Health page in a real headless Chromium, against a running serve."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import ConsoleMessage, Page, Route

from support.mosquitto import MosquittoBroker
from support.serve import serve_for

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def page(page: Page) -> Iterator[Page]:
    """The shared page, failing the test on a console error too (a Content-Security-Policy
    violation is one)."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    page.on("console", console)
    yield page
    assert errors == [], errors


def test_api_docs_show_the_operations(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """/docs renders Swagger UI from the installed package: the operations are listed."""
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        page.goto(serve.base_url + "/docs")
        page.get_by_text("/api/devices/{device_id}/series").first.wait_for(timeout=15_000)
        assert page.get_by_text("/api/devices", exact=True).first.is_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"))


def test_health_rates_show_a_dash_until_two_samples_exist(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The Health page never shows NaN: a dash until two samples of the counters exist.

    /healthz (which has no counters) is held back until a live stats sample arrived, the
    order in which the page used to compute a rate from a sample without counters.
    """
    held: list[Route] = []
    page.route("**/healthz", lambda route: held.append(route))
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        page.goto(serve.base_url + "/#/health")
        page.evaluate(
            """() => {
                window.rateTexts = [];
                const node = document.getElementById("rate-received");
                new MutationObserver(() => window.rateTexts.push(node.textContent))
                    .observe(node, {childList: true, characterData: true, subtree: true});
            }"""
        )
        # The first live sample sets the queue depth while /healthz is still held.
        page.locator("#health-queue", has_text="0").wait_for(timeout=15_000)
        assert len(held) == 1
        held[0].continue_()
        # Then two more samples give a real rate.
        page.locator("#rate-received", has_text="0").wait_for(timeout=15_000)
        texts = page.evaluate("window.rateTexts")
        assert "NaN" not in texts, texts
        assert texts[-1] == "0"
        assert "NaN" not in page.locator("#health-page").inner_text()
        page.close()  # before serve stops, which would cut the live stream short
