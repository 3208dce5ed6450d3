"""The launchers' job process: it runs the job, turns stop signals into clean stops and keeps the log readable.

    python exps/supervise.py --log OUTPUT_DIR/output.log [--echo] -- python -m torch.distributed.run ...
    python exps/supervise.py --log OUTPUT_DIR/output.log [--echo] --one_worker -- python main_pretrain.py ...
    python exps/supervise.py --check_lock OUTPUT_DIR     # refuse, in the terminal, a folder in use

The job is torchrun and its workers, or, for one process on one node (--one_worker), the worker
alone: torchrun would add nothing there but seconds of start-up (it imports torch too). What
follows says "torchrun"; with --one_worker, the worker is both torchrun and its only worker.

Stopping. torchrun runs in a session of its own with the stop signals (SIGTERM, SIGINT, SIGUSR1,
SIGHUP) ignored, so that neither a terminal's Ctrl-C nor `kill` makes it tear its workers down
and exit 1 with a traceback. A stop signal that reaches this process (`kill PID` on launcher.pid,
Ctrl-C with FOREGROUND=1, SLURM's SIGUSR1) goes to torchrun's workers instead (SIGHUP as
SIGTERM), again every few seconds until they end, since a worker still starting up may not listen
yet. They save a checkpoint at the next step boundary and exit 0; torchrun, and then this
process, exit 0 too.

Dying. torchrun gets a parent-death signal: when this process is killed (`kill -9` of the
launcher's process group, an OOM killer), torchrun dies with it, and its workers with torchrun
(util/parent_death.py). Nothing is left writing into the output folder.

The log. Every line torchrun and the workers print is appended to --log (and echoed with
--echo), except torchrun's own report after a worker failed (its ChildFailedError traceback):
that goes to torchrun_report.log beside the log, so that the last line a user reads is the
worker's own one-line message. The exit status is torchrun's.

This file imports nothing of the project but util/run_lock.py and util/parent_death.py (standard
library only), so it starts in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from util.parent_death import die_with_parent  # noqa: E402
from util.run_lock import RunLockedError, check_unlocked  # noqa: E402

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP)
FORWARDED_AS = {signal.SIGHUP: signal.SIGTERM}  # the workers listen for SIGTERM, SIGINT and SIGUSR1
RESEND_SECONDS = 5.0
REPORT_NAME = "torchrun_report.log"
# torchrun's line when a worker failed; its report (a traceback of its own and the failure table) follows.
FAILURE_MARK = "failed (exitcode:"
# torchrun handles only this signal itself; the stop signals stay ignored, as this process starts it.
TORCHRUN_SIGNALS = "SIGQUIT"


def children_of(pid: int) -> list[int]:
    """The processes whose parent is `pid` (torchrun's workers), from /proc."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def start_job(command: Sequence[str]) -> subprocess.Popen:
    """torchrun (or the one worker) in a session of its own, the stop signals ignored until it sets
    its own handlers (the worker does, torchrun does not), dying with this process."""

    def prepare() -> None:  # runs in the child, before it becomes the job
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        die_with_parent()

    env = {**os.environ, "TORCHELASTIC_SIGNALS_TO_HANDLE": TORCHRUN_SIGNALS, "PET_SIGNALS_TO_HANDLE": TORCHRUN_SIGNALS}
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, preexec_fn=prepare)


class LogCopier(threading.Thread):
    """Copies torchrun's output, line by line, to the log (and the terminal), torchrun's failure
    report to its own file."""

    def __init__(self, source: IO[bytes], log: Path, echo: bool):
        super().__init__(daemon=True)
        self.source, self.log, self.echo = source, log, echo
        self.report = log.with_name(REPORT_NAME)

    def run(self) -> None:
        target = open(self.log, "ab")
        reporting = False
        for line in iter(self.source.readline, b""):
            if not reporting and FAILURE_MARK.encode() in line:
                target.close()
                target = open(self.report, "wb")  # the newest failure's report, nothing older
                reporting = True
            target.write(line)
            target.flush()
            if self.echo and not reporting:
                self._echo(line)
        target.close()

    def _echo(self, line: bytes) -> None:
        try:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
        except OSError:  # the terminal went away: the log still has everything
            self.echo = False


class StopForwarder:
    """Passes stop signals on to the workers, and again every RESEND_SECONDS until they end."""

    def __init__(self, job: subprocess.Popen, one_worker: bool):
        self.job = job
        self.one_worker = one_worker
        self.requested: signal.Signals | None = None

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_IGN and sig == signal.SIGHUP:
                continue  # started under nohup: a closed terminal is not a stop
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.requested = signal.Signals(signum)
        self.forward()

    def forward(self) -> None:
        if self.requested is None:
            return
        sig = FORWARDED_AS.get(self.requested, self.requested)
        for worker in [self.job.pid] if self.one_worker else children_of(self.job.pid):
            try:
                os.kill(worker, sig)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        while True:
            try:
                return self.job.wait(timeout=RESEND_SECONDS)
            except subprocess.TimeoutExpired:
                self.forward()


def supervise(command: Sequence[str], log: Path, echo: bool, one_worker: bool = False) -> int:
    job = start_job(command)
    forwarder = StopForwarder(job, one_worker)
    forwarder.install()
    copier = LogCopier(job.stdout, log, echo)
    copier.start()
    status = forwarder.wait()
    copier.join()
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--log", type=Path, help="the job's log (output.log), appended to")
    parser.add_argument("--echo", action="store_true", help="also print the output (FOREGROUND=1)")
    parser.add_argument("--one_worker", action="store_true",
                        help="the command is the job's one worker itself, not torchrun")
    parser.add_argument("--check_lock", type=Path, metavar="OUTPUT_DIR",
                        help="only check that no live job holds OUTPUT_DIR (util/run_lock.py)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then torchrun's (or the worker's) command line")
    args = parser.parse_args(argv)
    if args.check_lock is not None:
        try:
            check_unlocked(args.check_lock)
        except RunLockedError as error:
            print(f"launcher: {error}", file=sys.stderr)
            return 1
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.log is None:
        parser.error("give --log and, after --, the command to run")
    return supervise(command, args.log, args.echo, args.one_worker)


if __name__ == "__main__":
    sys.exit(main())
