"""Exec a command that dies with its parent: `python orphan_guard.py PARENT_PID -- CMD ARGS...`.

Run as a script (not `-m`, so nothing of ours is imported). Sets PR_SET_PDEATHSIG to SIGKILL,
checks that the parent did not already die in between, then execs CMD in place (same pid), so
a `serve` killed with -9 leaves no tritonserver behind. Linux only; elsewhere it just execs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` to this process when the thread that forked it ends."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: orphan_guard.py PARENT_PID -- CMD [ARGS...]")
    parent = int(argv[1])
    set_pdeathsig()
    if os.getppid() != parent:  # the parent died before prctl: do not start an orphan
        sys.exit(1)
    os.execv(argv[3], argv[3:])


if __name__ == "__main__":
    main(sys.argv)
