"""The node keeps large receive buffers in the heap for reuse (dicom_node.scp.keep_large_buffers):
with glibc's defaults every multi-megabyte PDU buffer came from freshly mapped pages."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import resource, sys
from dicom_node.scp import keep_large_buffers
ok = keep_large_buffers() if sys.argv[1] == "on" else True
def cycle():
    bufs = [bytearray(7_300_000) for _ in range(4)]  # a PDU read, its copies
    for b in bufs:
        b[::4096] = b"x" * len(b[::4096])  # touch every page
    del bufs
cycle(); cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    cycle()
print(int(ok), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1])


def test_large_buffers_are_reused_without_page_faults() -> None:
    ok, on = _faults("on")
    _, off = _faults("off")
    pages = 10 * 4 * 7_300_000 // 4096  # what fresh mappings fault in
    assert ok == 1
    assert (off > pages // 2, on < pages // 20) == (True, True)
