"""Headless Debian Chromium driven by Selenium (chromium + chromium-driver from apt; nothing downloads a
browser): open a page offline, wait until every Plotly div has drawn, read the console, take screenshots."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any attempt to reach a host fails
)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (None when they can); CI sets FIBROCLASS_REQUIRE_BROWSER=1
    so a missing browser fails instead of skipping (.ci/run installs it)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            return f"{exe} not found (apt-get install -y chromium chromium-driver)"
    return None


def require_browser() -> None:
    why = browser_missing()
    if why is None:
        return
    if os.environ.get("FIBROCLASS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required but {why}")
    pytest.skip(why)


@contextmanager
def chromium(width: int = 1500, height: int = 1100) -> Iterator:
    """A fresh headless Chromium (own --user-data-dir) with the browser console captured."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="fibroclass-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for_plots(driver, timeout: float = 60.0) -> tuple[int, int]:  # noqa: ANN001 - a WebDriver
    """Wait until every `.plotly-graph-div` is a drawn `.js-plotly-plot` with an svg; (drawn, total)."""
    script = """
      var divs = document.querySelectorAll('.plotly-graph-div');
      var done = 0;
      divs.forEach(function (d) {
        if (d.classList.contains('js-plotly-plot') && d.querySelector('svg.main-svg')) done += 1;
      });
      return [done, divs.length];
    """
    t0 = time.monotonic()
    drawn, total = driver.execute_script(script)
    while drawn < total and time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        drawn, total = driver.execute_script(script)
    return drawn, total


def console_errors(driver) -> list[str]:  # noqa: ANN001
    """SEVERE browser console entries (errors, failed loads) since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def remote_resources(driver) -> list[str]:  # noqa: ANN001
    """URLs the page loaded that are not embedded (data:, blob:) or the file itself."""
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; });"
    )
    return [u for u in urls if not u.startswith(("data:", "blob:", "file:"))]


def full_page_screenshot(driver, path: Path, max_height: int = 20000) -> Path:  # noqa: ANN001
    """A screenshot of the whole page (DevTools: the viewport emulated at the page's full height, capped)."""
    import base64

    time.sleep(0.3)
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    width, height = int(size["width"]), min(int(size["height"]), max_height)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    time.sleep(0.5)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def screenshot_dir(tmp_path: Path) -> Path:
    """Where screenshots go: $FIBROCLASS_SCREENSHOTS (kept, e.g. as CI artifacts) or the test's tmp."""
    out = Path(os.environ.get("FIBROCLASS_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out
