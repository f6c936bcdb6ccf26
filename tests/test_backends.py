"""Choosing a backend: an unknown name is refused with the valid ones listed, use_backend restores the
previous, and the numba backend's one process-wide setting (malloc's) can be declined."""

import os
import platform
import subprocess
import sys

import pytest

import atrousnp as anp


def test_unknown_backend_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"'tpu'.*'numpy', 'numba'"):
        anp.set_backend("tpu")
    assert anp.get_backend().name in anp.backend_names()


def test_use_backend_restores_the_previous_one():
    before = anp.get_backend().name
    with anp.use_backend("numpy"):
        assert anp.get_backend().name == "numpy"
    assert anp.get_backend().name == before


RSS_AFTER_FREEING_24_MB = """
import os
import numpy as np
import atrousnp
atrousnp.backends.get_backend("numba")
def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
a = np.ones(24 << 20, np.uint8)
held = resident()
del a
print((held - resident()) >> 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc")
@pytest.mark.parametrize("environment, given_back", [({}, False), ({"ATROUSNP_KEEP_FREED_MEMORY": "0"}, True),
                                                     ({"MALLOC_MMAP_THRESHOLD_": "65536"}, True)],
                         ids=["default", "opted-out", "the-users-own-setting"])
def test_the_numba_backend_keeps_freed_memory_for_reuse_unless_told_otherwise(environment, given_back):
    """Selecting the numba backend keeps freed arrays of up to 32 MiB in malloc's heap for the
    next ones (backends/numba/memory.py); a user who opts out, or who set malloc's own
    variables, gets malloc as they set it: there the 24 MiB array goes back to the kernel."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("MALLOC_") and name not in ("GLIBC_TUNABLES", "ATROUSNP_KEEP_FREED_MEMORY")}
    env["MALLOC_ARENA_MAX"] = "2"         # a container's usual setting, which is not a choice about thresholds
    run = subprocess.run([sys.executable, "-c", RSS_AFTER_FREEING_24_MB], capture_output=True, text=True,
                         env={**env, **environment}, check=True)
    freed_mib = int(run.stdout.split()[-1])
    assert (freed_mib >= 20) == given_back, f"{freed_mib} MiB went back to the kernel"
