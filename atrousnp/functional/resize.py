"""Bilinear resize with PyTorch's sampling rules, as one interpolation matrix per axis.

Bilinear interpolation is linear in x and separable, so for x: (N, C, H, W)

    y = R_h @ x @ R_w^T          R_h: (out_h, H), R_w: (out_w, W)

where row d of R holds the two weights (1 - t, t) of the input pixels i0, i0 + 1 around
the source coordinate of output pixel d. The backward pass is then that of matmul:
dx = R_h^T @ dy @ R_w.
"""

import numpy as np

from ..autograd import backend_of
from ..backends.constants import kept
from ..tensor import Tensor
from .linalg import matmul
from .operands import IntPair, as_pair, check_floating


def source_coordinates(in_size, out_size, align_corners, scale=None):
    """Where each output pixel samples the input, as PyTorch computes it.

    align_corners=True:  src = d * (in - 1) / (out - 1)   (corner pixels' centres align)
    align_corners=False: src = (d + 0.5) * step - 0.5, clamped at 0 (pixel areas align), with
                         step = in / out, or 1 / scale when a scale factor is given (PyTorch
                         uses the factor itself unless told to recompute it from the sizes)
    """
    d = np.arange(out_size, dtype=np.float64)
    if align_corners:
        return d * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    step = 1.0 / scale if scale else in_size / out_size
    return np.maximum((d + 0.5) * step - 0.5, 0.0)


def interpolation_matrix(in_size, out_size, align_corners, dtype=np.float64, scale=None):
    src = source_coordinates(in_size, out_size, align_corners, scale)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    t = src - i0
    matrix = np.zeros((out_size, in_size), np.float64)
    np.add.at(matrix, (np.arange(out_size), i0), 1.0 - t)
    np.add.at(matrix, (np.arange(out_size), i1), t)
    return matrix.astype(dtype)


def interpolate(x: Tensor, size: IntPair | None = None, scale_factor: float | tuple | None = None,
                mode: str = "bilinear", align_corners: bool = False,
                recompute_scale_factor: bool | None = None) -> Tensor:
    """Resize x: (N, C, H, W) or (C, H, W) bilinearly to ``size`` = (out_h, out_w) (or an int for
    both), or by ``scale_factor`` (a number or an (h, w) pair): out = floor(in * scale).

    As in PyTorch, a scale factor also sets the sampling step (1 / scale) unless
    ``recompute_scale_factor=True``, which samples as if the output size had been given.
    Differences from PyTorch: ``mode`` defaults to (and only supports) "bilinear", DeepLab's,
    where PyTorch's default is "nearest"; there is no ``antialias``."""
    if mode != "bilinear":
        raise ValueError(f"interpolate: only mode='bilinear' is implemented, got {mode!r}")
    if x.ndim not in (3, 4):
        raise ValueError(f"interpolate: x must be (N, C, H, W) or (C, H, W), got shape {x.shape}")
    check_floating("interpolate", x=x)
    if (size is None) == (scale_factor is None):
        raise ValueError("interpolate: give exactly one of size and scale_factor")
    if size is not None:
        out_hw, scales = as_pair("interpolate", "size", size, 1), (None, None)
    else:
        scales = tuple(float(s) for s in (scale_factor if isinstance(scale_factor, (tuple, list)) else
                                          (scale_factor, scale_factor)))
        if len(scales) != 2 or not all(np.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"interpolate: scale_factor must be a positive number or a pair, got {scale_factor!r}")
        out_hw = tuple(int(np.floor(n * s)) for n, s in zip(x.shape[-2:], scales))
        if min(out_hw) < 1:
            raise ValueError(f"interpolate: scale_factor {scale_factor!r} makes a {out_hw} output from {x.shape[-2:]}")
        scales = (None, None) if recompute_scale_factor else scales
    backend = backend_of("interpolate", x)
    r_h = kept(backend, ("interpolate", x.shape[-2], out_hw[0], align_corners, x.dtype.str, scales[0]),
               lambda: interpolation_matrix(x.shape[-2], out_hw[0], align_corners, x.dtype, scales[0]))
    r_w_t = kept(backend, ("interpolate.T", x.shape[-1], out_hw[1], align_corners, x.dtype.str, scales[1]),
                 lambda: interpolation_matrix(x.shape[-1], out_hw[1], align_corners, x.dtype, scales[1]).T)
    return matmul(matmul(r_h, x), r_w_t)
