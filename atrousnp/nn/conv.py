"""Conv2d: a convolution layer with PyTorch's default initialisation."""

import numpy as np

from .. import functional as F
from ..functional.operands import as_pair, positive_int
from ..random import generator
from . import init
from .module import Module, Parameter


class Conv2d(Module):
    """y = conv2d(x, weight, bias, stride, padding, dilation, groups).

    weight: (out_channels, in_channels/groups, kh, kw), bias: (out_channels,). Both start
    uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)], fan_in = in_channels/groups*kh*kw (PyTorch's
    kaiming_uniform_ with a=sqrt(5)), drawn from ``rng`` (a numpy Generator; the default stream if None).
    ``padding`` and ``dilation`` are plain attributes: a model may change them to run the same
    weights at another output stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, rng: np.random.Generator | None = None,
                 dtype=np.float32):
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            positive_int("Conv2d", name, value)
        kh, kw = as_pair("Conv2d", "kernel_size", kernel_size, 1)
        stride_pair = as_pair("Conv2d", "stride", stride, 1)
        as_pair("Conv2d", "dilation", dilation, 1)
        if padding not in ("valid", "same"):
            as_pair("Conv2d", "padding", padding, 0)
        elif padding == "same" and stride_pair != (1, 1):
            raise ValueError(f"Conv2d: padding='same' needs stride 1, got stride {stride!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        rng = generator(rng)
        fan_in = in_channels // groups * kh * kw
        self.weight = init.default_(Parameter(np.empty((out_channels, in_channels // groups, kh, kw), dtype)), fan_in,
                                    rng)
        self.bias = init.default_(Parameter(np.empty(out_channels, dtype)), fan_in, rng) if bias else None
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = (kh, kw), stride, padding
        self.dilation, self.groups = dilation, groups

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def lay_out_weight(self, by_tap):
        """Store the weight tap by tap in memory, as a contiguous (kh, kw, out, in), if ``by_tap``,
        else in NumPy's default order; its shape (out, in, kh, kw) and values stay (a NumPy, host
        weight only). Tap by tap is how the numba backend multiplies most dilated convs, one tap's
        (out, in) matrix at a time (backends/numba/conv_paths.py): laid out so, it needs no copy
        of the weight per call (ASPP's 19 MB a conv). Its Winograd path reads either layout where
        it lies (it takes a dilated 3x3 conv whose reads are nearly all image, as layer4's at
        rate 2 on a 21x21 map); im2col reads the default order. A change of layout puts a new
        array (of the same values) in ``weight.data``, so hold the Parameter rather than its array;
        what is written into ``weight.data`` is what the conv uses. Returns self."""
        w = self.weight.data
        if isinstance(w, np.ndarray):
            taps_first = w.transpose(2, 3, 0, 1)
            if by_tap and not taps_first.flags.c_contiguous:
                self.weight.data = np.ascontiguousarray(taps_first).transpose(2, 3, 0, 1)
            elif not by_tap and not w.flags.c_contiguous:
                self.weight.data = np.ascontiguousarray(w)
        return self

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None}")
