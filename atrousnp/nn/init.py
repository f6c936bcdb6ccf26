"""Initialisers that fill a tensor in place, as ``torch.nn.init``: ``init.kaiming_normal_(w)``.

Each draws from ``generator`` (a ``numpy.random.Generator``; the default stream,
``anp.manual_seed``, if None). A weight of shape (out, in, kh, kw) has fan_in = in * kh * kw
inputs per output and fan_out = out * kh * kw outputs per input.

Kaiming (He et al., 2015) keeps the variance of activations constant through ReLU layers:
std = gain / sqrt(fan) with gain = sqrt(2 / (1 + a^2)) (a: the leaky ReLU's negative slope,
0 for ReLU). Xavier (Glorot & Bengio, 2010) balances forward and backward variance:
bound = gain * sqrt(6 / (fan_in + fan_out)).
"""

import math

import numpy as np

from ..random import generator as stream


def fans(shape):
    """(fan_in, fan_out) of a weight of ``shape``: (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"init: fan_in and fan_out need a weight of at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """The factor by which ``nonlinearity`` shrinks a signal's standard deviation, as PyTorch's."""
    if nonlinearity in ("linear", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    return _fill(tensor, stream(generator).uniform(a, b, tensor.shape))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    return _fill(tensor, stream(generator).normal(mean, std, tensor.shape))


def constant_(tensor, val):
    return _fill(tensor, np.full(tensor.shape, val))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity), generator)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def default_(tensor, fan_in, generator=None):
    """PyTorch's default for the weights and biases of its linear and conv layers: uniform in
    [-1/sqrt(fan_in), 1/sqrt(fan_in)] (kaiming_uniform_ with a = sqrt(5), for the weights)."""
    bound = 1.0 / math.sqrt(fan_in)
    return uniform_(tensor, -bound, bound, generator)


def _kaiming_std(tensor, a, mode, nonlinearity):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fans(tensor.shape)[0 if mode == "fan_in" else 1]
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def _fill(tensor, values):
    """Replace ``tensor``'s values (in its dtype, on its backend), outside any graph; returns it."""
    tensor.data = tensor._backend.asarray(np.asarray(values, tensor.dtype))
    return tensor
