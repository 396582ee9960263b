"""The pages in a real headless Chromium (Debian's package, driven by Playwright): login, a
fall appearing live on the console, acknowledging it, the family view's boundary, the
evidence chart, and the regulator's figures. With ANKANG_SCREENSHOT_DIR set, each page is
saved there as a PNG (the pictures in docs/img come from this)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.api.conftest import PASSWORD, ApiProcess, login, raise_alarm

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling hosts a closed network refuses.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def browser(api: ApiProcess) -> Iterator[Browser]:
    # after the API and its database: their set-up runs asyncio, which Playwright's sync
    # API (an event loop of its own on this thread) would not allow once started
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, api: ApiProcess, username: str, path: str = "/") -> None:
    page.goto(f"{api.url}{path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("[data-testid=login-submit]")


def shot(page: Page, name: str) -> None:
    target = os.environ.get("ANKANG_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def test_login_lands_each_role_on_its_page_and_refuses_a_wrong_password(page: Page, api: ApiProcess) -> None:
    page.goto(f"{api.url}/console")
    expect(page).to_have_url(f"{api.url}/login?next=%2Fconsole")
    page.fill("input[name=username]", "staff-a")
    page.fill("input[name=password]", "not the password")
    page.click("[data-testid=login-submit]")
    expect(page.get_by_test_id("login-error")).to_be_visible()
    shot(page, "login")
    page.fill("input[name=username]", "staff-a")
    page.fill("input[name=password]", PASSWORD)
    page.click("[data-testid=login-submit]")
    expect(page).to_have_url(f"{api.url}/console")
    expect(page.get_by_test_id("who")).to_have_text("staff-a")


def test_a_fall_appears_live_on_the_console_and_is_acknowledged(
    page: Page, api: ApiProcess, api_db: str
) -> None:
    sign_in(page, api, "staff-a", "/console")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    alarm = raise_alarm(api_db, "fall", facility="fa", resident="RA2", device="watch-a2")
    row = page.locator(f"[data-alarm-id='{alarm}']")
    # no reload: the stream brings it (well within a second on a quiet machine; allow for a busy one)
    expect(row).to_be_visible(timeout=5000)
    expect(row).to_have_attribute("data-state", "open")
    expect(row).to_contain_text("跌倒")
    expect(row).to_contain_text("李二")
    expect(page.locator("body")).to_have_attribute("data-alarming", "high")
    shot(page, "console")
    row.locator(".note").fill("已到床边")
    row.locator(".ack").click()
    expect(row).to_have_attribute("data-state", "acknowledged")
    with psycopg.connect(api_db) as conn:
        state = conn.execute("SELECT state, acknowledged_by FROM alarms WHERE id = %s", (alarm,)).fetchone()
        note = conn.execute(
            "SELECT note FROM alarm_events WHERE alarm_id = %s AND action = 'acknowledged'", (alarm,)
        ).fetchone()
    assert state == ("acknowledged", "staff-a")
    assert note == ("已到床边",)
    row.locator(".resolution").select_option("real_incident")
    row.locator(".resolve").click()
    expect(row).to_have_count(0)


def test_the_evidence_page_draws_the_acceleration_around_a_fall(
    page: Page, api: ApiProcess, api_db: str
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    with psycopg.connect(api_db, autocommit=True) as conn:
        for i in range(6):
            acc = np.tile(np.array([0.0, 0.0, 1.0], "<f4"), (50, 1))
            if i == 3:
                acc[5:10, 2] = [2.2, 3.8, 2.9, 0.4, 0.2]
            conn.execute(
                "INSERT INTO waveforms (device_id, ts, seq, rate_hz, n, acc)"
                " VALUES ('watch-a2', %s, %s, 50, 50, %s)",
                (t0 + timedelta(seconds=i), 7000 + i, acc.tobytes()),
            )
    alarm = raise_alarm(
        api_db,
        "fall",
        facility="fa",
        resident="RA2",
        device="watch-a2",
        t=t0 + timedelta(seconds=3),
        window=(t0, t0 + timedelta(seconds=6)),
    )
    sign_in(page, api, "staff-a", f"/console/alarms/{alarm}?lang=en")
    chart = page.get_by_test_id("evidence-chart")
    expect(chart).to_have_attribute("data-series", "1")
    expect(chart.locator("polyline")).to_have_count(1)
    expect(page.get_by_test_id("audit").locator("li")).to_have_count(1)  # opened
    shot(page, "evidence")


def test_a_family_sees_its_relative_and_never_another(page: Page, api: ApiProcess, api_db: str) -> None:
    own = raise_alarm(api_db, "bed_exit", facility="fa", room="101", resident="RA1", device="bed-a1")
    other = raise_alarm(api_db, "sos", facility="fa", room="101", resident="RA2", device="watch-a2")
    with psycopg.connect(api_db, autocommit=True) as conn:
        conn.execute("INSERT INTO readings VALUES ('bed-a1', now() - interval '1 minute', 'hr_bpm', 68)")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    sign_in(page, api, "family-a1")
    expect(page).to_have_url(f"{api.url}/family")
    expect(page.get_by_test_id("resident-RA1")).to_be_visible()
    expect(page.get_by_test_id("hr")).to_have_text("68")
    expect(page.get_by_test_id(f"family-alarm-{own}")).to_be_visible()
    expect(page.get_by_test_id(f"family-alarm-{other}")).to_have_count(0)
    expect(page.get_by_test_id("resident-RA2")).to_have_count(0)
    assert "李二" not in page.content()
    shot(page, "family")
    # the console is not a family's, and the API refuses the neighbour from this session too
    page.goto(f"{api.url}/console")
    expect(page).to_have_url(f"{api.url}/family")
    status = page.evaluate("fetch('/api/v1/residents/RA2').then(r => r.status)")
    assert status == 404


def test_the_regulator_dashboard_shows_the_districts_figures(
    page: Page, api: ApiProcess, api_db: str
) -> None:
    fire = raise_alarm(api_db, "fire", facility="fa", room="101", device="smoke-a")
    with login(api, "staff-a") as staff:
        assert (
            staff.post(f"/api/v1/alarms/{fire}/resolve", json={"resolution": "false_alarm"}).status_code
            == 200
        )
    sign_in(page, api, "reg-east")
    expect(page).to_have_url(f"{api.url}/regulator")
    district = page.get_by_test_id("district-东区")
    expect(district).to_be_visible()
    with login(api, "reg-east") as reg:
        (east,) = reg.get("/api/v1/reports/districts").json()
    total = east["total"]
    expect(district.get_by_test_id("fig-coverage")).to_contain_text(
        f"{total['coverage']['covered']}/{total['coverage']['rooms']}"
    )
    expect(district.get_by_test_id("fig-nursing")).to_contain_text(
        f"{total['nursing']['nursing']}/{total['nursing']['beds']}"
    )
    assert total["fire"]["false_alarm"] >= 1
    expect(district.get_by_test_id("fig-fire")).to_contain_text(str(total["fire"]["total"]))
    expect(district.get_by_test_id("daily-bars").locator("rect")).not_to_have_count(0)
    expect(district.get_by_test_id("row-fa")).to_be_visible()
    expect(page.get_by_test_id("district-西区")).to_have_count(0)
    shot(page, "regulator")
    # read-only: the regulator has no console
    page.goto(f"{api.url}/console")
    expect(page).to_have_url(f"{api.url}/regulator")


def test_pages_switch_language(page: Page, api: ApiProcess) -> None:
    sign_in(page, api, "staff-a", "/console")
    expect(page.locator("h1")).to_have_text("实时告警")
    page.get_by_test_id("lang-switch").click()
    expect(page.locator("h1")).to_have_text("Live alarms")


def test_logged_out_pages_and_api_refuse(api: ApiProcess) -> None:
    for path in ("/console", "/family", "/regulator"):
        response = httpx.get(f"{api.url}{path}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")


def test_a_session_ended_elsewhere_takes_the_console_to_the_login_page(page: Page, api: ApiProcess) -> None:
    sign_in(page, api, "staff-a", "/console")
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "ankang_session")
    ended = httpx.delete(f"{api.url}/api/v1/auth/token", headers={"Authorization": f"Bearer {token}"})
    assert ended.status_code == 204
    # The stream ends at its next look at the session. The browser's own reconnect is then
    # refused (401), which an EventSource does not retry: the console asks why and goes to log in.
    expect(page).to_have_url(re.compile(r"/login\?next=(/|%2F)console$"), timeout=20_000)
