"""Run a command that dies, with everything it started, when its parent dies:
`python orphan_guard.py PARENT_PID -- CMD ARGS...`.

Run as a script (not `-m`, so nothing of ours is imported). The guard stays as CMD's parent in
its own process group: it asks the kernel for SIGTERM when its parent (serve) dies
(PR_SET_PDEATHSIG), and then ends the whole group (CMD and what CMD started: tritonserver's
Python backend stubs outlive a tritonserver killed with -9). SIGTERM/SIGINT sent to the guard
are passed on to CMD (a graceful stop). When CMD ends, the guard ends its group's leftovers and
exits the same way (the same code, or the same signal), so a supervisor sees CMD's death.
Linux only for the parent-death signal; elsewhere the getppid() poll still notices.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
GRACE_S = 10.0  # a graceful stop of the group before SIGKILL
POLL_S = 0.5  # how often the guard checks that its parent lives (backs up the parent-death signal)


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when the thread that forked it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _end_group(child: int) -> None:
    """SIGTERM to the group (the guard ignores it), wait for the child, then SIGKILL the rest."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.killpg(0, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == child:
            break
        time.sleep(0.1)
    os.killpg(0, signal.SIGKILL)  # the guard too: nothing of the group is left


def _others() -> list[int]:
    """The other live members of this process group, from /proc."""
    me, group = os.getpid(), os.getpgrp()
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) != me:
            try:
                fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[2]) == group:
                out.append(int(d))
    return out


def _kill_others() -> None:
    for pid in _others():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: orphan_guard.py PARENT_PID -- CMD [ARGS...]")
    parent = int(argv[1])
    stop = {"sig": 0}

    def on_signal(signum: int, _frame: object) -> None:
        stop["sig"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    set_pdeathsig(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl: start nothing
        sys.exit(1)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        set_pdeathsig(signal.SIGKILL)  # the guard itself killed with -9: the command goes too
        os.execv(argv[3], argv[3:])
    forwarded = False
    while True:
        if os.getppid() != parent:  # parent died: end everything we started
            _end_group(child)
        if stop["sig"] and not forwarded:  # a graceful stop asked of us: pass it on
            os.kill(child, stop["sig"])
            forwarded = True
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            pid, status = child, 0
        if pid == child:
            break
        time.sleep(POLL_S if not stop["sig"] else 0.1)
    _kill_others()  # leftovers of the command (its stubs): gone with it
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


if __name__ == "__main__":
    main(sys.argv)
