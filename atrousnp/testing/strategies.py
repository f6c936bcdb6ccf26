"""Hypothesis strategies for convolution cases: shapes, geometry and values, always valid."""

import dataclasses

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

# Multiples of 1/4 in [-2, 2]: every product and every sum of a small case is exact in float32
# and float64, so a correct convolution matches the loops to the last bit and a printed
# counterexample reads as a few short decimals. Hypothesis shrinks them towards 0.
QUARTERS = st.integers(-8, 8).map(lambda k: k / 4)


@dataclasses.dataclass
class ConvCase:
    """One convolution: x (N, C, H, W), weight (K, C/groups, kh, kw), bias (K,) or None, the
    geometry as (h, w) pairs, and grad, a gradient of the output's shape for backward checks."""
    x: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    grad: np.ndarray

    def arguments(self):
        return self.x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups

    def __repr__(self):
        def show(name, a):
            return f"  {name} {None if a is None else a.shape}:\n{_indent(a)}" if a is not None else f"  {name}: None"
        return (f"ConvCase(stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, dtype={self.x.dtype})\n"
                + "\n".join(show(name, a) for name, a in (("x", self.x), ("weight", self.weight), ("bias", self.bias))))


def _indent(a):
    return "    " + np.array2string(np.asarray(a), precision=4, suppress_small=True).replace("\n", "\n    ")


def output_size(size, kernel, stride, padding, dilation):
    """out = floor((size + 2p - d(k-1) - 1) / s) + 1 (docs/atrous_convolution.md)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@st.composite
def conv2d_cases(draw, max_size=7, max_batch=2, max_channels=2, max_kernel=3, dtypes=(np.float64,),
                 groups=True, dilation=True, stride=True, padding=True, bias=True):
    """A random valid convolution case (a ``ConvCase``) no larger than the bounds.

    max_size bounds H and W, max_channels the input's channels and each group's output channels
    (two groups: one input channel each), max_kernel the kernel's sides; groups, dilation, stride, padding and bias may each be turned off (then 1,
    1, 1, 0 and None). The input is never smaller than the dilated kernel after padding, so the
    output has at least one pixel.
    """
    n_groups = draw(st.integers(1, 2)) if groups and max_channels >= 2 else 1
    c = draw(st.integers(1, max_channels // n_groups)) * n_groups
    k = draw(st.integers(1, max_channels)) * n_groups
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(2))
    strides = tuple(draw(st.integers(1, 3)) for _ in range(2)) if stride else (1, 1)
    dilations = tuple(draw(st.integers(1, 3)) for _ in range(2)) if dilation else (1, 1)
    paddings = tuple(draw(st.integers(0, 2)) for _ in range(2)) if padding else (0, 0)
    hw = []
    for a in range(2):
        smallest = max(1, dilations[a] * (kernel[a] - 1) + 1 - 2 * paddings[a])
        hw.append(draw(st.integers(smallest, max(smallest, max_size))))
    dtype = draw(st.sampled_from(dtypes))
    n = draw(st.integers(1, max_batch))
    out_hw = tuple(output_size(hw[a], kernel[a], strides[a], paddings[a], dilations[a]) for a in range(2))
    return ConvCase(x=draw(arrays(dtype, (n, c, *hw), elements=QUARTERS)),
                    weight=draw(arrays(dtype, (k, c // n_groups, *kernel), elements=QUARTERS)),
                    bias=draw(arrays(dtype, (k,), elements=QUARTERS)) if bias and draw(st.booleans()) else None,
                    stride=strides, padding=paddings, dilation=dilations, groups=n_groups,
                    grad=draw(arrays(dtype, (n, k, *out_hw), elements=QUARTERS)))
