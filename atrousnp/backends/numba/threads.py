"""Which threads run the Numba backend's parallel loops, and what happens to them across a fork.

Every kernel with a ``prange`` loop hands its iterations to a pool of threads and waits for
them, once per call; a training step makes about 600 such calls, many of a fraction of a
millisecond. What a call costs besides its work depends on Numba's threading layer:

* ``workqueue`` (Numba's own) wakes its sleeping threads for every call while the caller
  sleeps until they are done: two or three wake-ups, 80-150 us a call on a 2-core VM.
* ``omp`` (OpenMP) lets the calling thread do its share at once. By default, though, GNU
  OpenMP's idle threads spin for 300,000 iterations to start the next loop sooner, OpenBLAS's
  threads spin after a GEMM too, and on two cores they take the cores from each other: a
  training step took twice as long. Told to sleep when idle (``OMP_WAIT_POLICY=passive``) it
  costs one wake-up a call (43 us, against workqueue's 128 for the same loop after a GEMM):
  the training example took 97-105 s instead of 116-123, a DeepLabv3-ResNet-50 training step
  4-7% less time (docs/design_notes.md).

So the backend picks ``omp`` with the passive policy where it can be sure of getting it: the
user did not choose a layer (``NUMBA_THREADING_LAYER``) or OpenMP's waiting themselves, no
parallel loop has run yet, and GNU OpenMP (``libgomp``, on Linux) is not loaded yet, since it
reads ``OMP_WAIT_POLICY`` once, when it is loaded. The variable is set for that moment only
and then put back as it was, so it reaches no other OpenMP runtime and no child process.
Anywhere else it keeps ``workqueue``.

GNU OpenMP cannot run in a child process forked after its threads started: Numba stops such
a child at its first parallel loop. So each kernel is a ``ParallelKernel``: in a process
forked from one whose OpenMP threads ran, it runs a serial build of the same loop instead,
compiled there on first use (``prange`` is ``range`` without ``parallel=True``).
"""

import functools
import importlib
import os
import sys

import numba
from numba import njit
from numba.np.ufunc import parallel

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")   # how OpenMP's idle threads wait
chosen = None                # the layer choose_threading_layer set, once
forked_from_openmp = False


def threads_running():
    """Whether Numba has started its pool of threads in this process (after that, its layer is fixed)."""
    return getattr(parallel, "_is_initialized", True)


def gnu_openmp_loaded():
    """Whether GNU OpenMP is mapped into this process (where /proc/self/maps says; else assume so).
    Copies bundled under other names (PyTorch's libgomp-<hash>.so) are other runtimes, and do not count."""
    try:
        with open("/proc/self/maps") as maps:
            return any("/libgomp.so" in line for line in maps)
    except OSError:
        return True


def load_sleeping_openmp(environ=os.environ):
    """Load Numba's OpenMP layer with OMP_WAIT_POLICY=passive in the environment, then restore
    the environment; returns whether the layer loaded."""
    environ["OMP_WAIT_POLICY"] = "passive"
    try:
        importlib.import_module("numba.np.ufunc.omppool")    # loads libgomp, which reads the variable
        return True
    except ImportError:
        return False
    finally:
        del environ["OMP_WAIT_POLICY"]


def choose_threading_layer(environ=os.environ):
    """Set Numba's threading layer for the process, once, where the user has not (see above);
    returns the layer now configured."""
    global chosen
    if chosen is not None or "NUMBA_THREADING_LAYER" in environ or threads_running():
        return numba.config.THREADING_LAYER
    usable = (sys.platform.startswith("linux") and not any(name in environ for name in WAIT_SETTINGS)
              and not gnu_openmp_loaded() and load_sleeping_openmp(environ))
    chosen = numba.config.THREADING_LAYER = "omp" if usable else "workqueue"
    if usable:
        os.register_at_fork(after_in_child=_note_fork)
    return chosen


def _note_fork():
    """In a forked child: serial loops from now on, if the parent's OpenMP threads had started."""
    global forked_from_openmp
    forked_from_openmp = forked_from_openmp or threads_running()


class ParallelKernel:
    """A ``@njit(parallel=True, cache=True)`` kernel that runs a serial build of itself in a
    process forked after GNU OpenMP's threads started (above)."""

    def __init__(self, py_func, options):
        self.py_func, self.options = py_func, options
        self.parallel = njit(parallel=True, cache=True, **options)(py_func)
        self.serial = None
        functools.update_wrapper(self, py_func)

    def __call__(self, *args):
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
