"""Independent GEMMs side by side, a whole GEMM per core: OpenBLAS's batched GEMM.

Winograd's 16 products of a conv, and a 1x1 conv's one product per image, are independent
GEMMs. np.matmul runs them one after another and splits each across OpenBLAS's threads, and a
small GEMM split in two spends much of its time packing its operands and waiting for its other
half: Winograd's (64, 64) @ (64, 3362) planes ran at 190 GFLOP/s on two cores, 1.45x their
speed on one. OpenBLAS's ``cblas_?gemm_batch`` (OpenBLAS 0.3.28 and later) instead hands whole
GEMMs to its threads, as many at once as it has threads (its driver/level3/gemm_batch_thread.c):
the same planes ran at 223 GFLOP/s, 128 channels at 272 instead of 208, 256 channels at 294
instead of 249, and a 1x1 conv's two images in 0-12% less time (docs/design_notes.md).

``matmul_each`` calls it where NumPy's BLAS is an OpenBLAS that has it, the operands lie as
BLAS reads them (each matrix with unit stride along its rows or along its columns) and the
products are alike and neither too small nor too few (``_layout``); otherwise np.matmul, one product at
a time. Both compute the same products, up to the order of their sums' rounding
(tests/test_backends.py, tests/test_conv.py).
"""

import collections
import ctypes
import functools
import os

import numpy as np

from .blas import loaded_openblas, openblas_functions

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112          # cblas.h's CBLAS_ORDER and CBLAS_TRANSPOSE
# OpenBLAS sends a product of M*N*K <= 100^3 to its small-matrix kernels, and before its fix
# (OpenMathLib/OpenBLAS pull request 5980) the batched call crashed there in every DYNAMIC_ARCH
# build, NumPy's wheels among them: smaller products go to np.matmul.
SMALL_PRODUCT = 100 ** 3
BLAS_LETTER = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}

BatchedGemm = collections.namedtuple("BatchedGemm", "gemm integer threads")


def numpy_openblas():
    """The path of the OpenBLAS that NumPy calls, or None: where NumPy was built with OpenBLAS,
    the one in NumPy's wheel (numpy.libs, beside the package), else the only OpenBLAS loaded."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except (TypeError, KeyError):              # NumPy before 1.26 has no such report
        return None
    if "openblas" not in blas.lower():
        return None
    paths = loaded_openblas()
    wheel = os.path.join(os.path.realpath(os.path.dirname(os.path.dirname(np.__file__))), "numpy.libs", "")
    own = [path for path in paths if os.path.realpath(path).startswith(wheel)]
    if own:
        return own[0]
    return paths[0] if len(paths) == 1 else None


@functools.cache
def batched_gemm(dtype):
    """BatchedGemm(cblas_?gemm_batch, BLAS's integer dtype, openblas_get_num_threads) of NumPy's
    OpenBLAS for a float32 or float64 dtype in native byte order, or None."""
    dtype, path = np.dtype(dtype), numpy_openblas()
    if path is None or dtype not in BLAS_LETTER:
        return None
    try:
        library = ctypes.CDLL(path)
    except OSError:
        return None
    functions = openblas_functions(library, (f"cblas_{BLAS_LETTER[dtype]}gemm_batch", "openblas_get_config",
                                     "openblas_get_num_threads"))
    if functions is None:
        return None
    gemm, config, threads = functions
    config.restype = ctypes.c_char_p
    return BatchedGemm(gemm, np.int64 if b"USE64BITINT" in config() else np.int32, threads)


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


def _layout(a, b, out):
    """(a[0]'s layout, b[0]'s), shared by every product, where one batched call can compute them
    all and should; else None, and np.matmul computes them (and raises for shapes that do not fit).

    Can: the products are alike (one shape, one layout per operand), as a conv's are, so the call
    is one group of them. Should: they keep OpenBLAS's threads busy. It runs them in rounds of as
    many as it has threads and never splits one, so one image's 1x1 conv (batch 1, as in the
    paper's evaluation) would run on one core (that eval took 1.52 s instead of 1.21). A count
    that is a multiple of the threads fills every round; from four rounds on, an idle part of the
    last costs less than splitting every product would."""
    count = len(out)
    if not len(a) == len(b) == count > 0:
        return None
    x, y, z = a[0], b[0], out[0]
    blas = batched_gemm(z.dtype)
    if blas is None or count % blas.threads() and count < 4 * blas.threads():
        return None
    layout = _as_blas(x), _as_blas(y)
    if (None in layout or not x.dtype == y.dtype == z.dtype
            or x.shape[1] != y.shape[0] or z.shape != (x.shape[0], y.shape[1])
            or x.shape[0] * x.shape[1] * z.shape[1] <= SMALL_PRODUCT
            or z.strides[1] != z.itemsize or z.strides[0] % z.itemsize or z.strides[0] < z.shape[1] * z.itemsize
            or max(x.shape + y.shape + (layout[0][1], layout[1][1], z.strides[0] // z.itemsize))
            > np.iinfo(blas.integer).max):
        return None
    return layout if all(_alike(matrices, first) for matrices, first in ((a, x), (b, y), (out, z))) else None


def _alike(matrices, first):
    """Whether every matrix has first's shape, strides and dtype and is aligned: at once for the
    matrices of a 3-D array of first's dtype, which share them; one by one for a list, but for a
    repeated matrix."""
    if isinstance(matrices, np.ndarray):
        return matrices.ndim == 3 and matrices.dtype == first.dtype and matrices.flags.aligned
    return all(matrix is first or (matrix.shape, matrix.strides, matrix.dtype) == (first.shape, first.strides, first.dtype)
               and matrix.flags.aligned for matrix in matrices) and first.flags.aligned


def _addresses(matrices):
    """Where each matrix starts in memory: for an array's matrices by its stride, with no object
    made per matrix."""
    if isinstance(matrices, np.ndarray):
        return (matrices.ctypes.data + matrices.strides[0] * np.arange(len(matrices), dtype=np.int64)).astype(np.uintp)
    return np.array([matrix.ctypes.data for matrix in matrices], np.uintp)


def matmul_each(a, b, out):
    """out[i] = a[i] @ b[i] for sequences of 2-D arrays of one float dtype (lists, or the
    matrices of 3-D arrays), out's matrices row by row and not overlapping; an operand may
    repeat one matrix or be a transposed view. Returns out."""
    layout = _layout(a, b, out)
    if layout is None:
        for x, y, z in zip(a, b, out, strict=True):
            np.matmul(x, y, out=z)
        return out
    gemm, integer, _ = batched_gemm(out[0].dtype)
    (trans_a, lda), (trans_b, ldb) = layout
    rows, depth, cols = a[0].shape + out[0].shape[1:]
    # cblas_?gemm_batch takes an array for each argument of cblas_?gemm, one entry per group of
    # alike products, and each group's matrices as arrays of addresses: here one group of them all.
    arrays = [np.array([trans_a], np.intc), np.array([trans_b], np.intc),
              np.array([rows], integer), np.array([cols], integer), np.array([depth], integer),
              np.ones(1, out[0].dtype), _addresses(a), np.array([lda], integer), _addresses(b), np.array([ldb], integer),
              np.zeros(1, out[0].dtype), _addresses(out), np.array([out[0].strides[0] // out[0].itemsize], integer),
              np.array([len(out)], integer)]
    *arguments, group_size = (ctypes.c_void_p(array.ctypes.data) for array in arrays)
    gemm(ctypes.c_int(ROW_MAJOR), *arguments, np.ctypeslib.as_ctypes_type(integer)(1), group_size)
    return out
