"""The chat app without a browser: its page served in this process, driven through Gradio's own client.

What it must do for every visitor: stream an answer in chunks, stop one when asked, answer two
sessions one after the other (never two generations at once), keep the newest turns of a
conversation too long for the context and say so, refuse unreadable files with a message, remove a
session's uploads when it ends, and serve a page that fetches nothing from the internet.
"""

from __future__ import annotations

import os
import re
import time

import httpx
import pytest
import torch

from app.chat_prompt import conversation_ids, fit_conversation
from app.uploads import UploadError, read_upload
from data.modality_inputs import read_inputs
from data.prompt_tokens import tokenize_exchanges
from data.records import Exchange
from model.tokenizer import format_prompt

CAPTION = "Generate caption of this image"


@pytest.fixture(scope="module")
def served(app_server):
    """(url, page, llm) of the app served for this module (tests/conftest.py: app_server)."""
    url, page = app_server
    return url, page, page.engine.llm


@pytest.fixture
def client(served):
    from gradio_client import Client

    c = Client(served[0], verbose=False)
    yield c
    c.close()


@pytest.fixture
def slow_model(served, tokenizer, monkeypatch):
    """Each token takes 30 ms and the model never ends by itself: generations last long enough to watch."""
    llm = served[2]
    original = llm.llama.last_logits

    def slow(*args, **kwargs):
        time.sleep(0.03)
        logits = original(*args, **kwargs)
        logits[:, llm.tokenizer.eos_id] = float("-inf")
        return logits

    monkeypatch.setattr(llm.llama, "last_logits", slow)
    return llm


def answer_of(output) -> str:
    """The last answer's text in the chat output of a /chat call."""
    from app.page import message_text

    chat = output[0]
    return message_text(chat[-1]) if chat and chat[-1]["role"] == "assistant" else ""


def image_of(app_files):
    from gradio_client import handle_file

    return handle_file(str(app_files.pictures[0]))


# -- the prompt of a conversation ------------------------------------------------------------------

def test_a_first_question_is_generates_prompt_and_later_ones_follow_finetuning(app_files, served):
    tokenizer = served[2].tokenizer
    assert conversation_ids(tokenizer, [], CAPTION) == tokenizer.encode(format_prompt(CAPTION), bos=True, eos=False)
    history = [("What colour is the shape?", "It is red."), ("What shape is it?", "A circle.")]
    trained, _ = tokenize_exchanges(tokenizer, [Exchange(format_prompt(q), a) for q, a in history], max_words=10**6)
    assert conversation_ids(tokenizer, history, CAPTION) == (
        trained.tolist() + tokenizer.encode(format_prompt(CAPTION), bos=False, eos=False))


def test_the_newest_exchanges_that_fit_are_kept(served):
    tokenizer = served[2].tokenizer
    history = [(f"Question {i}?", f"Answer {i}.") for i in range(30)]
    prompt = fit_conversation(tokenizer, history, CAPTION, max_seq_len=300, max_gen_len=40)
    assert 0 < prompt.dropped < 30 and prompt.answer_room == 40
    assert prompt.ids == conversation_ids(tokenizer, history[prompt.dropped:], CAPTION)
    assert len(prompt.ids) + 40 <= 300 < len(conversation_ids(tokenizer, history[prompt.dropped - 1:], CAPTION)) + 40


