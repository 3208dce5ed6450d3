"""util/parent_death.py: a process that asked for it dies with its parent, even one in its own session."""

from __future__ import annotations

import subprocess
import sys
import time

from support import REPO_ROOT

CHILD = f"""
import os, sys, time
sys.path.insert(0, {str(REPO_ROOT)!r})
from util.parent_death import die_with_parent
die_with_parent()
print(os.getpid(), flush=True)
time.sleep(120)
"""
# The parent starts the child in a session of its own, as torchrun starts its workers.
PARENT = f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", {CHILD!r}], start_new_session=True, stdout=sys.stdout)
time.sleep(120)
"""


def ended(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def test_the_child_dies_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not ended(child)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while not ended(child):
            assert time.monotonic() < deadline, "the child outlived its parent"
            time.sleep(0.02)
    finally:
        parent.kill()
