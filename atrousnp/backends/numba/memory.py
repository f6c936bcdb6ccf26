"""Keeping freed memory for reuse: how the Numba backend asks glibc's malloc not to give it back.

A training step allocates and frees the same large arrays again and again (im2col blocks,
Winograd's planes, activations and their gradients, 1-40 MB each). glibc's malloc serves an
allocation above its mmap threshold with a fresh mapping from the kernel and unmaps it when
freed; below the threshold it takes memory from its heap, and it hands the heap's free top
back to the kernel once that exceeds the trim threshold. Memory handed back returns as
zeroed pages the next time, one page fault each, so every step pays again for memory it
already had. Raising the mmap threshold to its maximum (32 MiB) and the trim threshold out of
reach keeps freed arrays of up to 32 MiB in the heap, where the next step's arrays reuse them
(larger ones are still mapped fresh): a training step of DeepLabv3-ResNet-50 took 12% and 18%
less time in two alternating rounds, and its peak memory growth fell by 12-17%
(docs/design_notes.md). Both are needed: fixing the trim threshold alone
stops glibc from adapting its mmap threshold, and every array over 128 KiB is mapped fresh.

The price is that the process keeps its high-water mark of heap memory until it exits. It is
a setting of the whole process, so it is skipped where the user opted out
(ATROUSNP_KEEP_FREED_MEMORY=0), where the user set these thresholds themselves, and off
glibc (macOS, Windows, musl).
"""

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3         # glibc's <malloc.h>
MMAP_THRESHOLD_MAX = 32 << 20                       # glibc refuses more on 64-bit systems
NEVER_TRIM = 2**31 - 1                              # mallopt takes a C int
SETTINGS = ("mmap_threshold", "trim_threshold", "top_pad", "mmap_max")  # glibc.malloc.<name>, MALLOC_<NAME>_


def wanted(environ=os.environ):
    """False where the user opted out or set malloc's thresholds themselves."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    users_own = any(f"MALLOC_{name.upper()}_" in environ or f"glibc.malloc.{name}" in tunables for name in SETTINGS)
    return environ.get("ATROUSNP_KEEP_FREED_MEMORY", "1") != "0" and not users_own


def keep_freed_memory():
    """Set glibc's mmap threshold to its maximum and its trim threshold out of reach, where
    ``wanted()``; returns True where both took effect. The mmap threshold goes first: glibc
    refuses only a value above its maximum, and then nothing has changed (the trim threshold
    alone would be the slow case above); it never refuses a trim threshold."""
    if not (wanted() and sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
