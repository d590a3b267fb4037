"""Keep freed tensor memory in the process on CPU: glibc's malloc otherwise hands big blocks back to the OS.

PyTorch's CPU tensors come from the C library's malloc. glibc serves every block of more than 32 MB
(less at first) with its own mmap and unmaps it on free, so each training step maps its activations
and gradients afresh and the kernel zero-fills every page on first touch: on a CPU with few cores a
large share of a small CNN's step goes to page faults (`sys` time). `keep_freed_memory()` tells glibc
to serve all blocks from its heap and keep what is freed there (mallopt), so the next step reuses the
same pages. `make bench` runs the reports' loop with the default malloc and ours with this setting; the
README's speed section has the measured effect and its memory price.

The cost: the process keeps its peak heap until it exits (a Jupyter kernel until it restarts).
Set FOODCNN_MALLOC=default to leave malloc alone. Other C libraries (musl, macOS, Windows) are left
as they are. CUDA memory is unaffected: it has its own caching allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
import sys

log = logging.getLogger(__name__)

# glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_MAX = -4

TRIM_THRESHOLD = 2**31 - 1  # free memory at the top of the heap is given back only beyond 2 GB (the int maximum)
TOP_PAD = 64 * 2**20  # grow the heap 64 MB at a time: fewer brk calls
ENV = "FOODCNN_MALLOC"

_applied = False


def wanted() -> bool:
    """Return whether the environment allows the tuning (FOODCNN_MALLOC unset or not 'default'/'off'/'0')."""
    return os.environ.get(ENV, "").strip().lower() not in ("default", "off", "0", "no", "false")


def supported() -> bool:
    """Return whether this process's C library is glibc on Linux (the only one the tuning knows)."""
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every block from its heap and keep freed memory; return whether it is in effect.

    Idempotent, process-wide and not undoable (glibc stops adapting its thresholds once they are set).
    """
    global _applied
    if _applied:
        return True
    if not wanted() or not supported():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in
             ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    if ok:
        log.debug("glibc malloc: freed memory stays in the heap (%s=default to turn this off)", ENV)
    _applied = ok
    return ok


def applied() -> bool:
    """Return whether keep_freed_memory() is in effect in this process."""
    return _applied
