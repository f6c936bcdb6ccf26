"""CudaBackend: the primitive set on numba device arrays, always C-contiguous.

Every layout change is a gather or scatter kernel over strides worked out on the host
(``layout.py``); no data leaves the device between ``atrousnp.tensor(...)`` and ``.numpy()``.
Advanced indexing (index arrays, boolean masks) is the exception, a take and an atomic put-add
at positions that NumPy works out on the host from the index arrays; the library's own ops
never use it. Memory comes from a caching pool (``memory.py``), and the counters of
``launch.py`` record every launch and copy. Without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` runs all
of it in numba's CUDA simulator (slowly: for tests on small shapes).
"""

import numba
import numpy as np
from numba import cuda

from ..primitives import Backend
from . import conv, elementwise, index, launch as launching, layout, memory
from .layout import flat
from .batch_norm import BatchNormPrimitives
from .fused import FusedPrimitives
from .gemm import Operand, contiguous, gemm
from .launch import COUNTERS, SIMULATED, launch
from .reduce import reduce_rows

if SIMULATED:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray



class CudaBackend(BatchNormPrimitives, FusedPrimitives, Backend):
    name = "cuda"

    def __init__(self):
        if not SIMULATED and numba.config.CUDA_MEMORY_MANAGER == "default":
            cuda.set_memory_manager(memory.caching_memory_manager(memory.CachingPool))
        if not cuda.is_available():
            raise RuntimeError("the cuda backend needs an NVIDIA GPU with its driver and numba-cuda "
                               "(pip install -e .[cuda12] or .[cuda13]); without a GPU, set NUMBA_ENABLE_CUDASIM=1 "
                               "before importing atrousnp to run it in numba's CUDA simulator")
        self._unary, self._binary, self._empty_of = {}, {}, {}
        self._simulated_pool = memory.simulated_pool() if SIMULATED else None

    # -- memory and counters ----------------------------------------------------------------
    @property
    def pool(self):
        """The caching pool that device memory comes from (see ``memory.py``)."""
        if self._simulated_pool is not None:
            return self._simulated_pool
        pool = getattr(cuda.current_context().memory_manager, "pool", None)
        if pool is None:
            raise RuntimeError("atrousnp's caching allocator is not active: a CUDA context existed before "
                               "set_backend('cuda'), or NUMBA_CUDA_MEMORY_MANAGER names another allocator")
        return pool

    @property
    def counters(self):
        return COUNTERS

    def _or_none(self, a, dtype):
        """``a``, or an empty device array of ``dtype`` standing for a missing optional one."""
        if a is not None:
            return a
        if dtype not in self._empty_of:
            self._empty_of[dtype] = self.empty((0,), dtype)
        return self._empty_of[dtype]

    # -- creation and transfer -------------------------------------------------------------
    def empty(self, shape, dtype):
        shape = tuple(int(s) for s in shape)
        if int(np.prod(shape, dtype=np.int64)) >= index.MAX_ELEMENTS:
            raise ValueError(f"cuda: an array of shape {shape} has 2**32 elements or more; the kernels index in 32 "
                             "bits (backends/cuda/index.py)")
        if self._simulated_pool is not None:
            return FakeCUDAArray(memory.simulated_array(self._simulated_pool, shape, dtype))
        return cuda.device_array(shape, np.dtype(dtype))

    def full(self, shape, value, dtype):
        out = self.empty(shape, dtype)
        launch(elementwise.fill_kernel, out.size)(flat(out), np.dtype(dtype).type(value))
        return out

    def zeros(self, shape, dtype):
        return self.full(shape, 0, dtype)

    def asarray(self, host_array, dtype=None):
        if self.owns(host_array):
            return host_array if dtype is None else self.astype(host_array, dtype)
        if launching.CAPTURE is not None:       # a step being captured: only its inputs may come in
            return launching.CAPTURE.input_buffer(host_array, dtype)
        host = np.ascontiguousarray(np.asarray(host_array, dtype=dtype))
        out = self.empty(host.shape, host.dtype)
        if host.size:
            out.copy_to_device(host)
            COUNTERS.host_to_device += 1
        return out

    def copy_from_host(self, target, host_array):
        if launching.CAPTURE is not None:       # a replay would not repeat it
            launching.CAPTURE.refuse_copy(target)
        host = np.ascontiguousarray(np.broadcast_to(np.asarray(host_array, target.dtype), target.shape))
        if host.size:
            flat(target).copy_to_device(host.reshape(-1))
            COUNTERS.host_to_device += 1

    def to_host(self, a):
        if launching.CAPTURE is not None:
            launching.CAPTURE.refuse_read_back(a)
        COUNTERS.device_to_host += 1
        return a.copy_to_host()

    def owns(self, a):
        return hasattr(a, "copy_to_host") and not isinstance(a, np.ndarray)

    def astype(self, a, dtype):
        if np.dtype(dtype) == a.dtype:
            return a
        return self._map_into("identity", a, np.dtype(dtype))

    # -- elementwise ----------------------------------------------------------------------
    def map(self, op, a):
        return self._map_into(op, a, a.dtype)

    def _map_into(self, op, a, dtype):
        if op not in self._unary:
            self._unary[op] = elementwise.unary_kernel(elementwise.UNARY[op])
        out = self.empty(a.shape, dtype)
        launch(self._unary[op], a.size)(flat(a), flat(out))
        return out

    def zip(self, op, a, b):
        if op not in self._binary:
            self._binary[op] = elementwise.binary_kernel(elementwise.BINARY[op])
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        dtype = np.bool_ if op in elementwise.COMPARISONS else np.result_type(a.dtype, b.dtype)
        out = self.empty(shape, dtype)
        kernel_shape = shape or (1,)
        launch(self._binary[op], out.size)(
            flat(a), layout.broadcast_strides(a.shape, kernel_shape),
            flat(b), layout.broadcast_strides(b.shape, kernel_shape), flat(out), kernel_shape)
        return out

    def where(self, cond, a, b):
        out = self.empty(np.broadcast_shapes(cond.shape, a.shape, b.shape), np.result_type(a.dtype, b.dtype))
        shape = tuple(out.shape) or (1,)
        launch(elementwise.where_kernel, out.size)(
            flat(cond), layout.broadcast_strides(cond.shape, shape), flat(a),
            layout.broadcast_strides(a.shape, shape), flat(b), layout.broadcast_strides(b.shape, shape),
            flat(out), shape)
        return out

    # -- reduction ------------------------------------------------------------------------
    def reduce(self, op, a, axes, keepdims):
        kept = [k for k in range(a.ndim) if k not in axes]
        rows = int(np.prod([a.shape[k] for k in kept], dtype=np.int64))
        cols = int(np.prod([a.shape[k] for k in axes], dtype=np.int64))
        moved = self.transpose(a, tuple(kept) + tuple(axes))  # the reduced axes last: one row each
        dtype = np.int64 if op == "argmax" else a.dtype
        out = self.empty((max(rows, 1),), dtype)
        by_block = not SIMULATED and op != "argmax" and cols > rows > 0 and a.dtype.kind == "f"
        if a.size:
            reduce_rows(op, flat(moved), cols, out, by_block, self.empty)
        else:  # no values: a sum over an empty axis is 0, and an empty result needs no work
            out = self.zeros((rows,), dtype)
        shape = tuple(1 if k in axes else a.shape[k] for k in range(a.ndim)) if keepdims else \
            tuple(a.shape[k] for k in kept)
        return out.reshape(shape) if shape else out.reshape(())

    # -- linear algebra and layout ------------------------------------------------------
    def matmul(self, a, b):
        """Batched matmul; a batch broadcast that one stride can express (a matrix shared by
        every batch entry) is read in place, any other is gathered first."""
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
        n, k, m = a_shape[-2], a_shape[-1], b_shape[-1]
        z = int(np.prod(batch, dtype=np.int64))
        out = self.empty((z, n, m), np.result_type(a.dtype, b.dtype))
        if k == 0:                                  # a sum over nothing
            out = self.zeros((z, n, m), out.dtype)
        elif out.size:
            operands = []
            for x, shape in ((a, a_shape), (b, b_shape)):
                stride = layout.batch_stride(shape, batch)
                if stride is None:
                    x, stride = self.broadcast_to(x, batch + shape[-2:]), shape[-2] * shape[-1]
                operands.append(Operand(flat(x), 0, stride, shape[-1], 1))
            gemm(*operands, contiguous(out), n, k, m, z, self.empty)
        return out.reshape(batch + (n, m))

    def reshape(self, a, shape):
        shape = tuple(shape)
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
            shape = tuple(a.size // known if s == -1 else s for s in shape)
        return a.reshape(shape) if shape else a.reshape(())

    def _gather(self, a, offset, shape, strides):
        out = self.empty(shape, a.dtype)
        launch(elementwise.gather_kernel, out.size)(flat(a), offset, tuple(strides) or (0,), flat(out),
                                                    tuple(shape) or (1,))
        return out

    def transpose(self, a, axes):
        if tuple(axes) == tuple(range(a.ndim)):
            return a
        strides = layout.contiguous_strides(a.shape)
        return self._gather(a, 0, tuple(a.shape[k] for k in axes), tuple(strides[k] for k in axes))

    def broadcast_to(self, a, shape):
        shape = tuple(shape)
        if tuple(a.shape) == shape:
            return a
        return self._gather(a, 0, shape, layout.broadcast_strides(a.shape, shape))

    def contiguous(self, a):
        return a  # device arrays here are always C-contiguous

    def _positions(self, shape, index):
        parts = index if isinstance(index, tuple) else (index,)
        parts = tuple(self.to_host(p) if self.owns(p) else p for p in parts)
        return self.asarray(layout.advanced_positions(shape, parts))

    def getitem(self, a, index):
        if layout.is_basic(index):
            offset, shape, strides = layout.basic_view(tuple(a.shape), index)
            return self._gather(a, offset, shape, strides)
        positions = self._positions(tuple(a.shape), index)
        out = self.empty(positions.shape, a.dtype)
        launch(elementwise.take_kernel, out.size)(flat(a), flat(positions), flat(out))
        return out

    def _scatter(self, src, out, offset, strides):
        launch(elementwise.scatter_kernel, src.size)(flat(src), flat(out), offset, tuple(strides) or (0,),
                                                     tuple(src.shape) or (1,))
        return out

    def index_add(self, shape, index, values):
        out = self.zeros(shape, values.dtype)
        if layout.is_basic(index):
            offset, view_shape, strides = layout.basic_view(tuple(shape), index)
            # A basic view never repeats an element, so scattering into zeros is adding.
            return self._scatter(self.broadcast_to(values, view_shape), out, offset, strides)
        positions = self._positions(tuple(shape), index)
        values = self.broadcast_to(values, tuple(positions.shape))
        launch(elementwise.put_add_kernel, values.size)(flat(values), flat(positions), flat(out))
        return out

    def pad(self, a, widths, value):
        shape = tuple(size + before + after for size, (before, after) in zip(a.shape, widths))
        strides = layout.contiguous_strides(shape)
        offset = sum(before * s for (before, _), s in zip(widths, strides))
        return self._scatter(a, self.full(shape, value, a.dtype), offset, strides)

    def concat(self, arrays, axis):
        shape = list(arrays[0].shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        out = self.empty(tuple(shape), np.result_type(*[a.dtype for a in arrays]))
        strides, start = layout.contiguous_strides(shape), 0
        for a in arrays:
            self._scatter(a, out, start * strides[axis], strides)
            start += a.shape[axis]
        return out

    # -- convolution ------------------------------------------------------------------------
    def im2col(self, x, kernel, stride, padding, dilation):
        return conv.im2col(self, x, kernel, stride, padding, dilation)

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        return conv.col2im(self, cols, x_shape, kernel, stride, padding, dilation)

    def conv2d_forward(self, x, weight, stride, padding, dilation, groups):
        return conv.conv2d_forward(self, x, weight, stride, padding, dilation, groups)

    def conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight):
        return conv.conv2d_backward(self, grad, x, weight, stride, padding, dilation, groups, needs_dx, needs_dweight)

