"""The chat app: a checkpoint served as a page in the browser (python -m app).

    __main__.py     the command line: which files to load (the demo's by default), where to listen
    page.py         the Gradio page: inputs of every modality with weights, the chat, its controls
    engine.py       ChatEngine: one model shared by every session, answers streamed, one at a time, stoppable
    chat_prompt.py  a conversation as one prompt, in fine-tuning's layout, newest exchanges kept
    uploads.py      uploaded files: size limit, readable, a temporary folder, removed with their session
    screenshot.py   python -m app.screenshot: a picture of a real run (the README's), by headless Chromium
    browser.py      Debian's Chromium driven by Selenium, nothing downloaded (screenshot.py, the tests)

It sits above data/ (files become tensors there) and model/ (the model generates), like main_eval.py.
"""
