"""numba.cuda GPU backend: every primitive as a kernel on device arrays.

Arrays are numba device arrays, always C-contiguous. Every layout change — transpose,
broadcast, basic indexing, padding, concatenation — is one of two kernels over strided
index arithmetic:

    gather:   out[i]                                  = src[offset + sum_k coord_k(i) * strides_k]
    scatter:  out[offset + sum_k coord_k(i) * strides_k] = src[i]      (distinct targets)

with only the strides and offsets worked out on the host, from shapes; no data leaves the
device between ``atrousnp.tensor(...)`` and ``.numpy()``. Advanced indexing (index arrays,
boolean masks) is the exception, a take and an atomic put-add at positions that NumPy works
out on the host from the index arrays; the library's own ops never use it. Elementwise kernels are compiled
once per op from device functions. Without a GPU, ``NUMBA_ENABLE_CUDASIM=1`` runs all of it
in numba's CUDA simulator (slowly: for tests on small shapes).
"""

import functools
import math

import numba
import numpy as np
from numba import cuda

from .base import Backend, conv_out_hw

# Every one-dimensional kernel loops over its items with a grid-stride loop,
#     for i in range(cuda.grid(1), n, cuda.gridsize(1)),
# so any launch covers them all. On a GPU each thread gets one item. The simulator runs each GPU
# thread as a Python thread, and starting one costs some 70 loop turns: there a kernel gets one
# block of a few threads that loop. Barriers cost it most, so it also gets the barrier-free GEMM
# (one thread per output entry) and thread-per-row reductions; the tests still run the tiled GEMM
# and the block reduction directly, on small shapes. The results are the same.
SIMULATED = bool(numba.config.ENABLE_CUDASIM)
THREADS = 4 if SIMULATED else 128


def _launch(kernel, n):
    """``kernel`` configured to cover ``n`` items: one thread each on a GPU, one block in the simulator."""
    threads = max(1, min(THREADS, n))
    blocks = 1 if SIMULATED else (n + threads - 1) // threads
    return kernel[blocks, threads]


# -- elementwise device functions --------------------------------------------------------

@cuda.jit(device=True)
def _relu(a):
    return a if a > 0 else a * 0


@cuda.jit(device=True)
def _step(a):
    return 1 if a > 0 else 0


@cuda.jit(device=True)
def _sigmoid(a):
    return 0.5 * (1 + math.tanh(0.5 * a))  # never overflows, unlike 1 / (1 + exp(-a))


UNARY = {
    "neg": cuda.jit(device=True)(lambda a: -a),
    "exp": cuda.jit(device=True)(lambda a: math.exp(a)),
    "log": cuda.jit(device=True)(lambda a: math.log(a)),
    "sqrt": cuda.jit(device=True)(lambda a: math.sqrt(a)),
    "tanh": cuda.jit(device=True)(lambda a: math.tanh(a)),
    "abs": cuda.jit(device=True)(lambda a: abs(a)),
    "identity": cuda.jit(device=True)(lambda a: a),
    "sigmoid": _sigmoid, "relu": _relu, "step": _step,
}
BINARY = {
    "add": cuda.jit(device=True)(lambda a, b: a + b),
    "sub": cuda.jit(device=True)(lambda a, b: a - b),
    "mul": cuda.jit(device=True)(lambda a, b: a * b),
    "div": cuda.jit(device=True)(lambda a, b: a / b),
    "pow": cuda.jit(device=True)(lambda a, b: a ** b),
    "maximum": cuda.jit(device=True)(lambda a, b: max(a, b)),
    "minimum": cuda.jit(device=True)(lambda a, b: min(a, b)),
    "eq": cuda.jit(device=True)(lambda a, b: a == b),
    "gt": cuda.jit(device=True)(lambda a, b: a > b),
    "ge": cuda.jit(device=True)(lambda a, b: a >= b),
    "lt": cuda.jit(device=True)(lambda a, b: a < b),
    "le": cuda.jit(device=True)(lambda a, b: a <= b),
}
COMPARISONS = ("eq", "gt", "ge", "lt", "le")


