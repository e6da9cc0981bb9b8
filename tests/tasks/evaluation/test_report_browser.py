"""report.html opened in a real headless browser: Debian's Chromium, driven by Playwright.

`make test` installs Chromium when it is missing (scripts/ensure-chromium.sh)."""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.evaluation import report
from tests.tasks.evaluation.test_report import DECISION, INCOMING, finished_run


def test_the_report_renders_with_no_failed_request_and_no_script_error(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Chromium is missing: run scripts/ensure-chromium.sh (make test does)"
    # Given a night's report
    path = report.write_report(finished_run(tmp_path), decision=DECISION, incoming=INCOMING)

    # When Chromium opens it from disk, watching every request and error
    failed: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to start as root (CI) with its sandbox
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("requestfailed", lambda request: failed.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(path.as_uri(), wait_until="load")
            images = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.alt, e.complete && e.naturalWidth > 0])"
            )
            headings = page.eval_on_selector_all("h2", "els => els.map(e => e.textContent)")
            title = page.title()
        finally:
            browser.close()

    # Then nothing failed, and the page shows its plots and sections
    assert failed == [] and errors == []
    assert images == [
        ["training-curves", True],
        ["confusion-matrix", True],
        ["calibration", True],
    ]
    assert title == "Run night-2"
    assert "Champion decision (McNemar, same held-out reviews)" in headings
    assert "Environment" in headings
