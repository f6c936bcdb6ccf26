"""Bilinear resize with PyTorch's sampling rules, as one interpolation matrix per axis.

Bilinear interpolation is linear in x and separable, so for x: (N, C, H, W)

    y = R_h @ x @ R_w^T          R_h: (out_h, H), R_w: (out_w, W)

where row d of R holds the two weights (1 - t, t) of the input pixels i0, i0 + 1 around
the source coordinate of output pixel d. The backward pass is then that of matmul:
dx = R_h^T @ dy @ R_w.
"""

import numpy as np

from ..tensor import Tensor
from .operands import IntPair, as_pair, check_floating
from .linalg import matmul


def source_coordinates(in_size, out_size, align_corners):
    """Where each output pixel samples the input, as PyTorch computes it.

    align_corners=True:  src = d * (in - 1) / (out - 1)   (corner pixels' centres align)
    align_corners=False: src = (d + 0.5) * in / out - 0.5, clamped at 0 (pixel areas align)
    """
    d = np.arange(out_size, dtype=np.float64)
    if align_corners:
        return d * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    return np.maximum((d + 0.5) * (in_size / out_size) - 0.5, 0.0)


def interpolation_matrix(in_size, out_size, align_corners, dtype=np.float64):
    src = source_coordinates(in_size, out_size, align_corners)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    t = src - i0
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (np.arange(out_size), i0), 1.0 - t)
    np.add.at(matrix, (np.arange(out_size), i1), t)
    return matrix.astype(dtype)


def interpolate(x: Tensor, size: IntPair, mode: str = "bilinear", align_corners: bool = False) -> Tensor:
    """Resize x: (N, C, H, W) to ``size`` = (out_h, out_w) (or an int for both)."""
    if mode != "bilinear":
        raise ValueError(f"interpolate: only mode='bilinear' is implemented, got {mode!r}")
    if x.ndim != 4:
        raise ValueError(f"interpolate: x must be (N, C, H, W), got shape {x.shape}")
    check_floating("interpolate", x=x)
    out_h, out_w = as_pair("interpolate", "size", size, 1)
    r_h = interpolation_matrix(x.shape[2], out_h, align_corners, x.dtype)
    r_w = interpolation_matrix(x.shape[3], out_w, align_corners, x.dtype)
    return matmul(matmul(r_h, x), r_w.T)
