"""Letting OpenBLAS's idle threads sleep: a setting for large maps, which a user calls.

NumPy's OpenBLAS runs a GEMM on a pool of threads of its own. When a GEMM is done, each of
those threads spins, checking for new work, for 2^28 CPU cycles (about a tenth of a second)
before it sleeps, so that the next GEMM finds it awake. That is a trade:

* On large maps it costs. A DeepLabv3-ResNet-50 step at 321x321 runs a GEMM every few
  milliseconds, so OpenBLAS's threads never sleep, and the Numba kernels between the GEMMs
  (batch norm, ReLU, transposes, im2col) share a core with a spinning thread: a batch-norm
  kernel on (2, 256, 81*81) inside the model took 1.55 ms on two Numba threads, no less than on
  one (1.58), and 0.93 ms once OpenBLAS's threads slept as soon as they were idle. Alternating
  with OpenBLAS's default, an eval took 6% less time and a training step 8% less (medians of
  three runs), the paper's eval geometry (output stride 8, 513x513) 5-12% less.
* On small maps the spinning pays. The training example's small ResNet on 96-pixel crops runs many
  small GEMMs, each of which then has to wake a thread: 600 iterations took 46 s instead of
  36 (two alternating runs each), and 41-43 s with timeouts of 2^16 to 2^22 cycles.

So the backend leaves OpenBLAS as it is, and ``let_blas_threads_sleep()`` is for a process
whose maps are large (``benchmarks/model.py`` calls it for atrousnp). OpenBLAS reads the
timeout from ``OPENBLAS_THREAD_TIMEOUT`` (an exponent: 2^n cycles, n from 4 to 30) once, when
the library loads with NumPy, and applies it when its pool of threads starts, at that same
moment; setting ``OPENBLAS_THREAD_TIMEOUT=4`` before NumPy is imported does the same. The
function sets the variable for a moment, has OpenBLAS read its environment again
(``openblas_read_env``) and stops the pool (``blas_thread_shutdown_``, as OpenBLAS itself does
before a fork); the next GEMM starts the pool afresh, which applies the new timeout.

It changes the whole process, so it does nothing where the user set ``OPENBLAS_THREAD_TIMEOUT``
themselves (before NumPy loaded or since), where another Python thread could be inside a GEMM
while the pool stops (so never in Jupyter, whose kernel runs threads of its own), and where
NumPy's BLAS is not OpenBLAS's thread server (an OpenMP build, MKL, Accelerate). Linux only:
the library is found by its name in /proc/self/maps.
"""

import ctypes
import os
import threading

SLEEP_AT_ONCE = 4                  # OpenBLAS's smallest timeout: spin 2^4 cycles, then sleep
SERVER_FUNCTIONS = ("openblas_thread_timeout", "openblas_read_env", "blas_thread_shutdown_")
PTHREADS = 1                       # what openblas_get_parallel returns for the pthread server
# How each build names OpenBLAS's API: plain, 64-bit integers, and NumPy's and SciPy's wheels
NAMINGS = [(prefix, suffix) for prefix in ("", "scipy_") for suffix in ("", "64_", "_64", "_64_")]


def openblas_functions(library, names):
    """ctypes' handles on the named functions of OpenBLAS's API, under the one naming that has
    them all, or None."""
    for prefix, suffix in NAMINGS:
        if all(hasattr(library, prefix + name + suffix) for name in names):
            return [getattr(library, prefix + name + suffix) for name in names]
    return None


def loaded_openblas():
    """Paths of the OpenBLAS libraries mapped into this process (NumPy's, and SciPy's if loaded)."""
    try:
        with open("/proc/self/maps") as maps:   # address, permissions, offset, device, inode, path
            mappings = [line.split(maxsplit=5) for line in maps]
    except OSError:
        return []
    paths = {fields[5].strip() for fields in mappings if len(fields) == 6}   # a path may hold spaces
    return sorted(path for path in paths if "openblas" in path.rsplit("/", 1)[-1] and ".so" in path)


def with_thread_server(path):
    """ctypes' handle on the library at ``path`` if it has OpenBLAS's pthread server, else None."""
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    get_parallel = openblas_functions(library, ("openblas_get_parallel",))
    if get_parallel is None or get_parallel[0]() != PTHREADS:
        return None
    if not all(hasattr(library, name) for name in SERVER_FUNCTIONS):
        return None
    library.openblas_thread_timeout.restype = ctypes.c_uint
    return library


def let_blas_threads_sleep(environ=os.environ):
    """Have each loaded OpenBLAS put its idle threads to sleep at once (above); returns how
    many libraries it changed."""
    if "OPENBLAS_THREAD_TIMEOUT" in environ or threading.active_count() > 1:
        return 0
    libraries = [lib for lib in map(with_thread_server, loaded_openblas()) if lib is not None]
    done = 0
    for library in libraries:
        if library.openblas_thread_timeout() != 0:     # set by the user when the library loaded
            continue
        environ["OPENBLAS_THREAD_TIMEOUT"] = str(SLEEP_AT_ONCE)
        try:
            library.openblas_read_env()
        finally:
            environ.pop("OPENBLAS_THREAD_TIMEOUT", None)
        library.blas_thread_shutdown_()                # the next GEMM restarts the pool
        done += library.openblas_thread_timeout() == SLEEP_AT_ONCE
    return done
