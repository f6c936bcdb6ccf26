"""Independent GEMMs side by side, a whole GEMM per core: OpenBLAS's batched GEMM.

Winograd's 16 products of a conv, and a 1x1 conv's one product per image, are independent
GEMMs. np.matmul runs them one after another and splits each across OpenBLAS's threads, and a
small GEMM split in two spends much of its time packing its operands and waiting for its other
half: Winograd's (64, 64) @ (64, 3362) planes ran at 190 GFLOP/s on two cores, 1.45x their
speed on one. OpenBLAS's ``cblas_?gemm_batch`` (OpenBLAS 0.3.30 and later) instead hands whole
GEMMs to its threads, as many at once as it has threads (its driver/level3/gemm_batch_thread.c):
the same planes ran at 223 GFLOP/s, 128 channels at 272 instead of 208, 256 channels at 294
instead of 249, and a 1x1 conv's two images 0-13% faster (docs/design_notes.md). Products of
M*N*K at most 100^3 are left to np.matmul (below).

``matmul_each`` calls it where NumPy's BLAS is an OpenBLAS that has it and the operands lie as
BLAS reads them (each matrix with unit stride along its rows or along its columns), and
np.matmul, one product at a time, otherwise: the same products, rounded alike
(tests/test_backends.py).
"""

import ctypes
import functools
import os

import numpy as np

from .blas import loaded_openblas

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112          # cblas.h's CBLAS_ORDER and CBLAS_TRANSPOSE
# OpenBLAS sends a product of M*N*K <= 100^3 to its small-matrix kernels, and before its fix
# (OpenMathLib/OpenBLAS pull request 5980) the batched call crashed there in every DYNAMIC_ARCH
# build, NumPy's wheels among them: smaller products go to np.matmul.
SMALL_PRODUCT = 100 ** 3
PREFIXES, SUFFIXES = ("", "scipy_"), ("", "64_", "_64")   # plain builds, and NumPy's and SciPy's wheels
BLAS_LETTER = {np.float32: "s", np.float64: "d"}


def numpy_openblas():
    """The path of the OpenBLAS that NumPy calls, or None: the one in NumPy's wheel (numpy.libs,
    beside the package), else the only OpenBLAS loaded; with several and none NumPy's own, None."""
    paths = loaded_openblas()
    wheel = os.path.dirname(os.path.dirname(np.__file__)) + os.sep + "numpy.libs" + os.sep
    own = [path for path in paths if path.startswith(wheel)]
    if own:
        return own[0]
    return paths[0] if len(paths) == 1 else None


def _symbol(library, name):
    return next((getattr(library, f"{prefix}{name}{suffix}") for prefix in PREFIXES for suffix in SUFFIXES
                 if hasattr(library, f"{prefix}{name}{suffix}")), None)


@functools.cache
def batched_gemm(dtype):
    """(cblas_?gemm_batch, BLAS's integer dtype, openblas_get_num_threads) of NumPy's OpenBLAS
    for float32 or float64, or None."""
    path = numpy_openblas()
    if path is None or dtype not in (np.float32, np.float64):
        return None
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    gemm, config, threads = (_symbol(library, name) for name in (
        f"cblas_{BLAS_LETTER[dtype]}gemm_batch", "openblas_get_config", "openblas_get_num_threads"))
    if gemm is None or config is None or threads is None:
        return None
    config.restype = ctypes.c_char_p
    return gemm, (np.int64 if b"USE64BITINT" in config() else np.int32), threads


def _as_blas(matrix):
    """(transpose flag, leading dimension) for a 2-D operand that BLAS reads where it lies: unit
    stride along its rows (as it is) or along its columns (a transposed view); else None."""
    rows, cols = matrix.shape
    step, (row_stride, col_stride) = matrix.itemsize, matrix.strides
    if col_stride == step and row_stride % step == 0 and row_stride >= cols * step:
        return NO_TRANS, row_stride // step
    if row_stride == step and col_stride % step == 0 and col_stride >= rows * step:
        return TRANS, col_stride // step
    return None


def _layouts(a, b, out):
    """[(a[i]'s layout, b[i]'s)] where one batched call can compute every product, and should,
    else None. It should where the products keep every thread busy: OpenBLAS runs them in
    rounds of as many as it has threads and never splits one, so one image's 1x1 conv (batch 1,
    as in the paper's evaluation) would run on one core (that eval took 1.52 s instead of 1.21)."""
    dtype, count = out[0].dtype, len(out)
    blas = batched_gemm(dtype.type)
    if blas is None:
        return None
    threads = blas[2]()
    if count % threads and count < 4 * threads:     # a last round that would leave threads idle
        return None
    layouts = []
    for x, y, z in zip(a, b, out):
        pair = (_as_blas(x), _as_blas(y))
        if (None in pair or x.dtype != dtype or y.dtype != dtype or z.dtype != dtype
                or x.shape[0] * x.shape[1] * z.shape[1] <= SMALL_PRODUCT
                or z.strides[1] != z.itemsize or z.strides[0] < z.shape[1] * z.itemsize):
            return None
        layouts.append(pair)
    return layouts


def matmul_each(a, b, out):
    """out[i] = a[i] @ b[i] for sequences of 2-D arrays of one float dtype (lists, or the
    matrices of 3-D arrays), out's matrices row by row and not overlapping; an operand may
    repeat one matrix or be a transposed view. Returns out."""
    layouts = _layouts(a, b, out) if len(out) else None
    if layouts is None:
        for x, y, z in zip(a, b, out):
            np.matmul(x, y, out=z)
        return out
    gemm, integer, _ = batched_gemm(out[0].dtype.type)
    count = len(out)
    # cblas_?gemm_batch's arguments: an array per argument of cblas_?gemm, one entry per product,
    # each product a group of its own (group_size 1), so that the products may differ in shape.
    arguments = [np.full(1, ROW_MAJOR, np.intc),
                 np.array([trans for (trans, _), _ in layouts], np.intc),
                 np.array([trans for _, (trans, _) in layouts], np.intc),
                 np.array([z.shape[0] for z in out], integer), np.array([z.shape[1] for z in out], integer),
                 np.array([x.shape[1] for x in a], integer), np.ones(count, out[0].dtype),
                 np.array([x.ctypes.data for x in a], np.uintp), np.array([ld for (_, ld), _ in layouts], integer),
                 np.array([y.ctypes.data for y in b], np.uintp), np.array([ld for _, (_, ld) in layouts], integer),
                 np.zeros(count, out[0].dtype),
                 np.array([z.ctypes.data for z in out], np.uintp),
                 np.array([z.strides[0] // z.itemsize for z in out], integer),
                 np.full(1, count, integer), np.ones(count, integer)]
    order, *arrays, group_count, group_size = arguments
    gemm(ctypes.c_int(int(order[0])), *(ctypes.c_void_p(array.ctypes.data) for array in arrays),
         np.ctypeslib.as_ctypes_type(integer)(int(group_count[0])), ctypes.c_void_p(group_size.ctypes.data))
    return out
