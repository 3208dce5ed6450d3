"""util.log: rank 0 says INFO and up (to stdout and a file), other ranks only warnings, with their rank."""

from __future__ import annotations

import logging

import pytest

from util.log import init_logger


@pytest.fixture
def restore_root_logger():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _own_handlers():
    return [h for h in logging.getLogger().handlers if getattr(h, "_imagebind_llm_handler", False)]


def test_rank_zero_logs_info_to_stdout_and_file(tmp_path, capsys, restore_root_logger):
    init_logger(0, tmp_path, distributed=True)
    logging.getLogger("engine.train").info("step 10 loss 2.5")
    logging.getLogger("engine.train").debug("hidden")
    out = capsys.readouterr().out
    assert "[rank 0] INFO engine.train: step 10 loss 2.5" in out
    assert "hidden" not in out
    assert "[rank 0] INFO engine.train: step 10 loss 2.5" in (tmp_path / "train.log").read_text()


def test_other_ranks_keep_only_warnings_and_write_no_file(tmp_path, capsys, restore_root_logger):
    init_logger(3, tmp_path, distributed=True)
    logging.getLogger("engine.train").info("progress")
    logging.getLogger("data.loader").warning("bad image skipped")
    out = capsys.readouterr().out
    assert "progress" not in out
    assert "[rank 3] WARNING data.loader: bad image skipped" in out
    assert not (tmp_path / "train.log").exists()


def test_single_process_lines_carry_no_rank_and_a_second_call_does_not_double_them(capsys, restore_root_logger):
    init_logger(0)
    init_logger(0)
    assert len(_own_handlers()) == 1
    logging.getLogger("main").info("hello")
    lines = [line for line in capsys.readouterr().out.splitlines() if "hello" in line]
    assert len(lines) == 1
    assert "rank" not in lines[0] and lines[0].endswith("INFO main: hello")
