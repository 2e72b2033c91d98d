"""glibc's malloc, set for training loops on the CPU.

A CPU training step allocates and frees activations of megabytes each. By
default glibc serves such blocks with fresh `mmap`s, or hands freed heap memory
back to the kernel, so the next step faults every page in again, and epochs
ran slower than in a process whose heap happened to stay grown
(benchmarks/RESULTS.md). Serving blocks up to 256 MiB
from the heap and never trimming it keeps those pages in the process (the same
reason PyTorch's CPU tuning guides preload jemalloc or tcmalloc). The cost:
a process keeps its peak heap until it exits, which suits training workers.
"""

from __future__ import annotations

import ctypes
import functools
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
_HEAP_UP_TO = 256 << 20   # larger blocks (a whole data set, say) still get their own mmap
_NEVER_TRIM = 2**31 - 1   # mallopt takes a C int


@functools.cache
def keep_freed_memory() -> bool:
    """Tune this process's glibc malloc as above; once per process. False where
    there is no glibc (macOS, Windows, musl), which is then left as it is."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _HEAP_UP_TO)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
