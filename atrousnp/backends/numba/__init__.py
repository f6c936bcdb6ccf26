"""The Numba CPU backend, one concern per module:

    backend.py      NumbaBackend: the NumPy backend with the hot primitives replaced by kernels
    kernels.py      the parallel kernels (@parallel_kernel): im2col, col2im, batch norm, loss, SGD
    conv_paths.py   how a conv is computed: pointwise, tap by tap, Winograd, in blocks, or im2col + GEMM
    winograd.py     Winograd's F(2x2, 3x3) for ResNet's 3x3 convs, dilated ones by their phases
    gemm_batch.py   independent GEMMs (Winograd's 16, a 1x1 conv's per image) a whole GEMM per core
    memory.py       keeping freed memory in malloc's heap for the next step's arrays
    threads.py      which threads run the kernels' parallel loops (OpenMP, sleeping when idle), and forks
    blas.py         let_blas_threads_sleep: OpenBLAS's threads asleep after each GEMM, for large maps

To step through a kernel as plain Python, run with NUMBA_DISABLE_JIT=1.
"""

from .backend import NumbaBackend
from .blas import let_blas_threads_sleep

__all__ = ["NumbaBackend", "let_blas_threads_sleep"]
