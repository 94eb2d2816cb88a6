"""The allocator setting of a maspo process (``maspo.memory``): once the heap has settled,
the large blocks a step frees are reused by the next step, not page-faulted in anew by
the kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

STEP_MIB = 16 + 40 + 28  # x4 bytes: the blocks one "step" allocates, touches and frees
WARM, MEASURED = 12, 4
PROBE = f"""
import resource, sys, torch
from maspo.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def step():
    blocks = [torch.ones(n << 20) for n in (16, 40, 28)]
    return sum(float(b[0]) for b in blocks)
for _ in range({WARM}):  # the heap's layout settles within 8 steps (varies by run)
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({MEASURED}):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[bool, int]:
    """Whether the setting took, and the page faults of MEASURED steps after WARM."""
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, check=True)
    kept, count = done.stdout.split()
    return kept == "True", int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    pages = MEASURED * (STEP_MIB * 4 << 20) // 4096  # every page of the measured steps
    plain, plain_faults = faults("plain")
    assert not plain and plain_faults > 0.8 * pages  # glibc's default: fresh pages
    kept, kept_faults = faults("keep")
    assert kept and kept_faults < 0.02 * pages  # the smallest block re-faulted: 0.05
