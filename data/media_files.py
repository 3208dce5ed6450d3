"""Opening sound and video files with PyAV, whose own FFmpeg reads nearly every container and codec.

Both readers (audio.py, video.py) open a file the same way: a missing file, one without a stream of
the kind asked for, and any error PyAV raises while the caller decodes become BadInput naming the
file (the bad-sample policy's reasons), never a crash of a training worker.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from data.bad_samples import MISSING_FILE, BadInput


@contextmanager
def media_stream(path: str | Path, kind: str, unreadable: str) -> Iterator[tuple[Any, Any]]:
    """(container, its first `kind` stream: "audio" or "video"); errors become BadInput(`unreadable`)."""
    import av  # imported here: data/ loads without it until a sound or a video is read

    path = Path(path)
    if not path.is_file():
        raise BadInput(MISSING_FILE, f"{path} does not exist")
    try:
        with av.open(str(path)) as container:
            streams = getattr(container.streams, kind)
            if not streams:
                raise BadInput(unreadable, f"{path}: no {kind} stream in the file")
            yield container, streams[0]
    except BadInput:
        raise
    except Exception as error:  # PyAV raises its own errors for unreadable or truncated files
        raise BadInput(unreadable, f"{path}: {type(error).__name__}: {error}") from error
