"""Differentiable ops, one module per family (``import atrousnp.functional as F``)."""

from .conv import conv2d
from .dropout import dropout
from .elementwise import (add, astype, compare, div, exp, log, maximum, minimum, mul, neg, pow, relu,
                          sigmoid, sqrt, sub, tanh, where)
from .linalg import linear, matmul
from .loss import cross_entropy, log_softmax, softmax
from .norm import batch_norm
from .pool import adaptive_avg_pool2d, avg_pool2d, max_pool2d
from .reduce import argmax, max, mean, sum
from .resize import interpolate
from .shape import cat, flatten, getitem, pad, permute, reshape, stack, transpose

__all__ = ["adaptive_avg_pool2d", "add", "argmax", "astype", "avg_pool2d", "batch_norm", "cat",
           "compare", "conv2d", "cross_entropy", "div", "dropout", "exp", "flatten", "getitem", "interpolate",
           "linear", "log", "log_softmax", "matmul", "max", "max_pool2d", "maximum", "mean", "minimum", "mul", "neg", "pad",
           "permute", "pow", "relu", "reshape", "sigmoid", "softmax", "sqrt", "stack", "sub", "sum",
           "tanh", "transpose", "where"]
