"""The chat page: inputs of every modality with their weights, the conversation, the controls.

    inputs (left)                          conversation (right)
    Image | Audio | Video | ... tabs:      the chat, streamed token by token
      a file and its weight (0-1)          question, Send, Stop, Regenerate, Clear
    Text for ImageBind's text encoder      temperature, top-p, maximum length
    the visual cache (when one is given)   a notice: context overflows, stops

Every generating event shares one queue slot (concurrency_id "model", limit 1): requests from all
sessions wait their turn, and no two run on the device at once. Uploads are checked when they
arrive and again when asked about; an unreadable or oversized file is an error message in the page.
The theme names system fonts only, so that the page loads nothing from the internet.

Gradio reads GRADIO_ANALYTICS_ENABLED and GRADIO_TEMP_DIR when it is imported: app/__main__.py
sets them before importing this module.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import gradio as gr

from app.chat_prompt import ContextTooShort
from app.engine import CacheSettings, ChatEngine, Sampling
from app.uploads import SessionFiles, UploadError, read_upload
from data.modality_inputs import read_modality
from model.visual_cache import SIZE, TEMPERATURE, WEIGHT

# The tabs of file inputs: (modality name, tab label, what to upload).
FILE_INPUTS = (
    ("Image", "Image", "A picture (any format Pillow reads)"),
    ("Audio", "Audio", "A sound: WAV, FLAC, MP3, Ogg, M4A, ..."),
    ("Video", "Video", "A video: MP4, WebM, MKV, AVI, ..."),
    ("Depth", "Depth", "A disparity map: 16-bit PNG or .npy"),
    ("Thermal", "Thermal", "A grayscale thermal image"),
    ("IMU", "IMU", "Accelerometer and gyroscope, .npy [6, T]"),
    ("Point", "Point cloud", "A point cloud: .pt .npy .ply .pcd .xyz .obj (ImageBind's 3D branch)"),
)
SANS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace"]
QUEUE_ID = "model"


def theme() -> gr.themes.Base:
    """Gradio's default look with the system's fonts: nothing to fetch from a font server."""
    return gr.themes.Default(font=SANS, font_mono=MONO)


def message_text(message: dict) -> str:
    """A chat message's text (Gradio gives its content as a string or as a list of parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or () if isinstance(part, dict))


def exchanges_of(history: list[dict]) -> list[tuple[str, str]]:
    """(question, answer) pairs of a chat's messages; a question without an answer is left out."""
    pairs, question = [], None
    for message in history or ():
        if message.get("role") == "user":
            question = message_text(message)
        elif message.get("role") == "assistant" and question is not None:
            pairs.append((question, message_text(message)))
            question = None
    return pairs


def messages_of(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"role": role, "content": text} for pair in pairs for role, text in zip(("user", "assistant"), pair)]