@cuda.jit(device=True)
def _offset(i, shape, strides):
    """The source offset of flat output index i, for an output of ``shape`` read through ``strides``."""
    offset = 0
    for k in range(len(shape) - 1, -1, -1):
        offset += (i % shape[k]) * strides[k]
        i //= shape[k]
    return offset


def _unary_kernel(fn):
    @cuda.jit
    def kernel(a, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(a[i])
    return kernel


def _binary_kernel(fn):
    @cuda.jit
    def kernel(a, a_strides, b, b_strides, out, shape):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(a[_offset(i, shape, a_strides)], b[_offset(i, shape, b_strides)])
    return kernel


@cuda.jit
def _where_kernel(cond, c_strides, a, a_strides, b, b_strides, out, shape):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        take_a = cond[_offset(i, shape, c_strides)]
        out[i] = a[_offset(i, shape, a_strides)] if take_a else b[_offset(i, shape, b_strides)]


@cuda.jit
def _fill_kernel(out, value):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


@cuda.jit
def _gather_kernel(src, offset, strides, out, shape):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = src[offset + _offset(i, shape, strides)]


@cuda.jit
def _scatter_kernel(src, out, offset, strides, shape):
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        out[offset + _offset(i, shape, strides)] = src[i]


@cuda.jit
def _take_kernel(src, positions, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = src[positions[i]]


@cuda.jit
def _put_add_kernel(src, positions, out):
    """out[positions[i]] += src[i]; atomic, because a position may repeat."""
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        cuda.atomic.add(out, positions[i], src[i])


@cuda.jit
def _reduce_rows_kernel(a, cols, op, out):
    """Row r of the (rows, cols) matrix a (flat) -> out[r]: op 0 sum, 1 max, 2 argmax."""
    for r in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        if op == 0:
            total = 0.0
            for c in range(cols):
                total += a[r * cols + c]
            out[r] = total
        else:
            best, where = a[r * cols], 0
            for c in range(1, cols):
                if a[r * cols + c] > best:
                    best, where = a[r * cols + c], c
            out[r] = best if op == 1 else where


@cuda.jit(device=True)
def _block_reduce(partial, value, op):
    """The sum (op 0) or max (op 1) of every thread's ``value`` in this block, returned to all.

    Tree reduction in the shared array ``partial`` (one slot per thread, a power of two long):
    each round, the first half of the live slots absorbs the second half."""
    t = cuda.threadIdx.x
    partial[t] = value
    step = cuda.blockDim.x // 2
    while step > 0:
        cuda.syncthreads()
        if t < step:
            partial[t] = partial[t] + partial[t + step] if op == 0 else max(partial[t], partial[t + step])
        step //= 2
    cuda.syncthreads()
    result = partial[0]
    cuda.syncthreads()  # every thread has read it before the block writes partial again
    return result


@functools.cache
def _reduce_wide_rows_kernel(dtype):
    """Like _reduce_rows_kernel for sum and max, but one block per row: each thread folds every
    THREADS-th entry of the row, and the block combines the threads' results. For a few long rows
    (a bias gradient, a loss mean), where one thread per row would leave the GPU idle."""
    @cuda.jit
    def kernel(a, cols, op, out):
        partial = cuda.shared.array(THREADS, dtype)
        for r in range(cuda.blockIdx.x, out.size, cuda.gridDim.x):
            folded = a[r * cols] * 0 if op == 0 else a[r * cols]
            for c in range(cuda.threadIdx.x, cols, cuda.blockDim.x):
                value = a[r * cols + c]
                folded = folded + value if op == 0 else max(folded, value)
            result = _block_reduce(partial, folded, op)
            if cuda.threadIdx.x == 0:
                out[r] = result
    return kernel


# Tiled GEMM: a block of 16x16 threads computes a 64x64 tile of out; each thread keeps a 4x4
# block of sums in registers (rows ty + 16i, columns tx + 16j, so that neighbouring threads read
# neighbouring shared-memory words), and the block stages 64x16 of a and 16x64 of b in shared
# memory per step along k.
BLOCK, STEP, PER_THREAD, SIDE = 64, 16, 4, 16


@functools.cache
def _tiled_gemm_kernel(dtype):
    @cuda.jit
    def kernel(a, b, out):
        a_tile = cuda.shared.array((BLOCK, STEP), dtype)
        b_tile = cuda.shared.array((STEP, BLOCK), dtype)
        sums = cuda.local.array((PER_THREAD, PER_THREAD), dtype)
        z, ty, tx = cuda.blockIdx.z, cuda.threadIdx.y, cuda.threadIdx.x
        thread = ty * SIDE + tx
        row0, col0 = cuda.blockIdx.y * BLOCK, cuda.blockIdx.x * BLOCK
        n, k, m = a.shape[1], a.shape[2], b.shape[2]
        for i in range(PER_THREAD):
            for j in range(PER_THREAD):
                sums[i, j] = 0
        for start in range(0, k, STEP):
            for e in range(thread, BLOCK * STEP, SIDE * SIDE):      # each thread loads 4 of a's tile
                r, c = e // STEP, e % STEP
                inside = row0 + r < n and start + c < k
                a_tile[r, c] = a[z, row0 + r, start + c] if inside else 0
            for e in range(thread, STEP * BLOCK, SIDE * SIDE):      # and 4 of b's
                r, c = e // BLOCK, e % BLOCK
                inside = start + r < k and col0 + c < m
                b_tile[r, c] = b[z, start + r, col0 + c] if inside else 0
            cuda.syncthreads()
            for s in range(STEP):
                for i in range(PER_THREAD):
                    a_value = a_tile[ty + SIDE * i, s]
                    for j in range(PER_THREAD):
                        sums[i, j] += a_value * b_tile[s, tx + SIDE * j]
            cuda.syncthreads()
        for i in range(PER_THREAD):
            for j in range(PER_THREAD):
                r, c = row0 + ty + SIDE * i, col0 + tx + SIDE * j
                if r < n and c < m:
                    out[z, r, c] = sums[i, j]
    return kernel


@cuda.jit
def _matmul_simple_kernel(a, b, out):
    """out[z] = a[z] @ b[z]: one thread per output entry, a plain dot product."""
    n, k, m = a.shape[1], a.shape[2], b.shape[2]
    for idx in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        z, row, col = idx // (n * m), (idx // m) % n, idx % m
        total = a[z, row, 0] * 0
        for s in range(k):
            total += a[z, row, s] * b[z, s, col]
        out[z, row, col] = total


@cuda.jit
def _im2col_kernel(x, cols, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw]; one thread per entry."""
    n_img, _, h, w = x.shape
    total_cols = n_img * out_h * out_w
    for idx in range(cuda.grid(1), cols.shape[0] * total_cols, cuda.gridsize(1)):
        row, col = idx // total_cols, idx % total_cols
        c, i, j = row // (kh * kw), (row // kw) % kh, row % kw
        b, rest = col // (out_h * out_w), col % (out_h * out_w)
        y = (rest // out_w) * sh - ph + i * dh
        xx = (rest % out_w) * sw - pw + j * dw
        inside = 0 <= y < h and 0 <= xx < w
        cols[row, col] = x[b, c, y, xx] if inside else 0


@cuda.jit
def _col2im_kernel(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w):
    """x[n, c, y, xx] = sum of the cols entries copied from it: each pixel gathers, so no atomics."""
    n_img, c_in, h, w = x.shape
    for idx in range(cuda.grid(1), x.size, cuda.gridsize(1)):
        xx, y = idx % w, (idx // w) % h
        c, b = (idx // (w * h)) % c_in, idx // (w * h * c_in)
        total = cols[0, 0] * 0
        for i in range(kh):
            top = y + ph - i * dh
            if top < 0 or top % sh != 0 or top // sh >= out_h:
                continue
            for j in range(kw):
                left = xx + pw - j * dw
                if left < 0 or left % sw != 0 or left // sw >= out_w:
                    continue
                total += cols[(c * kh + i) * kw + j, (b * out_h + top // sh) * out_w + left // sw]
        x[b, c, y, xx] = total


def reduce_rows(op, a, cols, out, by_block):
    """out[r] = op (sum, max or argmax) over row r of the (rows, cols) matrix a (flat).

    ``by_block``: a block per row, for sum and max of floats, where rows are longer than their
    count; otherwise a thread per row."""
    code = ("sum", "max", "argmax").index(op)
    if by_block:
        blocks = 1 if SIMULATED else max(1, out.size)
        _reduce_wide_rows_kernel(numba.from_dtype(a.dtype))[blocks, THREADS](a, cols, code, out)
    else:
        _launch(_reduce_rows_kernel, out.size)(a, cols, code, out)


def gemm(a, b, out, tiled=True):
    """out[z] = a[z] @ b[z] on (Z, n, k) and (Z, k, m) device arrays of one float dtype."""
    z, n, m = out.shape
    if tiled:
        grid = ((m + BLOCK - 1) // BLOCK, (n + BLOCK - 1) // BLOCK, z)
        _tiled_gemm_kernel(numba.from_dtype(out.dtype))[grid, (SIDE, SIDE)](a, b, out)
    else:
        _launch(_matmul_simple_kernel, out.size)(a, b, out)


# -- strides and shapes, worked out on the host ------------------------------------------

def _contiguous_strides(shape):
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _broadcast_strides(shape, out_shape):
    """Element strides that read an array of ``shape`` as if broadcast to ``out_shape``."""
    padded = (1,) * (len(out_shape) - len(shape)) + tuple(shape)
    strides = _contiguous_strides(padded)
    return tuple(0 if size == 1 and out != 1 else s for size, s, out in zip(padded, strides, out_shape))


def _is_basic(index):
    """True when ``index`` holds only ints, slices, None and Ellipsis (no arrays)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(part is None or part is Ellipsis or isinstance(part, (int, np.integer, slice)) for part in parts)


def _positions(shape, index):
    """The flat source position of every element of ``array[index]``, for advanced indexing.

    NumPy's own indexing of the positions 0..size-1 gives them, with all of its rules
    (broadcast index arrays, boolean masks, where the new axes go). Index arrays are read on
    the host for this: a mask's result size depends on its values anyway.
    """
    parts = index if isinstance(index, tuple) else (index,)
    parts = tuple(p.copy_to_host() if hasattr(p, "copy_to_host") else p for p in parts)
    size = int(np.prod(shape, dtype=np.int64))
    return cuda.to_device(np.ascontiguousarray(np.arange(size, dtype=np.int64).reshape(shape)[parts]))


def _basic_view(shape, index):
    """(offset, shape, strides) of ``array[index]`` for basic indexing: ints, slices, None, Ellipsis."""
    parts = index if isinstance(index, tuple) else (index,)
    if Ellipsis in parts:
        at = parts.index(Ellipsis)
        used = sum(p is not None for p in parts if p is not Ellipsis)
        parts = parts[:at] + (slice(None),) * (len(shape) - used) + parts[at + 1:]
    parts = parts + (slice(None),) * (len(shape) - sum(p is not None for p in parts))
    offset, out_shape, out_strides, axis = 0, [], [], 0
    strides = _contiguous_strides(shape)
    for part in parts:
        if part is None:
            out_shape.append(1)
            out_strides.append(0)
            continue
        size, stride = shape[axis], strides[axis]
        if isinstance(part, slice):
            start, stop, step = part.indices(size)
            out_shape.append(len(range(start, stop, step)))
            out_strides.append(stride * step)
            offset += start * stride
        else:
            if not -size <= part < size:
                raise IndexError(f"index {part} is out of bounds for axis {axis} with size {size}")
            offset += (part % size) * stride
        axis += 1
    return offset, tuple(out_shape), tuple(out_strides)


def _flat(a):
    return a.reshape(max(1, a.size))


class CudaBackend(Backend):
    name = "cuda"

    def __init__(self):
        if not cuda.is_available():
            raise RuntimeError("the cuda backend needs an NVIDIA GPU with its driver and numba-cuda "
                               "(pip install -e .[cuda]); without a GPU, set NUMBA_ENABLE_CUDASIM=1 before "
                               "importing atrousnp to run it in numba's CUDA simulator")
        self._unary, self._binary = {}, {}

    # -- creation and transfer ---------------------------------------------------------
    def empty(self, shape, dtype):
        return cuda.device_array(tuple(shape), np.dtype(dtype))

    def full(self, shape, value, dtype):
        out = self.empty(shape, dtype)
        if out.size:
            _launch(_fill_kernel, out.size)(_flat(out), np.dtype(dtype).type(value))
        return out

    def zeros(self, shape, dtype):
        return self.full(shape, 0, dtype)

    def asarray(self, host_array, dtype=None):
        if self.owns(host_array):
            return host_array if dtype is None else self.astype(host_array, dtype)
        return cuda.to_device(np.ascontiguousarray(np.asarray(host_array, dtype=dtype)))

    def to_host(self, a):
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
            self._unary[op] = _unary_kernel(UNARY[op])
        out = self.empty(a.shape, dtype)
        if a.size:
            _launch(self._unary[op], a.size)(_flat(a), _flat(out))
        return out

    def zip(self, op, a, b):
        if op not in self._binary:
            self._binary[op] = _binary_kernel(BINARY[op])
        shape = tuple(np.broadcast_shapes(a.shape, b.shape))
        dtype = np.bool_ if op in COMPARISONS else np.result_type(a.dtype, b.dtype)
        out = self.empty(shape, dtype)
        if out.size:
            kernel_shape = shape or (1,)
            _launch(self._binary[op], out.size)(
                _flat(a), _broadcast_strides(a.shape, kernel_shape), _flat(b), _broadcast_strides(b.shape, kernel_shape),
                _flat(out), kernel_shape)
        return out

    def where(self, cond, a, b):
        out = self.empty(np.broadcast_shapes(cond.shape, a.shape, b.shape), np.result_type(a.dtype, b.dtype))
        shape = tuple(out.shape) or (1,)
        if out.size:
            _launch(_where_kernel, out.size)(
                _flat(cond), _broadcast_strides(cond.shape, shape), _flat(a), _broadcast_strides(a.shape, shape),
                _flat(b), _broadcast_strides(b.shape, shape), _flat(out), shape)
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
        reduce_rows(op, _flat(moved), cols, out, by_block)
        shape = tuple(1 if k in axes else a.shape[k] for k in range(a.ndim)) if keepdims else \
            tuple(a.shape[k] for k in kept)
        return out.reshape(shape) if shape else out.reshape(())

    # -- linear algebra and layout ------------------------------------------------------
    def matmul(self, a, b):
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
        batch = tuple(np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
        n, k, m = a_shape[-2], a_shape[-1], b_shape[-1]
        z = int(np.prod(batch, dtype=np.int64))
        a3 = self.broadcast_to(a, batch + (n, k)).reshape((z, n, k))
        b3 = self.broadcast_to(b, batch + (k, m)).reshape((z, k, m))
        out = self.empty((z, n, m), np.result_type(a.dtype, b.dtype))
        if out.size:
            gemm(a3, b3, out, tiled=not SIMULATED)
        return out.reshape(batch + (n, m))

    def reshape(self, a, shape):
        shape = tuple(shape)
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1], dtype=np.int64))
            shape = tuple(a.size // known if s == -1 else s for s in shape)
        return a.reshape(shape) if shape else a.reshape(())

    def _gather(self, a, offset, shape, strides):
        out = self.empty(shape, a.dtype)
        if out.size:
            _launch(_gather_kernel, out.size)(_flat(a), offset, tuple(strides) or (0,), _flat(out),
                                                       tuple(shape) or (1,))
        return out

    def transpose(self, a, axes):
        if tuple(axes) == tuple(range(a.ndim)):
            return a
        strides = _contiguous_strides(a.shape)
        return self._gather(a, 0, tuple(a.shape[k] for k in axes), tuple(strides[k] for k in axes))

    def broadcast_to(self, a, shape):
        shape = tuple(shape)
        if tuple(a.shape) == shape:
            return a
        return self._gather(a, 0, shape, _broadcast_strides(a.shape, shape))

    def contiguous(self, a):
        return a  # device arrays here are always C-contiguous

    def getitem(self, a, index):
        if _is_basic(index):
            offset, shape, strides = _basic_view(tuple(a.shape), index)
            return self._gather(a, offset, shape, strides)
        positions = _positions(tuple(a.shape), index)
        out = self.empty(positions.shape, a.dtype)
        if out.size:
            _launch(_take_kernel, out.size)(_flat(a), _flat(positions), _flat(out))
        return out

    def _scatter(self, src, out, offset, strides):
        if src.size:
            _launch(_scatter_kernel, src.size)(_flat(src), _flat(out), offset, tuple(strides) or (0,),
                                               tuple(src.shape) or (1,))
        return out

    def index_add(self, shape, index, values):
        out = self.zeros(shape, values.dtype)
        if _is_basic(index):
            offset, view_shape, strides = _basic_view(tuple(shape), index)
            # A basic view never repeats an element, so scattering into zeros is adding.
            return self._scatter(self.broadcast_to(values, view_shape), out, offset, strides)
        positions = _positions(tuple(shape), index)
        values = self.broadcast_to(values, tuple(positions.shape))
        if values.size:
            _launch(_put_add_kernel, values.size)(_flat(values), _flat(positions), _flat(out))
        return out

    def pad(self, a, widths, value):
        shape = tuple(size + before + after for size, (before, after) in zip(a.shape, widths))
        strides = _contiguous_strides(shape)
        offset = sum(before * s for (before, _), s in zip(widths, strides))
        return self._scatter(a, self.full(shape, value, a.dtype), offset, strides)

    def concat(self, arrays, axis):
        shape = list(arrays[0].shape)
        shape[axis] = sum(a.shape[axis] for a in arrays)
        out = self.empty(tuple(shape), np.result_type(*[a.dtype for a in arrays]))
        strides, start = _contiguous_strides(shape), 0
        for a in arrays:
            self._scatter(a, out, start * strides[axis], strides)
            start += a.shape[axis]
        return out

    # -- convolution and normalisation ---------------------------------------------------
    def im2col(self, x, kernel, stride, padding, dilation):
        n, c = x.shape[:2]
        out_h, out_w = conv_out_hw(tuple(x.shape), kernel, stride, padding, dilation)
        cols = self.empty((c * kernel[0] * kernel[1], n * out_h * out_w), x.dtype)
        _launch(_im2col_kernel, cols.size)(x, cols, *kernel, *stride, *padding, *dilation, out_h, out_w)
        return cols

    def col2im(self, cols, x_shape, kernel, stride, padding, dilation):
        out_h, out_w = conv_out_hw(x_shape, kernel, stride, padding, dilation)
        x = self.empty(tuple(x_shape), cols.dtype)
        _launch(_col2im_kernel, x.size)(cols, x, *kernel, *stride, *padding, *dilation, out_h, out_w)
        return x

    def bn_stats(self, x):
        """The mean, then the mean squared deviation, of each row of x moved to (C, N·H·W): the
        reductions pick a block per channel on a GPU, so this needs no kernel of its own."""
        channels = self.transpose(x, (1, 0, 2, 3)).reshape((x.shape[1], -1))
        count = self.full((), channels.shape[1], x.dtype)
        mean = self.zip("div", self.reduce("sum", channels, (1,), False), count)
        centred = self.zip("sub", channels, mean.reshape((-1, 1)))
        var = self.zip("div", self.reduce("sum", self.zip("mul", centred, centred), (1,), False), count)
        return mean, var
