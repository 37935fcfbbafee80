"""The dashboard's Alerts page in a real headless Chromium, against a running serve."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from support.mosquitto import MosquittoBroker, mosquitto_pub
from support.serve import serve_for, wait_until


def test_a_rule_made_on_the_page_fires_live_and_is_acknowledged(
    page: Page, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with serve_for(mosquitto.port, tmp_path / "serve") as serve:
        page.goto(serve.base_url + "/#/alerts")
        form = page.locator("#rule-form")
        form.locator("[name=name]").fill("<b>too hot</b>")  # shown as text, never as HTML
        form.locator("[name=condition]").select_option("above")
        form.locator("[name=metric]").fill("t")
        form.locator("[name=threshold]").fill("30")
        form.get_by_role("button", name="Add rule").click()
        expect(page.locator("#rule-rows")).to_contain_text("<b>too hot</b>")
        expect(page.locator("#rule-rows")).to_contain_text("t above 30")
        wait_until(lambda: serve.get("/api/alert-rules").json(), what="the rule stored")
        mosquitto_pub(mosquitto, "devices/oven/sensor", '{"t": 41}')
        row = page.locator("#open-alert-rows tr", has_text="oven")
        expect(row).to_contain_text("firing", timeout=15_000)  # the live event reloads the list
        row.get_by_role("button", name="Acknowledge").click()
        expect(row).to_contain_text("acknowledged")
        assert page.locator("#rule-rows b").count() == 0
