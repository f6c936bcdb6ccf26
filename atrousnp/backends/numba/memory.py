"""Keeping freed memory for reuse: how the Numba backend asks glibc's malloc not to give it back.

A training step allocates and frees the same large arrays again and again (im2col blocks,
Winograd's planes, activations and their gradients, 1-40 MB each). glibc's malloc serves an
allocation above its mmap threshold with a fresh mapping from the kernel and unmaps it when
freed; below the threshold it takes memory from its heap, and it hands the heap's free top
back to the kernel once that exceeds the trim threshold. Memory handed back is returned as
zeroed pages the next time, one page fault each, so every step pays again for memory it
already had. Raising the mmap threshold to its maximum (32 MiB) and the trim threshold out of
reach keeps the freed memory in the heap, where the next step's arrays reuse it: a training
step of DeepLabv3-ResNet-50 ran 12-14% faster and its peak memory fell (docs/design_notes.md).

The price is that the process keeps its high-water mark of heap memory until it exits, as
caching allocators such as jemalloc's do. It is a setting of the whole process, so it is
skipped where the user opted out (ATROUSNP_KEEP_FREED_MEMORY=0), where the user has chosen
malloc's settings (MALLOC_* variables or GLIBC_TUNABLES), and where the C library has no
``mallopt`` (macOS, Windows, musl).
"""

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3         # glibc's <malloc.h>
MMAP_THRESHOLD_MAX = 32 << 20                       # glibc refuses more on 64-bit systems
NEVER_TRIM = 2**31 - 1                              # mallopt takes a C int


def wanted(environ=os.environ):
    """False where the user opted out or chose malloc's settings themselves."""
    chose_malloc = any(name.startswith("MALLOC_") for name in environ) or "glibc.malloc" in environ.get("GLIBC_TUNABLES", "")
    return environ.get("ATROUSNP_KEEP_FREED_MEMORY", "1") != "0" and not chose_malloc


def keep_freed_memory():
    """Set glibc's mmap threshold to its maximum and its trim threshold out of reach, where
    ``wanted()``. Returns True where both settings took effect."""
    if not wanted():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
