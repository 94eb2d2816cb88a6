"""The allocator setting of a maspo process (``maspo.memory``): the large blocks a step
frees are reused by the next step, not page-faulted in anew by the kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

STEP_MIB = 16 + 40 + 28  # x4 bytes: the blocks one "step" allocates, touches and frees
PROBE = """
import resource, sys, torch
from maspo.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
def step():
    blocks = [torch.ones(n << 20) for n in (16, 40, 28)]
    return sum(float(b[0]) for b in blocks)
for _ in range(3):  # up to the high-water mark
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[bool, int]:
    """Whether the setting took, and the page faults of three steps after three."""
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True,
                          text=True, check=True)
    kept, count = done.stdout.split()
    return kept == "True", int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    pages = 3 * (STEP_MIB * 4 << 20) // 4096  # every page of three steps
    plain, plain_faults = faults("plain")
    assert not plain and plain_faults > 0.8 * pages  # glibc's default: fresh pages
    kept, kept_faults = faults("keep")
    assert kept and kept_faults < 0.4 * pages