def test_oversized_and_unreadable_files_are_refused_with_a_reason(app_files, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(app_files.pictures[0].read_bytes() + bytes(2 * 2**20))
    with pytest.raises(UploadError, match=r"big.png is 2.0 MB; this app takes files of at most 1 MB"):
        read_upload("Image", big, max_upload_mb=1)
    with pytest.raises(UploadError, match=r"broken.png cannot be read as a picture"):
        read_upload("Image", app_files.broken, max_upload_mb=1)


# -- the served page -------------------------------------------------------------------------------

def test_the_page_fetches_nothing_from_the_internet(served):
    html = httpx.get(served[0]).text
    loaded = re.findall(r"""<(?:script|link|img|iframe)\b[^>]*?(?:src|href)=["']([^"']+)""", html)
    loaded += re.findall(r"""(?:url\(|@import\s+["'])\s*["']?([^"')\s]+)""", html)
    assert loaded and all(not re.match(r"(https?:)?//", url) or "127.0.0.1" in url for url in loaded), loaded
    # What else names a host: Gradio's social-card <meta> tags and the API page's example values in the
    # embedded config. No browser fetches either (the browser test watches its requests).
    external = set(re.findall(r"https?://(?!127\.0\.0\.1)[^\"'\s\\)<>]+", html)) - {
        "https://gradio.app/",
        "https://raw.githubusercontent.com/gradio-app/gradio/main/js/_website/src/lib/assets/img/header-image.jpg",
        "https://github.com/gradio-app/gradio/raw/main/test/test_files/sample_file.pdf",
        "https://raw.githubusercontent.com/gradio-app/gradio/main/test/test_files/bus.png",
    }
    assert not external


# -- streaming, stopping, queueing -----------------------------------------------------------------

def test_tokens_arrive_in_several_chunks_before_the_answer_is_complete(served, client, slow_model, app_files):
    job = client.submit(CAPTION, [], image_of(app_files), temperature=0, max_length=12, api_name="/chat")
    arrivals = [(time.monotonic(), answer_of(output)) for output in job]
    finished = time.monotonic()
    answers = [answer for _, answer in arrivals if answer]
    inputs = read_inputs({"Image": [app_files.pictures[0], 1]})
    expected = slow_model.generate(inputs, [format_prompt(CAPTION)], max_gen_len=12, temperature=0)[0]
    assert answer_of(job.result()) == expected
    assert len(set(answers)) >= 3 and all(expected.startswith(a.rstrip()) for a in answers)
    assert arrivals[0][0] < finished - 0.1  # the first chunk was shown well before the end


def test_stop_ends_a_generation_early(served, client, slow_model):
    job = client.submit("Name three colours.", [], temperature=0, max_length=300, api_name="/chat")
    deadline = time.monotonic() + 30
    while not any(answer_of(output) for output in job.outputs()) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    client.predict(api_name="/stop")
    output = job.result(timeout=30)
    assert time.monotonic() - started < 3  # 300 tokens would take 9 s or more
    assert "Stopped after" in output[2]
    tokens = len(slow_model.tokenizer.encode(answer_of(output), bos=False, eos=False))
    assert 0 < tokens < 100


def test_two_requests_at_once_are_queued_and_both_answered(served, slow_model, app_files):
    from gradio_client import Client

    page = served[1]
    active, most = [0], [0]
    answer = page.engine.answer

    def counted(*args, **kwargs):
        active[0] += 1
        most[0] = max(most[0], active[0])
        try:
            yield from answer(*args, **kwargs)
        finally:
            active[0] -= 1

    page.engine.answer = counted
    clients = [Client(served[0], verbose=False) for _ in range(2)]
    try:
        jobs = [c.submit(CAPTION, [], image_of(app_files), temperature=0, max_length=20, api_name="/chat")
                for c in clients]
        outputs = [job.result(timeout=60) for job in jobs]
    finally:
        del page.engine.answer
        for c in clients:
            c.close()
    inputs = read_inputs({"Image": [app_files.pictures[0], 1]})
    expected = slow_model.generate(inputs, [format_prompt(CAPTION)], max_gen_len=20, temperature=0)[0]
    assert [answer_of(output) for output in outputs] == [expected, expected]
    assert most[0] == 1  # the second waited in the queue


# -- the context, errors, uploads ------------------------------------------------------------------

def test_a_conversation_past_the_context_keeps_the_newest_turns_and_says_so(served, client):
    llm = served[2]
    history = []  # the chat's value as Gradio sends it: each message's content a list of parts
    for turn in range(60):
        history += [{"role": "user", "content": [{"type": "text", "text": f"What is in picture {turn}?"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": f"A red circle, the {turn}th one."}]}]
    prompts = []
    stream_ids = llm.stream_ids

    def recorded(inputs, prompt_ids, *args, **kwargs):
        prompts.append(list(prompt_ids[0]))
        return stream_ids(inputs, prompt_ids, *args, **kwargs)

    llm.stream_ids = recorded
    try:
        output = client.predict("And now?", history, temperature=0, max_length=32, api_name="/chat")
    finally:
        del llm.stream_ids
    assert re.search(r"longer than the model's context \(512 tokens\): the oldest \d+ exchange\(s\) were left out",
                     output[2])
    text = llm.tokenizer.decode(prompts[0])
    assert "the 59th one." in text and "the 0th one." not in text
    question = llm.tokenizer.encode(format_prompt("And now?"), bos=False, eos=False)
    assert prompts[0][-len(question):] == question
    assert len(prompts[0]) + 32 <= 512
    assert len(output[0]) == 2 * 60 + 2  # the page still shows the whole conversation


def test_an_unreadable_upload_is_an_error_message(client, app_files):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="broken.png cannot be read as a picture"):
        client.predict(CAPTION, [], handle_file(str(app_files.broken)), api_name="/chat")


def test_uploads_are_gone_after_the_session(served, app_files):
    from gradio_client import Client

    root = served[1].files.root
    name = app_files.pictures[0].name
    c = Client(served[0], verbose=False)
    c.predict(CAPTION, [], image_of(app_files), temperature=0, max_length=2, api_name="/chat")
    assert list(root.rglob(name))
    c.close()  # the session ends: its heartbeat connection closes
    deadline = time.monotonic() + 15
    while list(root.rglob(name)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(root.rglob(name))


# -- the command line and the settings -------------------------------------------------------------

def test_the_defaults_are_local_private_and_the_demos(tmp_path, monkeypatch, app_server):
    from app.__main__ import build_parser, model_files
    from engine.errors import SetupError

    args = build_parser().parse_args([])
    assert (args.host, args.share, args.max_upload_mb) == ("127.0.0.1", False, 50)
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"  # set by the running app's serve()
    monkeypatch.setenv("IMAGEBIND_LLM_DEMO", str(tmp_path))
    with pytest.raises(SetupError, match="run `bash exps/demo.sh` first"):
        model_files(args)
    checkpoint = tmp_path / "finetune" / "checkpoint-last.pth"
    checkpoint.parent.mkdir()
    checkpoint.touch()
    paths = model_files(args)  # the paths examples/inference.ipynb loads after the demo
    assert paths == {"checkpoint": checkpoint, "llama_dir": tmp_path / "assets" / "llama",
                     "imagebind_path": tmp_path / "assets" / "imagebind" / "tiny.pth",
                     "imagebind_config": tmp_path / "assets" / "imagebind" / "tiny.yaml", "visual_cache": None}


def test_the_visual_cache_applies_to_the_request_that_asks_for_it(served, app_files):
    import dataclasses

    import torch.nn.functional as F

    from app.engine import CacheSettings, ChatEngine, Sampling
    from model.visual_cache import VisualCache

    llm = served[2]
    embeddings = torch.randn(6, llm.image_bind.out_embed_dim, generator=torch.Generator().manual_seed(0))
    cache = VisualCache(F.normalize(embeddings, dim=-1))
    engine = ChatEngine(llm, cache)
    inputs = read_inputs({"Image": [app_files.pictures[0], 1]})
    settings = CacheSettings(size=3, temperature=5.0, weight=0.9)
    replies = list(engine.answer("s", inputs, [], CAPTION, Sampling(0.0, 0.75, 12), settings))
    assert llm.visual_cache is None  # off again for the next request
    llm.use_visual_cache(dataclasses.replace(cache, size=3, temperature=5.0, weight=0.9))
    try:
        expected = llm.generate(inputs, [format_prompt(CAPTION)], max_gen_len=12, temperature=0)[0]
    finally:
        llm.use_visual_cache(None)
    assert replies[-1].done and replies[-1].text == expected


def test_regenerate_answers_the_last_question_again_and_clear_empties_the_chat(served, client, app_files):
    first = client.predict(CAPTION, [], image_of(app_files), temperature=0, max_length=12, api_name="/chat")
    earlier, question = client.predict(first[0], api_name="/regenerate")  # the page then asks the question again
    assert (earlier, question) == ([], CAPTION)
    again = client.predict(question, earlier, image_of(app_files), temperature=0, max_length=12, api_name="/chat")
    assert again[0] == first[0] and len(again[0]) == 2
    assert client.predict(api_name="/clear") == ([], "", "")
