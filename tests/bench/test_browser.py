"""report.html in a real browser: headless Chromium opens it from disk, with no console errors and
every image loaded; a screenshot is kept as test-artifacts/report.png (git-ignored).

The browser is driven through chromedriver's W3C WebDriver HTTP API with urllib, so the test
needs no Python package beyond the standard library; chromedriver's legacy log endpoint gives
the browser console (errors, failed resource loads). A negative control page with a broken
image and a console.error proves the checks would see a problem.
Skipped, with the reason, when chromium or chromedriver is not installed. Override the
binaries with EDGEBENCH_CHROMIUM / EDGEBENCH_CHROMEDRIVER.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.report import write_report

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "report_run"
SCREENSHOT = REPO / "test-artifacts" / "report.png"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags: run as root in a container (--no-sandbox), and no background traffic (no network here).
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-default-apps", "--disable-extensions", "--window-size=1400,1000"]
IMAGES_JS = "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth]);"


def _binaries() -> tuple[str, str] | str:
    """(browser, driver) paths, or why they cannot be used."""
    browser = os.environ.get("EDGEBENCH_CHROMIUM") or next((p for b in BROWSERS if (p := shutil.which(b))), None)
    driver = os.environ.get("EDGEBENCH_CHROMEDRIVER") or shutil.which("chromedriver")
    if not browser:
        return f"no Chromium found (looked for {', '.join(BROWSERS)} on PATH; set EDGEBENCH_CHROMIUM)"
    if not driver:
        return "no chromedriver found on PATH (apt-get install chromium-driver, or set EDGEBENCH_CHROMEDRIVER)"
    return browser, driver


class WebDriver:
    """The few W3C WebDriver calls this test needs, over chromedriver's HTTP port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.session = ""

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:  # WebDriver errors come back as JSON bodies; show them
            raise AssertionError(f"webdriver {method} {path}: {exc.read().decode(errors='replace')[:500]}") from None

    def open(self, url: str) -> None:
        self.call("POST", f"/session/{self.session}/url", {"url": url})

    def script(self, source: str) -> Any:
        return self.call("POST", f"/session/{self.session}/execute/sync", {"script": source, "args": []})

    def console(self) -> list[dict[str, Any]]:
        """Browser console entries since the last call (chromedriver's log endpoint drains them)."""
        return self.call("POST", f"/session/{self.session}/se/log", {"type": "browser"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    found = _binaries()
    if isinstance(found, str):
        pytest.skip(found)
    chrome, driver_bin = found
    port = _free_port()
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    process = subprocess.Popen([driver_bin, f"--port={port}", f"--log-path={log}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = WebDriver(port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if driver.call("GET", "/status", timeout=2).get("ready"):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass  # not listening yet
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"chromedriver did not start on port {port}; see {log}")
            time.sleep(0.2)
        profile = tmp_path_factory.mktemp("chromium-profile")
        capabilities = {"browserName": "chrome", "goog:loggingPrefs": {"browser": "ALL"},
                        "goog:chromeOptions": {"binary": chrome, "args": CHROME_ARGS + [f"--user-data-dir={profile}"]}}
        session = driver.call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, timeout=120)
        driver.session = session["sessionId"]
        yield driver
        driver.call("DELETE", f"/session/{driver.session}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _errors(entries: list[dict[str, Any]]) -> list[str]:
    return [e.get("message", "") for e in entries if e.get("level") == "SEVERE"]


def test_checks_catch_a_broken_page(browser: WebDriver, tmp_path: Path) -> None:
    """Negative control: a missing image and a console.error must both be seen."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><body><img alt="missing" src="missing.png">'
                    '<script>console.error("planted error")</script></body></html>')
    browser.console()  # drain anything earlier
    browser.open(page.as_uri())
    images = browser.script(IMAGES_JS)
    errors = _errors(browser.console())
    assert images == [["missing", True, 0]]
    assert any("planted error" in e for e in errors), errors
    assert any("missing.png" in e for e in errors), errors


def test_report_renders_in_chromium(browser: WebDriver, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    html_path, _ = write_report(run)
    browser.console()
    browser.open(html_path.resolve().as_uri())
    assert browser.script("return document.readyState") == "complete"
    errors = _errors(browser.console())
    assert not errors, f"console errors in report.html: {errors}"
    images = browser.script(IMAGES_JS)
    assert len(images) >= 5, images  # 4 charts + the explanation grid and the per-row plot
    broken = [alt for alt, complete, width in images if not complete or width == 0]
    assert not broken, f"images that did not load: {broken}"
    assert browser.script("return document.querySelectorAll('table tbody tr').length") >= 10
    # a tall window captures the whole page in one W3C screenshot
    height = int(browser.script("return document.documentElement.scrollHeight"))
    browser.call("POST", f"/session/{browser.session}/window/rect", {"width": 1400, "height": min(height + 100, 12000)})
    png = base64.b64decode(browser.call("GET", f"/session/{browser.session}/screenshot"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(png)
    print(f"\nreport screenshot: {SCREENSHOT}")
