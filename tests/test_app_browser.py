"""The chat app as a visitor uses it: `python -m app`'s server on a free local port, a real headless browser.

Debian's Chromium and chromedriver (tests/run.sh installs them with apt when run as root), driven
by Selenium, which downloads nothing (app/browser.py). The page must show exactly what
`model.generate` answers for the same picture and prompt, carry the conversation into the second
turn as fine-tuning wrote conversations, show an unreadable upload as an error, and make no request
to any host but its own.
"""

from __future__ import annotations

import json

import pytest

from app.browser import answers, headless_chromium, missing_browser, send, set_temperature, upload, wait_until
from app.chat_prompt import conversation_ids
from data.modality_inputs import read_inputs
from model.tokenizer import format_prompt

CAPTION = "Generate caption of this image"
SECOND = "What shape is it?"
MAX_LENGTH = 128  # the page's default maximum length

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))


@pytest.fixture(scope="module")
def browser():
    driver = headless_chromium(log_network=True)
    yield driver
    driver.quit()


def ask(driver, question: str, turn: int, expected: str) -> None:
    send(driver, question)
    try:
        wait_until(lambda: len(answers(driver)) == turn and answers(driver)[-1] == expected, f"the answer {expected!r}")
    except TimeoutError:
        pytest.fail(f"the page shows {answers(driver)}; model.generate answered {expected!r}")


def test_the_page_answers_as_generate_does_turn_after_turn(app_server, browser, app_files):
    from selenium.webdriver.common.by import By

    llm = app_files.load()  # as the app loads it, with the app's one thread (app_server), so greedy choices agree
    inputs = read_inputs({"Image": [app_files.pictures[0], 1]})
    first = llm.generate(inputs, [format_prompt(CAPTION)], max_gen_len=MAX_LENGTH, temperature=0)[0]
    second_prompt = conversation_ids(llm.tokenizer, [(CAPTION, first)], SECOND)
    second = llm.generate(inputs, [second_prompt], max_gen_len=MAX_LENGTH, temperature=0)[0]
    assert first and second

    app_url = app_server[0]
    browser.get(app_url)
    upload(browser, "Image", app_files.pictures[0])
    wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "#image-preview img"), "the picture's preview")
    set_temperature(browser, 0)

    ask(browser, CAPTION, 1, first)
    ask(browser, SECOND, 2, second)

    browser.find_element(By.CSS_SELECTOR, '#upload-image button[aria-label="Clear"]').click()
    upload(browser, "Image", app_files.broken)
    toast = wait_until(lambda: [t.text for t in browser.find_elements(By.CSS_SELECTOR, '[data-testid="toast-text"]')
                                if "cannot be read" in t.text], "the error message")
    assert toast[0].startswith("broken.png cannot be read as a picture")

    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")):
                hosts.add(url.split("/")[2])
    assert hosts == {app_url.split("/")[2]}  # nothing fetched from any other host
