"""Compile every kernel of the cuda backend to PTX for sm_90 (an H100), with no GPU.

    python tests/compile_cuda_kernels.py

The CUDA simulator runs kernels as Python, so it never types them: code that numba cannot
compile for a GPU passes there. This runs numba-cuda's real compiler (NVVM) instead. It needs
numba-cuda with its NVVM (``pip install "numba-cuda[cu12]"``, about 450 MB), exits 77 when that
is missing, and must run without NUMBA_ENABLE_CUDASIM. Each kernel module of the backend lists
its kernels with their argument types in ``signatures(dtype)``. Prints one line per kernel;
exit 1 if any fails, or if a module defines a kernel that its signatures() leave out.
"""

import importlib
import os
import pkgutil
import sys
import types

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("run without NUMBA_ENABLE_CUDASIM=1: the simulator has no compiler")
try:
    import numba_cuda  # noqa: F401 - numba's own, older numba.cuda needs a driver to compile max()
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from numba import types as t
    cuda.compile_ptx(lambda a: None, (t.float32[::1],), cc=(9, 0))
except Exception as error:  # no numba-cuda, or no NVVM for it
    print(f"skip: numba-cuda cannot compile here ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
    sys.exit(77)

import atrousnp.backends.cuda as package  # noqa: E402

# Every module of the package: a kernel module exports signatures(dtype), and a new module is
# found here without a change to this script.
MODULES = [importlib.import_module(f"{package.__name__}.{info.name}") for info in pkgutil.iter_modules(package.__path__)]

# A kernel that calls a device function asks the current GPU for its compute capability;
# there is none, so say sm_90.
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))


def signatures(dtype):
    """(name, kernel, argument types) for every kernel, on arrays of ``dtype``."""
    return [entry for module in MODULES if hasattr(module, "signatures") for entry in module.signatures(dtype)]


def every_kernel():
    """The names of every kernel the cuda modules define (dispatchers, and kernel factories'
    results), so that a kernel a module leaves out of its signatures() fails this script."""
    found = set()
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, dispatcher.CUDADispatcher) and not value.targetoptions.get("device"):
                found.add(value.py_func.__name__)
    return found


def main():
    failures = 0
    covered = set()
    for dtype in (t.float32, t.float64):
        for name, kernel, argument_types in signatures(dtype):
            covered.add(kernel.py_func.__name__)
            try:
                cuda.compile_ptx(kernel.py_func, argument_types, cc=(9, 0))
                print(f"ok    {dtype} {name}")
            except Exception as error:
                failures += 1
                print(f"FAIL  {dtype} {name}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    for name in sorted(every_kernel() - covered):
        failures += 1
        print(f"FAIL  {name}: a kernel with no signature in this script")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
