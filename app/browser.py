"""Debian's headless Chromium under Selenium, with nothing downloaded (app/screenshot.py and the tests).

Selenium's own manager would look up and fetch a browser and a driver; our machines are often
offline, so the browser and its driver are named here (apt-get install chromium chromium-driver)
and the manager is told to stay offline.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "apt-get install -y chromium chromium-driver"


def missing_browser() -> str | None:
    """Why headless Chromium cannot run here (with the command that fixes it), or None."""
    import importlib.util

    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: pip install -r tests/requirements.txt"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.is_file() and shutil.which(path.name) is None:
            return f"{path} not found: {INSTALL_HINT}"
    return None


def headless_chromium(width: int = 1280, height: int = 900, log_network: bool = False):
    """A Selenium WebDriver on Debian's Chromium, headless; log_network keeps its performance log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, if ever reached, must not download
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM if CHROMIUM.is_file() else shutil.which("chromium"))
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-default-apps", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver_path = CHROMEDRIVER if CHROMEDRIVER.is_file() else Path(shutil.which("chromedriver"))
    return webdriver.Chrome(options=options, service=Service(executable_path=str(driver_path)))
