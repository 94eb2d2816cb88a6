"""The process's allocator: keep freed memory for the next allocation instead of returning it.

A training step allocates and frees the same large blocks again and again: gradients
(0.5 GB for the 135M default model), the embedding's dense gradient (113 MB), lm_head
blocks, activations. glibc's malloc hands blocks over 32 MiB back to the kernel when they
are freed (mmap / munmap) and trims the top of its heap, so the next step's blocks are
page-faulted in and zeroed by the kernel anew: about 12 of a shortened study run's 105
CPU-seconds were system time, most of it that. ``keep_freed_memory`` asks malloc to serve
every block from its heap and keep what is freed there (up to 2 GB at its top), which
took 4 s of system time off that run. The peak resident memory stays what it was (the
heap's high-water mark is the run's own peak); it is not given back between phases.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4
KEPT_AT_TOP = 2**31 - 1  # bytes free at the heap's top before malloc trims it (an int)


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed blocks for reuse (see the module doc); False where
    the C library is not glibc (macOS, musl), which is left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEPT_AT_TOP))
