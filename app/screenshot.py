"""python -m app.screenshot: a picture of a real run of the app, for the README.

    bash exps/demo.sh && python -m app.screenshot        # docs/app.png: the demo's model, a held-out picture

It serves the app as `python -m app` does (the same flags; none: the demo's files), opens it in
Debian's headless Chromium (app/browser.py; selenium from tests/requirements.txt), uploads a picture,
asks the questions at temperature 0, waits for each answer, and saves the window as a PNG with
a reduced palette (small enough to keep in the repository).
"""

from __future__ import annotations

import io
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from app.__main__ import REPO_ROOT, build_parser, demo_folder, serve

logger = logging.getLogger("app.screenshot")

QUESTIONS = ("What colour is the shape?", "What shape is it?")


def parser():
    p = build_parser()
    p.prog = "python -m app.screenshot"
    p.description = "Save a screenshot of the app answering questions about a picture."
    p.add_argument("--output", default=str(REPO_ROOT / "docs" / "app.png"), help="the PNG to write")
    p.add_argument("--picture", default=None,
                   help="the picture to ask about; default the demo's first held-out picture")
    p.add_argument("--question", action="append", default=None, help="a question (repeat for more turns)")
    return p


def take(url: str, picture: Path, questions: Sequence[str], output: Path) -> Path:
    from PIL import Image
    from selenium.webdriver.common.by import By

    from app.browser import answers, headless_chromium, send, set_temperature, upload, wait_until

    driver = headless_chromium(width=1280, height=1000)
    try:
        driver.get(url)
        upload(driver, "Image", picture)
        wait_until(lambda: driver.find_elements(By.CSS_SELECTOR, "#image-preview img"), "the preview")
        set_temperature(driver, 0)
        for turn, question in enumerate(questions, start=1):
            send(driver, question)
            wait_until(lambda: len(answers(driver)) == turn, f"answer {turn}", timeout=120)
            # the answer is complete when the chat's progress marks are gone
            wait_until(lambda: not driver.find_elements(By.CSS_SELECTOR, "#chat .generating, #chat .pending"),
                       f"the end of answer {turn}", timeout=120)
            time.sleep(0.5)
        png = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    output.parent.mkdir(parents=True, exist_ok=True)
    # flat colours: a 64-colour palette loses nothing visible and keeps the file small
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=64)
    image.save(output, optimize=True)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    from engine.run import exit_on_user_error
    from util.log import init_logger

    args = parser().parse_args(argv)
    init_logger(0)
    picture = Path(args.picture or demo_folder() / "assets" / "shapes" / "pictures" / "held_out_000.png")
    with exit_on_user_error():
        if not picture.is_file():
            raise FileNotFoundError(f"{picture}: no such picture (run `bash exps/demo.sh`, or give --picture)")
        page, blocks = serve(args, block=False)
        try:
            output = take(f"http://127.0.0.1:{args.port}/", picture, args.question or QUESTIONS, Path(args.output))
        finally:
            blocks.close()
            page.files.remove_all()
    logger.info("wrote %s (%.0f KB)", output, output.stat().st_size / 1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
