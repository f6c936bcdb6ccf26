"""The numba.cuda GPU backend, one concern per module:

    launch.py       launch policy and the launch/copy counters
    memory.py       the caching device allocator (numba's EMM plugin interface)
    layout.py       stride and view arithmetic, plain Python
    elementwise.py  map, zip, where, fill, gather/scatter, take/put-add kernels
    reduce.py       row reductions (a thread or a block per row)
    gemm.py         the tiled GEMM over strided operands
    conv.py         im2col/col2im and conv2d as GEMMs that read in place
    index.py        32-bit index arithmetic for the kernels
    batch_norm.py   batch norm's kernels: statistics, normalisation with residual and ReLU, backward
    fused.py        softmax cross-entropy and SGD kernels
    backend.py      CudaBackend, the primitive set on device arrays
    graph.py        a training step captured as a CUDA graph and replayed (anp.cuda.graph)
"""

from .backend import CudaBackend

__all__ = ["CudaBackend"]
