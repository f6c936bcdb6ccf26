"""Which threads run the Numba backend's parallel loops, and what happens to them across a fork.

Every kernel with a ``prange`` loop hands its iterations to a pool of threads and waits for
them, once per call; a training step makes about 600 such calls, many of a fraction of a
millisecond. What a call costs besides its work depends on Numba's threading layer:

* ``workqueue`` (Numba's own) wakes its sleeping threads for every call while the caller
  sleeps until they are done: two or three wake-ups, 80-150 us a call on a 2-core VM.
* ``omp`` (OpenMP) lets the calling thread do its share at once. But GNU OpenMP's idle
  threads spin (300,000 iterations by default) to start the next loop sooner, OpenBLAS's
  threads spin after a GEMM too, and on two cores they take the cores from each other: with
  200,000 spins a training step took twice as long. Told to sleep when idle
  (``OMP_WAIT_POLICY=passive``) a call costs one wake-up: a 1024-element loop right after a
  GEMM took 43 us, against workqueue's 128 (medians of 301). The training example took 97-105 s
  instead of 116-124 (two alternating runs each), a DeepLabv3-ResNet-50 training step 4.5% less
  (medians of three alternating runs; docs/design_notes.md).

So the backend picks ``omp`` with the passive policy where it can be sure of getting it: the
user chose neither a layer (``NUMBA_THREADING_LAYER`` or ``numba.config``) nor OpenMP's waiting
(``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``), no parallel loop has run yet, and GNU OpenMP
(``libgomp``, on Linux) is not loaded yet, since it reads ``OMP_WAIT_POLICY`` once, when it is
loaded. The variable is set for that moment only and then removed, so no child process sees
it. Otherwise the layer is the user's, or ``workqueue``. PyTorch's wheel loads a libgomp of
its own: imported first, it leaves this backend on workqueue; imported after, it shares the
passive runtime loaded here.

GNU OpenMP cannot run in a child process forked after its threads started: Numba stops such
a child at its first parallel loop. So each kernel is a ``ParallelKernel``: in a process
forked from one whose OpenMP threads ran, it runs a serial build of the same loop instead,
compiled there, uncached, on first use (``prange`` is ``range`` without ``parallel=True``).
"""

import functools
import importlib
import os
import sys
import threading

import numba
from numba import njit

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")   # how OpenMP's idle threads wait
chosen = None                    # the layer choose_threading_layer settled on, once per process
forked_from_openmp = False       # set in a child forked after OpenMP's threads had started
_choosing = threading.Lock()


def layer_in_use():
    """The layer Numba's threads run on, or None before they have started (it is fixed then)."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def gnu_openmp_loaded():
    """Whether GNU OpenMP (libgomp.so) is mapped into this process, where /proc/self/maps says;
    else assume so. PyTorch's wheel loads one of its own under that name."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so" in line for line in maps)
    except OSError:
        return True


def load_sleeping_openmp(environ=os.environ):
    """Load Numba's OpenMP layer with OMP_WAIT_POLICY=passive in the environment, then restore
    the environment; True where GNU OpenMP is what loaded (LLVM's and Intel's runtimes read the
    variable later, when it is gone)."""
    environ["OMP_WAIT_POLICY"] = "passive"
    try:
        importlib.import_module("numba.np.ufunc.omppool")   # loads libgomp, which reads the variable
    except ImportError:
        return False
    finally:
        environ.pop("OMP_WAIT_POLICY", None)
    return gnu_openmp_loaded()


def choose_threading_layer(environ=os.environ):
    """Set Numba's threading layer for the process, once (see above); returns it."""
    global chosen
    with _choosing:
        if chosen is None:
            chosen = _choose(environ)
        return chosen


def _choose(environ):
    in_use = layer_in_use()
    if in_use is not None:
        return in_use
    if "NUMBA_THREADING_LAYER" in environ or numba.config.THREADING_LAYER != "default":
        return numba.config.THREADING_LAYER                  # the user's choice
    usable = (sys.platform.startswith("linux") and not any(name in environ for name in WAIT_SETTINGS)
              and not gnu_openmp_loaded() and load_sleeping_openmp(environ))
    numba.config.THREADING_LAYER = "omp" if usable else "workqueue"
    return numba.config.THREADING_LAYER


def _note_fork():
    """In a forked child: serial loops from now on, if the parent's OpenMP threads had started."""
    global forked_from_openmp
    forked_from_openmp = forked_from_openmp or layer_in_use() == "omp"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_note_fork)


class ParallelKernel:
    """A ``@njit(parallel=True, cache=True)`` kernel that settles the threading layer before its
    first loop (if the backend has not) and runs a serial build of itself in a process forked
    after GNU OpenMP's threads started (above)."""

    def __init__(self, py_func, options):
        self.py_func, self.options = py_func, options
        self.parallel = njit(parallel=True, cache=True, **options)(py_func)
        self.serial = None
        functools.update_wrapper(self, py_func)

    def __call__(self, *args):
        if chosen is None:
            choose_threading_layer()
        if not forked_from_openmp:
            return self.parallel(*args)
        if self.serial is None:
            # not cached: the cache is keyed by the function, and the parallel build is there
            self.serial = njit(**self.options)(self.py_func)
        return self.serial(*args)


def parallel_kernel(py_func=None, **options):
    """Decorator: ``@parallel_kernel`` or ``@parallel_kernel(fastmath=...)`` for a prange kernel."""
    if py_func is None:
        return lambda func: ParallelKernel(func, options)
    return ParallelKernel(py_func, options)
