"""Keep freed large NumPy buffers in the process instead of handing them back to the OS.

glibc returns every allocation above M_MMAP_THRESHOLD to the kernel when freed, so the next
same-sized temporary faults in fresh pages again (hundreds of page faults per 32 MB array).
A training step allocates the same temporaries every iteration; raising the thresholds once
lets them be reused. Set SPECC_NO_MALLOPT=1 to leave the allocator alone.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
_LIMIT = 1 << 30            # allocations up to 1 GiB come from the heap and stay there


def tune_allocator() -> bool:
    if os.environ.get("SPECC_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, _LIMIT)) and bool(mallopt(M_TRIM_THRESHOLD, 2 * _LIMIT))
