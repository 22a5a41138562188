"""Headless Chromium through Selenium, for the tests of the HTML pages (and bin/ screenshots).

Uses Debian's chromium and chromedriver (no browser download at run time). Without them the
browser tests are skipped, except under CI (CI=true), where .ci/run installs them and a
missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def available() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    if not (CHROMIUM and os.path.exists(CHROMEDRIVER)):
        return "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    return None


@contextmanager
def chromium(width: int = 1200, height: int = 900) -> Iterator:
    """A headless Chromium window of the given size whose console messages can be read."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def drag_split(driver, fraction: float) -> None:
    """Drag the viewer's split handle to ``fraction`` of the viewer's width, as a user would."""
    from selenium.webdriver.common.action_chains import ActionChains

    view = driver.find_element("css selector", ".viewer")
    handle = driver.find_element("css selector", ".handle")
    offset = fraction * view.size["width"] - (handle.location["x"] + handle.size["width"] / 2 - view.location["x"])
    ActionChains(driver).click_and_hold(handle).move_by_offset(int(offset), 0).release().perform()
