"""Choosing a backend: an unknown name is refused with the valid ones listed, use_backend restores the
previous, and the numba backend's two process-wide settings (malloc's, and its threads') can be
declined, OpenBLAS's threads sleep when asked; its kernels survive a fork."""

import os
import platform
import subprocess
import sys

import numpy as np
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


def clean_environment(**settings):
    """os.environ without the threading variables a test sets, plus ``settings``."""
    chosen = ("NUMBA_THREADING_LAYER", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")
    return {**{name: value for name, value in os.environ.items() if name not in chosen}, **settings}


THREADING_LAYER_CHOSEN = """
import os, sys
import numpy as np, numba
exec(sys.argv[1])                                          # what the user did first
from atrousnp.backends.numba import kernels
x = np.ones((2, 3, 5), np.float32)
kernels.bn_stats(x, np.empty(3, np.float32), np.empty(3, np.float32))   # a first parallel loop
import atrousnp
atrousnp.backends.get_backend("numba").bn_stats(x)
print(numba.threading_layer(), os.environ.get("OMP_WAIT_POLICY"))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU OpenMP's layer is chosen on Linux only")
@pytest.mark.parametrize("prelude, environment, expected", [
    ("", {}, "omp None"),
    ("", {"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue None"),
    ("numba.config.THREADING_LAYER = 'workqueue'", {}, "workqueue None"),
    ("", {"OMP_WAIT_POLICY": "active"}, "workqueue active"),
    ("", {"GOMP_SPINCOUNT": "1000"}, "workqueue None"),
    ("import ctypes; ctypes.CDLL('libgomp.so.1')", {}, "workqueue None")],
    ids=["default", "the-users-layer", "the-users-layer-in-code", "the-users-wait-policy", "the-users-spin-count",
         "gnu-openmp-already-loaded"])
def test_the_numba_kernels_run_on_openmp_threads_that_sleep(prelude, environment, expected):
    """By default OpenMP, with OMP_WAIT_POLICY=passive as libgomp reads it when it loads (its
    OMP_DISPLAY_ENV report shows no spinning), and the variable removed afterwards, even where a
    kernel runs before the backend is selected; a user's own layer or OpenMP waiting, or a libgomp
    already loaded, which has read the environment before, keeps workqueue (threads.py)."""
    run = subprocess.run([sys.executable, "-c", THREADING_LAYER_CHOSEN, prelude], capture_output=True, text=True,
                         env=clean_environment(OMP_DISPLAY_ENV="VERBOSE", **environment))
    if run.returncode != 0 and "libgomp" in run.stderr:
        pytest.skip("no GNU OpenMP here")
    assert run.returncode == 0, run.stderr
    if environment == {} and prelude == "" and "OMP_WAIT_POLICY" not in run.stderr:
        pytest.skip("Numba's OpenMP layer does not load here (no libgomp): workqueue, as chosen")
    assert run.stdout.split("\n")[0] == expected
    if expected.startswith("omp"):
        assert "GOMP_SPINCOUNT = '0'" in run.stderr            # passive; by default it is 300000


THREADS_SPINNING_AFTER_A_GEMM = """
import os, sys, threading, time
import numpy as np
import atrousnp
from atrousnp.backends.numba import blas
if not any(map(blas.with_thread_server, blas.loaded_openblas())):
    raise SystemExit("skip: NumPy's BLAS is not OpenBLAS's pthread server")
atrousnp.backends.get_backend("numba")
if sys.argv[1] == "asked":
    from atrousnp.backends.numba import let_blas_threads_sleep
    let_blas_threads_sleep()

def others_running():
    me, running = str(threading.get_native_id()), 0
    for task in os.listdir("/proc/self/task"):
        if task != me:
            with open(f"/proc/self/task/{task}/stat") as stat:
                running += stat.read().rsplit(")", 1)[1].split()[0] == "R"
    return running

a = np.ones((512, 512), np.float32)
counts = []
for _ in range(15):
    a @ a
    time.sleep(0.01)
    counts.append(others_running())
print(sorted(counts)[len(counts) // 2])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OpenBLAS's library is found on Linux only")
@pytest.mark.skipif(len(getattr(os, "sched_getaffinity", lambda _: [])(0)) < 2,
                    reason="OpenBLAS starts no second thread on one CPU")
@pytest.mark.parametrize("asked, environment, spinning", [
    ("asked", {}, 0), ("not-asked", {}, 1), ("asked", {"OPENBLAS_THREAD_TIMEOUT": "28"}, 1)],
    ids=["asked", "the-default", "asked-but-the-users-own-timeout"])
def test_openblas_threads_sleep_once_a_gemm_is_done_when_asked(asked, environment, spinning):
    """10 ms after a GEMM, the median count of this process's other threads still running over 15
    GEMMs: none once let_blas_threads_sleep() has run (blas.py); OpenBLAS's own default, which
    selecting the backend leaves alone and a user's own timeout keeps (2^28 cycles, about 0.1 s),
    leaves its second thread spinning. OpenBLAS is asked for two threads (one per CPU at most)."""
    env = {name: value for name, value in os.environ.items()
           if not name.endswith("_NUM_THREADS") and name != "OPENBLAS_THREAD_TIMEOUT"}
    run = subprocess.run([sys.executable, "-c", THREADS_SPINNING_AFTER_A_GEMM, asked], capture_output=True,
                         text=True, env={**env, "OPENBLAS_NUM_THREADS": "2", **environment})
    if run.returncode != 0 and "skip:" in run.stderr:
        pytest.skip(run.stderr.strip())
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) == spinning


KERNELS_IN_FORKED_CHILDREN = """
import os
import numpy as np
import atrousnp
backend = atrousnp.backends.get_backend("numba")
x = np.random.default_rng(0).standard_normal((2, 8, 40)).astype(np.float32)
parent = backend.bn_stats(x)

def same_as_the_parent():
    return all(np.array_equal(a, b) for a, b in zip(parent, backend.bn_stats(x)))

def in_a_child(work):
    pid = os.fork()
    if pid == 0:
        os._exit(0 if work() else 3)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

print(in_a_child(same_as_the_parent),                       # a child
      in_a_child(lambda: same_as_the_parent() and in_a_child(same_as_the_parent) == 0))   # and a grandchild
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
@pytest.mark.parametrize("environment", [{}, {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"}],
                         ids=["the-backends-choice", "the-users-openmp"])
def test_children_forked_after_the_kernels_ran_compute_the_same_serially(environment):
    """GNU OpenMP stops a forked child at its first parallel loop (a grandchild hangs); the
    kernels run a serial build of themselves there instead, and give the parent's numbers,
    whoever chose OpenMP."""
    run = subprocess.run([sys.executable, "-c", KERNELS_IN_FORKED_CHILDREN], capture_output=True, text=True,
                         env=clean_environment(**environment), timeout=300, check=True)
    assert run.stdout.split() == ["0", "0"], run.stderr


def test_a_kernels_serial_build_equals_its_parallel_one(monkeypatch):
    from atrousnp.backends.numba import kernels, threads
    x = np.random.default_rng(1).standard_normal((3, 5, 7))
    parallel = [np.empty(5), np.empty(5)]
    kernels.bn_stats(x, *parallel)
    monkeypatch.setattr(threads, "forked_from_openmp", True)
    serial = [np.empty(5), np.empty(5)]
    kernels.bn_stats(x, *serial)
    assert kernels.bn_stats.serial is not None
    np.testing.assert_allclose(serial, parallel, rtol=1e-12)


def test_gemms_side_by_side_equal_numpy_products():
    """gemm_batch.matmul_each (OpenBLAS's batched GEMM where NumPy has it) against np.matmul:
    3-d stacks, a repeated matrix, transposed views of either operand, both float dtypes; and,
    which np.matmul computes instead, products of different shapes in one call and an operand
    BLAS cannot read (strided columns)."""
    from atrousnp.backends.numba import gemm_batch
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        a, b = rng.standard_normal((4, 130, 120)).astype(dtype), rng.standard_normal((4, 120, 110)).astype(dtype)
        cases = [(a, b), ([a[0]] * 4, b), (np.ascontiguousarray(a.transpose(0, 2, 1)).transpose(0, 2, 1), b),
                 (a, np.ascontiguousarray(b.transpose(0, 2, 1)).transpose(0, 2, 1)), (a[:, :, ::2], b[:, ::2]),
                 ([a[0], a[1, :, :100]], [b[0], b[1, :100, :80]])]
        for x, y in cases:
            out = [np.full((p.shape[0], q.shape[1]), np.nan, dtype) for p, q in zip(x, y)]
            gemm_batch.matmul_each(x, y, out)
            for p, q, got in zip(x, y, out):
                np.testing.assert_allclose(got, p @ q, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_the_batched_gemm_takes_products_that_keep_its_threads_busy_and_are_not_small():
    """OpenBLAS's batched call crashed on products of M*N*K <= 100^3 in DYNAMIC_ARCH builds (fixed
    upstream in pull request 5980), so those must never reach it; and it runs whole products in
    rounds of as many as it has threads, so a count that would leave a round's threads idle goes
    to np.matmul, which splits each product. Else it takes them, where NumPy's OpenBLAS has the
    call (else every product is np.matmul's)."""
    from atrousnp.backends.numba import gemm_batch
    blas = gemm_batch.batched_gemm(np.float32)
    if blas is None:
        pytest.skip("NumPy's BLAS has no cblas_sgemm_batch")
    count = 4 * blas.threads()
    square, taller = np.ones((count, 100, 100), np.float32), np.ones((count, 101, 100), np.float32)
    assert gemm_batch._layout(square, square, np.empty((count, 100, 100), np.float32)) is None
    assert gemm_batch._layout(taller, square, np.empty((count, 101, 100), np.float32)) is not None
    if blas.threads() > 1:
        assert gemm_batch._layout(taller[:1], square[:1], np.empty((1, 101, 100), np.float32)) is None
    # a list is checked matrix by matrix: one of other strides, or misaligned, sends all to np.matmul
    alike = [np.ones((101, 100), np.float32) for _ in range(count)]
    assert gemm_batch._layout(alike, square, np.empty((count, 101, 100), np.float32)) is not None
    assert gemm_batch._layout([alike[0]] * count, square, np.empty((count, 101, 100), np.float32)) is not None
    misaligned = np.zeros(101 * 100 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(101, 100)
    for odd in (np.ones((101, 200), np.float32)[:, :100], misaligned):
        assert gemm_batch._layout(alike[:-1] + [odd], square, np.empty((count, 101, 100), np.float32)) is None
    as_objects = np.empty(count, object)       # an array of matrices, not of numbers
    as_objects[:] = alike
    assert gemm_batch._layout(as_objects, square, np.empty((count, 101, 100), np.float32)) is None
