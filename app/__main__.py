"""python -m app: serve a checkpoint as a chat page in the browser.

    python -m app                                   # after `bash exps/demo.sh`: the demo's fine-tuned model
    python -m app --checkpoint ckpts/7B.pth --llama_dir /data/llama --imagebind_path ckpts/imagebind_huge.pth

With none of the model paths given, it serves the demo's files (under $IMAGEBIND_LLM_DEMO, else
demo_output/ in this repository, where `bash exps/demo.sh` writes them), as examples/inference.ipynb
loads them. It listens on 127.0.0.1 (--host to open it to others), makes no public link unless
--share, sends Gradio no analytics, and keeps uploads in a temporary folder that is removed with
their session and when the server stops.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_ENV = "IMAGEBIND_LLM_DEMO"

logger = logging.getLogger("app")


def demo_folder() -> Path:
    """Where `bash exps/demo.sh` writes by default (the notebook's DEMO)."""
    return Path(os.environ.get(DEMO_ENV, REPO_ROOT / "demo_output"))


def demo_paths(demo: Path) -> dict[str, Path]:
    """The demo's fine-tuned checkpoint and the tiny files it was trained on."""
    return {"checkpoint": demo / "finetune" / "checkpoint-last.pth", "llama_dir": demo / "assets" / "llama",
            "imagebind_path": demo / "assets" / "imagebind" / "tiny.pth",
            "imagebind_config": demo / "assets" / "imagebind" / "tiny.yaml",
            "visual_cache": demo / "assets" / "visual_cache.pt"}


def build_parser() -> argparse.ArgumentParser:
    from app.uploads import DEFAULT_MAX_UPLOAD_MB

    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    model = parser.add_argument_group("the model (none given: the demo's files)")
    model.add_argument("--checkpoint", default=None, help="an adapter checkpoint: 7B.pth, 7B-pretrained.pth or ours")
    model.add_argument("--llama_dir", default=None, help="the LLaMA folder: tokenizer.model beside the model folders")
    model.add_argument("--llama_type", default=None,
                       help="the model folder; default the checkpoint's recorded base, else the only one")
    model.add_argument("--imagebind_path", default=None,
                       help="ImageBind weights; default $IMAGEBIND_PATH, else ckpts/imagebind_huge.pth")
    model.add_argument("--imagebind_config", default=None, help="YAML of ImageBindModel arguments (another size)")
    model.add_argument("--visual_cache", default=None,
                       help="a visual cache (exps/build_visual_cache.py's file or the published knn.index): "
                            "offered in the page, off until ticked")
    model.add_argument("--device", default=None, help="default: cuda when a GPU is visible, else cpu")
    serve = parser.add_argument_group("serving")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to the network")
    serve.add_argument("--port", default=7860, type=int)
    serve.add_argument("--share", action="store_true", help="also make a public gradio.live link (off by default)")
    serve.add_argument("--max_upload_mb", default=DEFAULT_MAX_UPLOAD_MB, type=float,
                       help="largest file accepted, in MB")
    return parser


def model_files(args: argparse.Namespace) -> dict[str, Path | None]:
    """The paths to load: the ones given, or with none given the demo's (which must then exist)."""
    from engine.errors import SetupError
    from engine.flags import imagebind_weights_path

    given = {key: getattr(args, key) for key in ("checkpoint", "llama_dir", "imagebind_path", "imagebind_config")}
    if not any(given.values()):
        paths = demo_paths(demo_folder())
        if not paths["checkpoint"].is_file():
            raise SetupError(f"no --checkpoint given, and the demo's {paths['checkpoint']} does not exist: run "
                             "`bash exps/demo.sh` first, or give --checkpoint, --llama_dir and --imagebind_path")
        if args.visual_cache is None and not paths["visual_cache"].is_file():
            paths["visual_cache"] = None
        return {**paths, "visual_cache": Path(args.visual_cache) if args.visual_cache else paths["visual_cache"]}
    for flag in ("checkpoint", "llama_dir"):
        if not given[flag]:
            raise SetupError(f"--{flag} is needed with the other model paths (give none of them for the demo)")
    return {"checkpoint": Path(args.checkpoint), "llama_dir": Path(args.llama_dir),
            "imagebind_path": imagebind_weights_path(args),
            "imagebind_config": Path(args.imagebind_config) if args.imagebind_config else None,
            "visual_cache": Path(args.visual_cache) if args.visual_cache else None}


def serve(args: argparse.Namespace, block: bool = True):
    """Load the model, build the page and serve it; block=False returns (page, blocks) with the server running
    (the caller then closes the blocks and removes page.files)."""
    from app.uploads import SessionFiles, upload_folder

    files = SessionFiles(upload_folder())
    # Gradio reads these when imported: no telemetry or version check, uploads in our own folder.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["GRADIO_TEMP_DIR"] = str(files.root)
    try:
        page, blocks = load_page(model_files(args), args, files)
        from app.page import launch

        logger.info("serving on http://%s:%d (uploads in %s, at most %g MB each)", args.host, args.port, files.root,
                    args.max_upload_mb)
        if block:  # `kill` stops it as Ctrl-C does, so that the uploads are removed
            signal.signal(signal.SIGTERM, stop_on_terminate)
        launch(blocks, args.host, args.port, args.max_upload_mb, share=args.share, block=block)
    except BaseException:
        files.remove_all()
        raise
    if block:  # the server has stopped (Ctrl-C)
        files.remove_all()
    return page, blocks


def stop_on_terminate(signum, frame):
    raise KeyboardInterrupt  # Gradio's wait for the server ends on it, and closes the server


def load_page(paths: dict[str, Path | None], args: argparse.Namespace, files):
    import model
    from app.engine import ChatEngine
    from app.page import ChatPage, build_page, page_title
    from engine.flags import read_imagebind_config
    from model.visual_cache import load_visual_cache

    device = args.device or str(model.default_device())
    llm = model.load(paths["checkpoint"], paths["llama_dir"], paths["imagebind_path"], llama_type=args.llama_type,
                     imagebind_args=read_imagebind_config(paths["imagebind_config"]), device=device)
    cache = load_visual_cache(paths["visual_cache"]) if paths["visual_cache"] else None
    page = ChatPage(ChatEngine(llm, cache), files, args.max_upload_mb)
    return page, build_page(page, page_title(paths["checkpoint"], llm.phase, device))


def main(argv: Sequence[str] | None = None) -> None:
    from engine.run import exit_on_user_error
    from util.log import init_logger

    args = build_parser().parse_args(argv)
    init_logger(0)
    with exit_on_user_error():
        serve(args)


if __name__ == "__main__":
    sys.exit(main())
