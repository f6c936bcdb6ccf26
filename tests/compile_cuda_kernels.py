"""Compile every kernel of the cuda backend to PTX for sm_90 (an H100), with no GPU.

    python tests/compile_cuda_kernels.py

The CUDA simulator runs kernels as Python, so it never types them: code that numba cannot
compile for a GPU passes there. This runs numba-cuda's real compiler (NVVM) instead. It needs
numba-cuda with its NVVM (``pip install "numba-cuda[cu12]"``, about 450 MB), exits 77 when that
is missing,
and must run without NUMBA_ENABLE_CUDASIM. Prints one line per kernel; exit 1 if any fails.
"""

import os
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

from atrousnp.backends.cuda import conv, elementwise, fused, gemm, reduce  # noqa: E402

MODULES = (conv, elementwise, fused, gemm, reduce)

# A kernel that calls a device function asks the current GPU for its compute capability;
# there is none, so say sm_90.
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))


def signatures(dtype):
    """(name, kernel, argument types) for every kernel, on arrays of ``dtype``."""
    a1, i1, b1 = dtype[::1], t.int64[::1], t.boolean[::1]
    a2, a4 = dtype[:, ::1], dtype[:, :, :, ::1]
    shape = t.UniTuple(t.int64, 3)
    i, f = t.int64, dtype
    gemm_args = (a1, i, i, i, i) * 3 + (i, i, i, i, t.boolean)
    chunk = t.UniTuple(a1, fused.TENSORS_PER_LAUNCH)
    kernels = [(f"map {op}", elementwise.unary_kernel(fn), (a1, a1)) for op, fn in elementwise.UNARY.items()]
    kernels += [(f"zip {op}", elementwise.binary_kernel(fn),
                 (a1, shape, a1, shape, b1 if op in elementwise.COMPARISONS else a1, shape))
                for op, fn in elementwise.BINARY.items()]
    return kernels + [
        ("where", elementwise.where_kernel, (b1, shape, a1, shape, a1, shape, a1, shape)),
        ("fill", elementwise.fill_kernel, (a1, dtype)),
        ("gather", elementwise.gather_kernel, (a1, i, shape, a1, shape)),
        ("scatter", elementwise.scatter_kernel, (a1, a1, i, shape, shape)),
        ("take", elementwise.take_kernel, (a1, i1, a1)),
        ("put_add", elementwise.put_add_kernel, (a1, i1, a1)),
        ("reduce rows", reduce._reduce_rows_kernel, (a1, i, i, a1)),
        ("reduce rows argmax", reduce._reduce_rows_kernel, (a1, i, i, i1)),
        ("reduce wide rows", reduce._reduce_wide_rows_kernel(dtype), (a1, i, i, a1)),
        ("tiled gemm", gemm._tiled_gemm_kernel(dtype), gemm_args),
        ("simple gemm", gemm._simple_gemm_kernel, gemm_args),
        ("im2col", conv._im2col_kernel, (a4, a2) + (i,) * 10),
        ("col2im", conv._col2im_kernel, (a2, a4) + (i,) * 10),
        ("bn stats", fused.bn_stats_kernel, (a1, i, i, a1, a1)),
        ("update running", fused.update_running_kernel, (a1, a1, a1, a1, t.float64, t.float64)),
        ("bn forward", fused.bn_forward_kernel, (a1, a1, a1, a1, a1, f, a1, t.boolean, i, i, a1)),
        ("relu backward", fused.relu_backward_kernel, (a1, a1, a1)),
        ("bn backward", fused.bn_backward_kernel, (a1, a1, a1, a1, a1, a1, f, t.boolean, i, i, a1, a1, a1)),
        ("xent pixels", fused.xent_pixels_kernel, (a1, i1, a1, i, i, i, a1, a1, a1)),
        ("xent total", fused.xent_total_kernel, (a1, a1, a1, a1)),
        ("xent backward", fused.xent_backward_kernel, (a1, a1, i1, a1, i, a1, a1, i, i, a1)),
        ("sgd", fused.sgd_kernel, (chunk, chunk, chunk, t.UniTuple(i, fused.TENSORS_PER_LAUNCH), i)
         + (t.float64,) * 4 + (t.boolean, t.boolean)),
    ]


def every_kernel():
    """The names of every kernel the cuda modules define (dispatchers, and kernel factories'
    results), so that a kernel added without a signature above fails this script."""
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
