"""Debian's headless Chromium under Selenium, with nothing downloaded (app/screenshot.py and the tests).

Selenium's own manager would look up and fetch a browser and a driver; our machines are often
offline, so the browser and its driver are named here (apt-get install chromium chromium-driver)
and the manager is told to stay offline.
"""

from __future__ import annotations

import os
import shutil
import time
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


# -- the chat page, as a visitor uses it (the elem_ids of app/page.py) ----------------------------

def wait_until(condition, what: str, timeout: float = 60.0):
    """condition()'s first true value, polled; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def upload(driver, modality: str, path: str | Path) -> None:
    """Give `path` to the file input of `modality` (its tab must be the one shown)."""
    from selenium.webdriver.common.by import By

    selector = f"#upload-{modality.lower()} input[type=file]"
    wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, selector), f"the {modality} input")[0].send_keys(str(path))


def set_temperature(driver, value: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    field = driver.find_element(By.CSS_SELECTOR, "#temperature input[type=number]")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(f"{value:g}", Keys.TAB)


def send(driver, question: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, "#question textarea").send_keys(question)
    driver.find_element(By.CSS_SELECTOR, "#send").click()


def answers(driver) -> list[str]:
    """The texts of the model's messages in the chat, oldest first."""
    from selenium.webdriver.common.by import By

    return [element.text for element in driver.find_elements(By.CSS_SELECTOR, '#chat [data-testid="bot"]')]