@dataclass
class ChatPage:
    """The handlers behind the page: they turn its values into the engine's arguments."""

    engine: ChatEngine
    files: SessionFiles
    max_upload_mb: float

    def check_upload(self, modality: str, path: str | None, request: gr.Request) -> str | None:
        """On upload: the file kept for the session when readable, else the error in the page."""
        if path is None:
            return None
        self.files.add(request.session_hash, path)
        try:
            read_upload(modality, path, self.max_upload_mb)
        except UploadError as error:
            raise gr.Error(str(error), title="Upload refused") from None
        return path

    def read_inputs(self, files: dict[str, tuple[str | None, float]], text: str | None, text_weight: float,
                    session: str) -> dict[str, list] | None:
        """{modality: [tensor with a batch axis, weight]} of the inputs given a weight above 0; None: none."""
        inputs = {}
        for modality, (path, weight) in files.items():
            if path is None or weight <= 0:
                continue
            self.files.add(session, path)
            inputs[modality] = [read_upload(modality, path, self.max_upload_mb).unsqueeze(0), float(weight)]
        if text and text.strip() and text_weight > 0:
            inputs["Text"] = [read_modality("Text", text.strip()).unsqueeze(0), float(text_weight)]
        return inputs or None

    def chat(self, question: str, history: list[dict],
             image: str | None = None, image_weight: float = 1.0, audio: str | None = None, audio_weight: float = 1.0,
             video: str | None = None, video_weight: float = 1.0, depth: str | None = None, depth_weight: float = 1.0,
             thermal: str | None = None, thermal_weight: float = 1.0, imu: str | None = None, imu_weight: float = 1.0,
             point: str | None = None, point_weight: float = 1.0, text: str | None = None, text_weight: float = 1.0,
             use_cache: bool = False, cache_size: int = SIZE, cache_temperature: float = TEMPERATURE,
             cache_weight: float = WEIGHT, temperature: float = 0.1, top_p: float = 0.75, max_length: int = 128,
             request: gr.Request = None) -> Iterator[tuple[list[dict], str, str]]:
        """Ask `question` about the inputs, after `history`: yields (chat, question box, notice) as it streams."""
        question = (question or "").strip()
        if not question:
            raise gr.Error("Type a question first.", title="No question")
        session = request.session_hash if request is not None else "no-session"
        files = {"Image": (image, image_weight), "Audio": (audio, audio_weight), "Video": (video, video_weight),
                 "Depth": (depth, depth_weight), "Thermal": (thermal, thermal_weight), "IMU": (imu, imu_weight),
                 "Point": (point, point_weight)}
        try:
            inputs = self.read_inputs(files, text, text_weight, session)
        except UploadError as error:
            raise gr.Error(str(error), title="Upload refused") from None
        pairs = exchanges_of(history)
        cache = CacheSettings(cache_size, cache_temperature, cache_weight) if use_cache else None
        sampling = Sampling(float(temperature), float(top_p), int(max_length))
        shown = messages_of(pairs) + [{"role": "user", "content": question}]
        try:
            replies = self.engine.answer(session, inputs, pairs, question, sampling, cache)
            for reply in replies:
                yield shown + [{"role": "assistant", "content": reply.text}], "", reply.notice
        except ContextTooShort as error:
            raise gr.Error(f"The question does not fit: {error}.", title="Too long") from None

    def take_back(self, history: list[dict]) -> tuple[list[dict], str]:
        """Regenerate's first step: the chat without its last exchange, and that exchange's question
        (chat then asks it again: another sample unless the temperature is 0)."""
        pairs = exchanges_of(history)
        if not pairs:
            raise gr.Error("There is no answer to regenerate yet.", title="Nothing to regenerate")
        return messages_of(pairs[:-1]), pairs[-1][0]

    def stop(self, request: gr.Request) -> None:
        self.engine.stop(request.session_hash)

    def end_session(self, request: gr.Request) -> None:
        self.engine.stop(request.session_hash)
        self.files.end_session(request.session_hash)


