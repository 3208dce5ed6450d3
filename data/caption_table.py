"""Index a pre-training meta file (a table with the columns url and caption) into packed strings.

The published meta files are tab-separated with a header row (`url<TAB>caption`); comma-separated
files work too, detected from the header. Fields follow pandas' CSV rules, as the published code
read them: a field that starts with a double quote runs to the closing quote, so it may hold the
separator or a newline, and "" stands for one quote. Other columns are ignored.

Speed and memory: pandas' C parser reads the file in chunks of rows and each chunk is packed
into `PackedStrings` right away, so memory is about the file's size plus 16 bytes a row, and
10 million rows take seconds (figures in tests/test_data_tables.py). Rows with too many fields
are dropped and counted as `malformed_row` (under `strict`, the first one raises instead).
"""

from __future__ import annotations

import logging
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from data.bad_samples import BadSampleError
from data.packed_strings import PackedStrings, PackedStringsBuilder

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("url", "caption")
CHUNK_ROWS = 1 << 16  # rows parsed at a time: bounds the memory of Python strings alive at once
PROGRESS_SECONDS = 10.0  # how often a long indexing run says how far it got
_SKIPPED_LINE = re.compile(r"Skipping line (\d+)")  # pandas: "Skipping line 7: expected 2 fields, saw 3"


@dataclass
class CaptionTable:
    """The url and caption of every well-formed row, in file order."""

    urls: PackedStrings
    captions: PackedStrings
    malformed_lines: list[int] = field(default_factory=list)
    """1-based line numbers of the rows dropped for having too many fields."""

    def __len__(self) -> int:
        return len(self.urls)


def detect_separator(path: Path) -> str:
    """Tab or comma, from the header line; an error names the file if neither names both columns."""
    with open(path, encoding="utf-8-sig", errors="replace") as stream:
        header = stream.readline().rstrip("\r\n")
    for separator in ("\t", ","):
        if all(column in header.split(separator) for column in REQUIRED_COLUMNS):
            return separator
    raise ValueError(
        f"{path}: the header line {header[:200]!r} does not name the columns url and caption; "
        "a pre-training meta file starts with the line `url<TAB>caption` (or `url,caption`)"
    )


def read_caption_table(path: str | Path, strict: bool = False, chunk_rows: int = CHUNK_ROWS) -> CaptionTable:
    """Read every row's url and caption; log progress every PROGRESS_SECONDS on long files.

    Empty fields and rows with too few fields are kept with empty strings (the dataset reports
    them as bad samples when they are drawn); rows with too many fields are dropped here, counted
    and logged, or raise `BadSampleError` when `strict`.
    """
    path = Path(path)
    separator = detect_separator(path)
    urls, captions = PackedStringsBuilder(), PackedStringsBuilder()
    malformed: list[int] = []
    rows = 0
    started = last_report = time.monotonic()
    size_mb = path.stat().st_size / 1e6
    logger.info("indexing %s (%.0f MB)", path, size_mb)
    other_warnings: list[warnings.WarningMessage] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        for chunk in read_table_chunks(path, separator, strict, chunk_rows):
            urls.extend(chunk["url"].tolist())
            captions.extend(chunk["caption"].tolist())
            rows += len(chunk)
            for warning in caught:
                if issubclass(warning.category, pd.errors.ParserWarning):
                    malformed += [int(number) for number in _SKIPPED_LINE.findall(str(warning.message))]
                else:
                    other_warnings.append(warning)
            caught.clear()
            if time.monotonic() - last_report > PROGRESS_SECONDS:
                last_report = time.monotonic()
                logger.info("indexing %s: %s rows so far (%.0f s)", path.name, f"{rows:,}", last_report - started)
    for warning in other_warnings:  # not ours to swallow
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    table = CaptionTable(urls=urls.build(), captions=captions.build(), malformed_lines=malformed)
    logger.info("indexed %s: %s rows in %.1f s", path, f"{rows:,}", time.monotonic() - started)
    if malformed:
        logger.warning(
            "%s: dropped %d rows with too many fields (lines %s%s): quote captions that contain the separator",
            path, len(malformed), ", ".join(map(str, malformed[:10])), ", ..." if len(malformed) > 10 else "",
        )
    return table


def read_table_chunks(path: Path, separator: str, strict: bool, chunk_rows: int):
    """pandas DataFrames of all columns as strings; no NaN conversion, so an empty field stays ''."""
    try:
        # All columns are read (no usecols): with usecols pandas silently ignores extra fields.
        yield from pd.read_csv(
            path,
            sep=separator,
            dtype=object,
            na_filter=False,
            keep_default_na=False,
            engine="c",
            encoding="utf-8",
            encoding_errors="replace",
            on_bad_lines="error" if strict else "warn",
            chunksize=chunk_rows,
        )
    except pd.errors.ParserError as error:
        raise BadSampleError(f"{path}: pandas cannot parse it: {error}") from error



def main(argv: list[str] | None = None) -> None:
    """`python -m data.caption_table META_FILE`: index it and print rows, time and memory as JSON.

    A quick check of a meta file before a long run. The memory figure is how far this process's
    peak resident set rose above its size before indexing (Linux; elsewhere null).
    """
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("meta_file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    resident_before = _memory_mb("VmRSS")
    started = time.perf_counter()
    table = read_caption_table(args.meta_file)
    seconds = time.perf_counter() - started
    peak = _memory_mb("VmHWM")
    print(json.dumps({
        "rows": len(table),
        "malformed_lines": len(table.malformed_lines),
        "seconds": round(seconds, 2),
        "peak_rss_growth_mb": None if peak is None else round(peak - resident_before, 1),
        "text_mb": round((len(table.urls.buffer) + len(table.captions.buffer)) / 1e6, 1),
    }))


def _memory_mb(field_name: str) -> float | None:
    """VmRSS (resident now) or VmHWM (peak resident) of this process, from /proc/self/status.

    Not resource.getrusage: its ru_maxrss survives fork and exec, so a process started from a
    large one (pytest) reports its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


if __name__ == "__main__":
    main()
