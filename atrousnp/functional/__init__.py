"""Differentiable ops, one module per family (``import atrousnp.functional as F``)."""

from .conv import conv2d
from .elementwise import (add, astype, compare, div, exp, log, mul, neg, pow, relu, sigmoid,
                          sqrt, sub, tanh, where)
from .linalg import matmul
from .reduce import argmax, max, mean, sum
from .shape import cat, getitem, pad, permute, reshape, stack, transpose

__all__ = ["add", "argmax", "astype", "cat", "compare", "conv2d", "div", "exp", "getitem", "log", "matmul",
           "max", "mean", "mul", "neg", "pad", "permute", "pow", "relu", "reshape", "sigmoid",
           "sqrt", "stack", "sub", "sum", "tanh", "transpose", "where"]
