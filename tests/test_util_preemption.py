"""util.preemption: SIGTERM and SIGUSR1 set the flag inside the block; the old handlers come back after."""

from __future__ import annotations

import logging
import os
import signal
import threading

import pytest

from util.preemption import PreemptionHandler


@pytest.fixture
def previous_handlers():
    """Distinct handlers installed before each test, and the originals put back after."""
    calls = []
    originals = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    installed = {}
    for signum in originals:
        def handler(received, frame, signum=signum):
            calls.append(received)
        installed[signum] = handler
        signal.signal(signum, handler)
    yield installed, calls
    for signum, original in originals.items():
        signal.signal(signum, original)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_sets_the_flag_and_the_old_handler_returns(previous_handlers, signum):
    installed, calls = previous_handlers
    with PreemptionHandler() as preemption:
        assert not preemption.requested and preemption.signal_name is None
        os.kill(os.getpid(), signum)
        assert preemption.requested
        assert preemption.signal_name == signum.name
    assert calls == []  # the previous handler did not run while the block was active
    assert signal.getsignal(signal.SIGTERM) is installed[signal.SIGTERM]
    assert signal.getsignal(signal.SIGUSR1) is installed[signal.SIGUSR1]
    os.kill(os.getpid(), signum)
    assert calls == [signum]


def test_handlers_are_restored_when_the_block_raises(previous_handlers):
    installed, _ = previous_handlers
    with pytest.raises(KeyError):
        with PreemptionHandler():
            raise KeyError("boom")
    assert signal.getsignal(signal.SIGTERM) is installed[signal.SIGTERM]


def test_outside_the_main_thread_it_warns_and_does_nothing(previous_handlers, caplog):
    installed, _ = previous_handlers
    seen = {}

    def in_thread():
        with PreemptionHandler() as preemption:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["requested"] = preemption.requested

    with caplog.at_level(logging.WARNING, logger="util.preemption"):
        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
    assert seen == {"handler": installed[signal.SIGTERM], "requested": False}
    assert "not in the main thread" in caplog.text
    assert signal.getsignal(signal.SIGTERM) is installed[signal.SIGTERM]
