"""BatchNorm2d: batch normalisation with running statistics, and freezing for fine-tuning."""

import numbers

import numpy as np

from .. import functional as F
from ..functional.operands import positive_int
from ..tensor import Tensor, tensor
from .module import Module, Parameter


class BatchNorm2d(Module):
    """Normalise each channel of x: (N, C, H, W); see ``functional.batch_norm`` for the maths.

    momentum is PyTorch's: running = (1 - momentum) * running + momentum * batch. DeepLabv3's
    "decay 0.9997" is momentum = 0.0003.

    ``freeze()`` is for fine-tuning (the paper's output-stride-8 stage): the layer then uses its
    running statistics even in training mode, leaves them unchanged, and its weight and bias
    stop requiring gradients, so the optimiser leaves them alone too.

    For data-parallel training over MPI, ``atrousnp.parallel.convert_sync_batch_norm(model)``
    makes every BatchNorm2d a SyncBatchNorm2d, whose statistics come from every rank's batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        positive_int("BatchNorm2d", "num_features", num_features)
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNorm2d: momentum must be a number in [0, 1], got {momentum!r} (PyTorch's None, a "
                             "cumulative average, is not offered)")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"BatchNorm2d: eps must be a number > 0, got {eps!r}")
        self.num_features, self.eps, self.momentum, self.affine = num_features, eps, momentum, affine
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        self.register_buffer("running_mean", tensor(np.zeros(num_features, dtype)))
        self.register_buffer("running_var", tensor(np.ones(num_features, dtype)))
        self.frozen = False

    def freeze(self, frozen=True):
        self.frozen = frozen
        for p in (self.weight, self.bias):
            if p is not None:
                p.requires_grad = not frozen
        return self

    def forward(self, x: Tensor, residual: Tensor | None = None, relu: bool = False) -> Tensor:
        """``relu(bn(x) + residual)`` in one fused op where asked; plain ``bn(x)`` by default."""
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training and not self.frozen, momentum=self.momentum, eps=self.eps,
                            residual=residual, relu=relu)

    def check_loaded(self, prefix, arrays):
        """A variance is >= 0: a negative one (from a corrupted file) would make every output nan."""
        var = arrays.get(prefix + "running_var")
        if var is not None and (var < 0).any():
            raise ValueError(f"load_state_dict: {prefix}running_var has {(var < 0).sum()} negative values (e.g. "
                             f"{var[var < 0].flat[0]}): a variance is >= 0, so these weights are corrupted")

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, frozen={self.frozen}"