def build_page(page: ChatPage, title: str) -> gr.Blocks:
    """The Blocks of the page (see the module docstring); launch it with theme() (Gradio 6 takes it there)."""
    with gr.Blocks(title="ImageBind-LLM chat", analytics_enabled=False) as blocks:
        gr.Markdown(f"## ImageBind-LLM\n{title}; files of at most {page.max_upload_mb:g} MB")
        with gr.Row():
            with gr.Column(scale=2):
                files, weights = {}, {}
                with gr.Tabs():
                    for modality, label, hint in FILE_INPUTS:
                        with gr.Tab(label):
                            files[modality] = gr.File(label=hint, file_count="single", type="filepath",
                                                      elem_id=f"upload-{modality.lower()}")
                            if modality == "Image":
                                preview = gr.Image(label="The picture", interactive=False, height=200,
                                                   elem_id="image-preview", buttons=["fullscreen"])
                            weights[modality] = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label=f"{label} weight")
                    with gr.Tab("Text"):
                        text = gr.Textbox(label="A text for ImageBind's text encoder (a modality, not the question)",
                                          lines=2)
                        text_weight = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Text weight")
                with gr.Accordion("Visual cache", open=False, visible=page.engine.visual_cache is not None):
                    use_cache = gr.Checkbox(value=False, label="Mix the inputs with the nearest cached images")
                    cache_size = gr.Slider(1, 100, value=SIZE, step=1, label="Cache size")
                    cache_temperature = gr.Slider(0.0, 100.0, value=TEMPERATURE, label="Cache temperature")
                    cache_weight = gr.Slider(0.0, 1.0, value=WEIGHT, label="Cache weight")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=380, elem_id="chat",
                                     buttons=["copy", "copy_all"])  # no share button: it posts to Hugging Face
                question = gr.Textbox(label="Question", placeholder="Ask about the inputs", lines=1,
                                      elem_id="question")
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    stop = gr.Button("Stop", variant="stop", elem_id="stop")
                    regenerate = gr.Button("Regenerate", elem_id="regenerate")
                    clear = gr.Button("Clear", elem_id="clear")
                with gr.Row():
                    temperature = gr.Slider(0.0, 1.0, value=0.1, step=0.05, label="Temperature (0: greedy)",
                                            elem_id="temperature")
                    top_p = gr.Slider(0.0, 1.0, value=0.75, step=0.05, label="Top p")
                    max_length = gr.Slider(1, page.engine.max_seq_len - 1, value=min(128, page.engine.max_seq_len - 1),
                                           step=1, label="Maximum length (tokens)")
                notice = gr.Markdown(elem_id="notice")

        # in the order of ChatPage.chat's parameters after the question and the chat
        settings = [component for modality, _, _ in FILE_INPUTS for component in (files[modality], weights[modality])]
        settings += [text, text_weight, use_cache, cache_size, cache_temperature, cache_weight, temperature, top_p,
                     max_length]
        outputs = [chatbot, question, notice]
        generating = dict(concurrency_id=QUEUE_ID, concurrency_limit=1)
        send.click(page.chat, [question, chatbot, *settings], outputs, api_name="chat", **generating)
        question.submit(page.chat, [question, chatbot, *settings], outputs, api_visibility="private", **generating)
        # the last question goes back into the question box, and is asked again from there
        regenerate.click(page.take_back, chatbot, [chatbot, question], api_name="regenerate", queue=False).success(
            page.chat, [question, chatbot, *settings], outputs, api_visibility="private", **generating)
        stop.click(page.stop, None, None, api_name="stop", concurrency_limit=None)
        clear.click(lambda: ([], "", ""), None, outputs, api_name="clear", queue=False)

        for modality, component in files.items():
            event = component.upload(upload_checker(page, modality), component, component, api_visibility="private",
                                     concurrency_limit=None)
            event.failure(lambda: None, None, component, api_visibility="private", queue=False)
        files["Image"].change(lambda path: path, files["Image"], preview, api_visibility="private", queue=False)
        blocks.unload(page.end_session)
    return blocks


def launch(blocks: gr.Blocks, host: str, port: int, max_upload_mb: float, share: bool = False,
           block: bool = True) -> None:
    """Serve the page: requests queued, Gradio's own footer links and extras off; block=False returns at once."""
    blocks.queue(default_concurrency_limit=1)
    blocks.launch(server_name=host, server_port=port, share=share, theme=theme(), max_file_size=f"{max_upload_mb:g}mb",
                  footer_links=[], show_error=False, quiet=True, pwa=False, mcp_server=False,
                  prevent_thread_lock=not block)


def upload_checker(page: ChatPage, modality: str):
    """The upload event's handler for one modality's file input."""
    def check(path: str | None, request: gr.Request) -> str | None:
        return page.check_upload(modality, path, request)
    return check


def page_title(checkpoint: Path, phase: str, device: str) -> str:
    return f"`{checkpoint.name}` ({phase} checkpoint) on {device}"

