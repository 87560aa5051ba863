"""Headless Chromium (Debian's, driven by Playwright) loads the dashboard of a running demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import eventmon
from eventmon.core import _native
from servers import require_binary

from ._demo import TOKEN, demo

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _number(text: str) -> float:
    cleaned = re.sub(r"[^0-9.]", "", text)
    return float(cleaned) if cleaned else -1.0


def test_dashboard_in_chromium_updates_and_shows_firing_alert(artifacts_dir: Path) -> None:
    chromium = require_binary("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with demo() as (_proc, base), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            outside: list[str] = []
            page.on(
                "request",
                lambda req: None if req.url.startswith(base) else outside.append(req.url),
            )
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/eventmon/?token={TOKEN}")
            page.wait_for_selector("#conn.on", timeout=10_000)  # the event stream is live

            # The numbers change as the load runs.
            first = _number(page.inner_text("#total-requests"))
            page.wait_for_function(
                f"() => Number(document.getElementById('total-requests').textContent"
                f".replace(/[^0-9.]/g, '')) > {first + 20}",
                timeout=15_000,
            )
            assert _number(page.inner_text("#rps")) > 0
            # The endpoint table filled from the paginated API.
            # (It refreshes on a timer: its first fill may predate the load's first request.)
            page.wait_for_function(
                "() => document.querySelector('#endpoints').innerText"
                ".includes('/events/{event_id}')",
                timeout=15_000,
            )
            assert "/events/{event_id}" in page.inner_text("#endpoints")
            # Charts are drawn (inline SVG polylines, no library).
            page.wait_for_selector("#chart-rps polyline", timeout=10_000)

            # The ticket sale opens: a firing alert appears, and the fleet scales out.
            page.wait_for_selector("#alerts li[data-state=firing]", timeout=30_000)
            firing = page.inner_text("#alerts")
            assert re.search(r"high_error_rate|slow_checkout|high_p95_response_time", firing)
            page.wait_for_selector("#scaling li.scale-event", timeout=30_000)
            assert "instances" in page.inner_text("#scaling")

            # Sorting the table by p95 asks the API and re-renders in that order.
            page.click("#endpoints th[data-sort=p95_ms]")
            page.wait_for_selector("#endpoints th.sorted[data-sort=p95_ms]", timeout=5_000)

            # The header names the version and the request path (C, as CI builds it).
            build = "C accelerator" if _native.speedups is not None else "pure Python"
            assert page.inner_text("#build") == f"v{eventmon.__version__} · {build}"

            shot = artifacts_dir / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            assert errors == []
            assert outside == []  # nothing loaded from anywhere but the app
        finally:
            browser.close()


def test_dashboard_without_token_shows_login(artifacts_dir: Path) -> None:
    chromium = require_binary("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with demo("--no-load") as (_proc, base), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            response = page.goto(f"{base}/eventmon/")
            assert response is not None
            assert response.status == 401
            page.fill("input[name=token]", TOKEN)
            page.click("button")
            page.wait_for_selector("#conn.on", timeout=10_000)
            assert page.url.endswith(f"token={TOKEN}")
        finally:
            browser.close()


def test_dashboard_shows_a_pure_python_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As if installed from source without a compiler: the extension cannot be imported.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['eventmon.core._speedups'] = None\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv("EVENTMON_PURE_PYTHON", raising=False)
    chromium = require_binary("chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with demo("--no-load") as (_proc, base), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{base}/eventmon/?token={TOKEN}")
            page.wait_for_selector("#build[data-accelerator=python]", timeout=10_000)
            assert page.inner_text("#build") == f"v{eventmon.__version__} · pure Python"
            title = page.get_attribute("#build", "title") or ""
            assert "the C extension is not built" in title
        finally:
            browser.close()
