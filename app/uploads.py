"""Uploaded files: checked before the model sees them, kept in one temporary folder, removed with their session.

Gradio stores what a browser uploads under GRADIO_TEMP_DIR; the app points that at a folder of its
own (upload_folder) and removes the folder when it exits. Each session's files are removed when the
session ends (the page's unload event): SessionFiles remembers which files each session brought.

A file is accepted when it is at most the size limit and the project's reader for its modality
reads it (data/modality_inputs.read_modality); otherwise UploadError says which file and why, in
words meant for the page.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

import torch

from data.bad_samples import BadInput
from data.modality_inputs import read_modality

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 50

# The modalities read from files (data/modality_inputs.py's names), as the page's messages name them.
FILE_MODALITIES = {"Image": "a picture", "Audio": "a sound", "Video": "a video", "Depth": "a depth map",
                   "Thermal": "a thermal image", "IMU": "an IMU recording", "Point": "a point cloud"}


class UploadError(ValueError):
    """An upload the app refuses, with the reason to show in the page."""


def upload_folder() -> Path:
    """A new private temporary folder for this server's uploads."""
    return Path(tempfile.mkdtemp(prefix="imagebind-llm-app-"))


def check_size(path: str | Path, max_upload_mb: float) -> None:
    size = Path(path).stat().st_size
    if size > max_upload_mb * 2**20:
        raise UploadError(f"{Path(path).name} is {size / 2**20:.1f} MB; this app takes files of at most "
                          f"{max_upload_mb:g} MB (--max_upload_mb)")


def read_upload(modality: str, path: str | Path, max_upload_mb: float) -> torch.Tensor:
    """`modality`'s tensor (a key of FILE_MODALITIES) from an uploaded file, or UploadError saying why not."""
    check_size(path, max_upload_mb)
    name = Path(path).name
    try:
        return read_modality(modality, path)
    except BadInput as error:
        reason = error.detail.replace(str(path), name)  # the server's folder means nothing to the page
    except Exception as error:  # a reader meeting a file of another kind fails in its own way
        reason = f"{type(error).__name__}: {error}"
    reason = reason.removeprefix(f"{name}: ")
    raise UploadError(f"{name} cannot be read as {FILE_MODALITIES[modality]}: {reason}")


class SessionFiles:
    """Which uploaded files each session brought, to remove them when it ends."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self._files: dict[str, set[Path]] = {}
        self._lock = threading.Lock()

    def add(self, session: str, path: str | Path) -> None:
        path = Path(path).resolve()
        if self.root in path.parents:  # only what Gradio stored for us; never a user's own file
            with self._lock:
                self._files.setdefault(session, set()).add(path)

    def files_of(self, session: str) -> set[Path]:
        with self._lock:
            return set(self._files.get(session, ()))

    def end_session(self, session: str) -> int:
        """Remove the session's files (and the folders Gradio made for them, once empty); how many."""
        with self._lock:
            files = self._files.pop(session, set())
        for path in files:
            path.unlink(missing_ok=True)
            folder = path.parent
            while folder != self.root and self.root in folder.parents and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
        if files:
            logger.info("session ended: removed its %d uploaded file(s)", len(files))
        return len(files)

    def remove_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
