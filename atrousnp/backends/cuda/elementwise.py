"""Elementwise kernels: map, zip (with broadcasting through strides), where, fill, and the
gather/scatter/take/put-add kernels that every layout change and indexing op is made of.

    gather:   out[i]                                  = src[offset + sum_k coord_k(i) * strides_k]
    scatter:  out[offset + sum_k coord_k(i) * strides_k] = src[i]      (distinct targets)

The strides come from ``layout.py``. Elementwise kernels are compiled once per op from device
functions, which numba inlines into them.
"""

import math

from numba import cuda
from numba import types as t

from .. import scalar_rules
from .index import divmod32


# -- elementwise device functions --------------------------------------------------------

_sigmoid = cuda.jit(device=True)(scalar_rules.sigmoid)

UNARY = {
    "neg": cuda.jit(device=True)(lambda a: -a),
    "exp": cuda.jit(device=True)(lambda a: math.exp(a)),
    "log": cuda.jit(device=True)(lambda a: math.log(a)),
    "sqrt": cuda.jit(device=True)(lambda a: math.sqrt(a)),
    "tanh": cuda.jit(device=True)(lambda a: math.tanh(a)),
    "identity": cuda.jit(device=True)(lambda a: a),
    "sigmoid": cuda.jit(device=True)(lambda a: _sigmoid(a, type(a)(1))),
    "relu": cuda.jit(device=True)(scalar_rules.relu),
    "step": cuda.jit(device=True)(scalar_rules.step),
}
BINARY = {
    "add": cuda.jit(device=True)(lambda a, b: a + b),
    "sub": cuda.jit(device=True)(lambda a, b: a - b),
    "mul": cuda.jit(device=True)(lambda a, b: a * b),
    "div": cuda.jit(device=True)(lambda a, b: a / b),
    "pow": cuda.jit(device=True)(lambda a, b: a ** b),
    "eq": cuda.jit(device=True)(lambda a, b: a == b),
    "ne": cuda.jit(device=True)(lambda a, b: a != b),
    "gt": cuda.jit(device=True)(lambda a, b: a > b),
    "ge": cuda.jit(device=True)(lambda a, b: a >= b),
    "lt": cuda.jit(device=True)(lambda a, b: a < b),
    "le": cuda.jit(device=True)(lambda a, b: a <= b),
}
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")


@cuda.jit(device=True)
def flat_offset(i, shape, strides):
    """The source offset of flat output index i, for an output of ``shape`` read through ``strides``
    (a stride may be negative: a reversed view). One 32-bit division per axis (``index.py``)."""
    offset = 0
    for k in range(len(shape) - 1, -1, -1):
        i, coordinate = divmod32(i, shape[k])
        offset += coordinate * strides[k]
    return offset


def unary_kernel(fn):
    @cuda.jit
    def kernel(a, out):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(a[i])
    return kernel


def binary_kernel(fn):
    @cuda.jit
    def kernel(a, a_strides, b, b_strides, out, shape):
        for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
            out[i] = fn(a[flat_offset(i, shape, a_strides)], b[flat_offset(i, shape, b_strides)])
    return kernel


@cuda.jit
def where_kernel(cond, c_strides, a, a_strides, b, b_strides, out, shape):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        take_a = cond[flat_offset(i, shape, c_strides)]
        out[i] = a[flat_offset(i, shape, a_strides)] if take_a else b[flat_offset(i, shape, b_strides)]


@cuda.jit
def fill_kernel(out, value):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = value


@cuda.jit
def gather_kernel(src, offset, strides, out, shape):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = src[offset + flat_offset(i, shape, strides)]


@cuda.jit
def scatter_kernel(src, out, offset, strides, shape):
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        out[offset + flat_offset(i, shape, strides)] = src[i]


@cuda.jit
def take_kernel(src, positions, out):
    for i in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[i] = src[positions[i]]


@cuda.jit
def put_add_kernel(src, positions, out):
    """out[positions[i]] += src[i]; atomic, because a position may repeat."""
    for i in range(cuda.grid(1), src.size, cuda.gridsize(1)):
        cuda.atomic.add(out, positions[i], src[i])


def signatures(dtype):
    """(name, kernel, argument types) of this module's kernels, for tests/compile_cuda_kernels.py."""
    a1, i1, b1, i = dtype[::1], t.int64[::1], t.boolean[::1], t.int64
    shape = t.UniTuple(t.int64, 3)
    kernels = [(f"map {op}", unary_kernel(fn), (a1, a1)) for op, fn in UNARY.items()]
    kernels += [(f"zip {op}", binary_kernel(fn), (a1, shape, a1, shape, b1 if op in COMPARISONS else a1, shape))
                for op, fn in BINARY.items()]
    return kernels + [
        ("where", where_kernel, (b1, shape, a1, shape, a1, shape, a1, shape)),
        ("fill", fill_kernel, (a1, dtype)),
        ("gather", gather_kernel, (a1, i, shape, a1, shape)),
        ("scatter", scatter_kernel, (a1, a1, i, shape, shape)),
        ("take", take_kernel, (a1, i1, a1)),
        ("put_add", put_add_kernel, (a1, i1, a1)),
    ]
