"""Turning a stop signal into a flag that the training loop reads at a step boundary.

Schedulers warn before they kill: SLURM sends SIGUSR1 (with `--signal=USR1@<seconds>`) or SIGTERM;
`kill PID` sends SIGTERM and Ctrl-C SIGINT, which the launcher (exps/supervise.py) passes on to the
workers. Stopping in the middle of an optimizer step would leave
nothing consistent to save, so the handler only records the signal; the engine checks
`requested` between steps (agreeing across ranks, see `util.distributed.any_rank`), saves a
checkpoint and returns. The handler does nothing else (no logging): it can run between any two
bytecodes of the main thread, also inside a logging call.

    with PreemptionHandler() as preemption:
        for step, batch in ...:
            ...
            if any_rank(preemption.requested, context):
                save; break
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

# SIGUSR1 does not exist on Windows.
DEFAULT_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGUSR1") if hasattr(signal, name)
)


class PreemptionHandler:
    """A context manager: while inside, the given signals set a flag instead of their usual action.

    Leaving the block restores the handlers that were there before. Python lets only the main
    thread install signal handlers; elsewhere the block does nothing but warn, and the flag stays
    False.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = DEFAULT_SIGNALS):
        self.signals = tuple(signals)
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    @property
    def signal_name(self) -> str | None:
        return self.received.name if self.received is not None else None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum)

    def __enter__(self) -> PreemptionHandler:
        if threading.current_thread() is not threading.main_thread():
            logger.warning("not in the main thread: stop signals (%s) will not be turned into a clean stop",
                           ", ".join(s.name for s in self.signals))
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            # getsignal returns None for handlers installed from C; SIG_DFL is the closest we can put back.
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
