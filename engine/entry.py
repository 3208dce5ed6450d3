"""What main_pretrain.py and main_finetune.py do: parse, train, turn expected errors into one line.

    sys.exit(run_entry_point("pretrain", build_data, expected_errors=(...)))

An error the user can fix (engine.errors.TrainingError, a missing file, and the data errors the
entry point names, such as a bad sample under --on_bad_sample error, also when a DataLoader worker
raised it) is logged as its message alone and the exit status is 1. Any other exception is a bug:
it propagates with its traceback.
"""

from __future__ import annotations

import logging
from typing import Sequence

from engine.arguments import build_parser
from engine.data_source import DataBuilder
from engine.errors import TrainingError, user_message
from engine.run import run_training

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell's code for a process stopped by Ctrl-C (128 + SIGINT)


def run_entry_point(phase: str, build_data: DataBuilder, argv: Sequence[str] | None = None,
                    expected_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parse `argv` (default: the command line) for `phase`, train, and return the exit status."""
    args = build_parser(phase).parse_args(argv)
    try:
        run_training(args, phase, build_data)
    except (TrainingError, FileNotFoundError, *expected_errors) as error:
        logger.error("%s: %s", type(error).__name__, user_message(error))
        return EXIT_ERROR
    except KeyboardInterrupt:
        logger.error("interrupted; checkpoint-last.pth (if any) holds the last saved state")
        return EXIT_INTERRUPTED
    return 0
