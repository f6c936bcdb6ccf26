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

from atrousnp.backends import numba_cuda as nc  # noqa: E402

# A kernel that calls a device function asks the current GPU for its compute capability;
# there is none, so say sm_90.
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))


def signatures(dtype):
    """(name, kernel, argument types) for every kernel, on arrays of ``dtype``."""
    a1, i1, b1 = dtype[::1], t.int64[::1], t.boolean[::1]
    a2, a3, a4 = dtype[:, ::1], dtype[:, :, ::1], dtype[:, :, :, ::1]
    shape = t.UniTuple(t.int64, 3)
    kernels = [(f"map {op}", nc._unary_kernel(fn), (a1, a1)) for op, fn in nc.UNARY.items()]
    kernels += [(f"zip {op}", nc._binary_kernel(fn), (a1, shape, a1, shape, b1 if op in nc.COMPARISONS else a1, shape))
                for op, fn in nc.BINARY.items()]
    return kernels + [
        ("where", nc._where_kernel, (b1, shape, a1, shape, a1, shape, a1, shape)),
        ("fill", nc._fill_kernel, (a1, dtype)),
        ("gather", nc._gather_kernel, (a1, t.int64, shape, a1, shape)),
        ("scatter", nc._scatter_kernel, (a1, a1, t.int64, shape, shape)),
        ("take", nc._take_kernel, (a1, i1, a1)),
        ("put_add", nc._put_add_kernel, (a1, i1, a1)),
        ("reduce rows", nc._reduce_rows_kernel, (a1, t.int64, t.int64, a1)),
        ("reduce rows argmax", nc._reduce_rows_kernel, (a1, t.int64, t.int64, i1)),
        ("reduce wide rows", nc._reduce_wide_rows_kernel(dtype), (a1, t.int64, t.int64, a1)),
        ("tiled gemm", nc._tiled_gemm_kernel(dtype), (a3, a3, a3)),
        ("simple gemm", nc._matmul_simple_kernel, (a3, a3, a3)),
        ("im2col", nc._im2col_kernel, (a4, a2) + (t.int64,) * 10),
        ("col2im", nc._col2im_kernel, (a2, a4) + (t.int64,) * 10),
    ]


def main():
    failures = 0
    for dtype in (t.float32, t.float64):
        for name, kernel, argument_types in signatures(dtype):
            try:
                cuda.compile_ptx(kernel.py_func, argument_types, cc=(9, 0))
                print(f"ok    {dtype} {name}")
            except Exception as error:
                failures += 1
                print(f"FAIL  {dtype} {name}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
