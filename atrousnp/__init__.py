"""atrousnp: a from-scratch deep-learning engine that teaches DeepLabv3's atrous convolution.

    import atrousnp as anp
    import atrousnp.functional as F
"""

from .tensor import Tensor, from_numpy, full, ones, randn, tensor, zeros  # noqa: I001 - tensor first: the rest import it
from .autograd import Function, inference_mode, is_grad_enabled, no_grad
from .backends import backend_names, get_backend, set_backend, use_backend
from .gradcheck import gradcheck
from . import cuda, data, functional, metrics, models, nn, optim, viz
from .checkpoint import load, save
from .inference import predict
from .random import manual_seed
from .functional import cat, pad, stack, where

__version__ = "0.1.0"

__all__ = ["Function", "Tensor", "backend_names", "cat", "cuda", "data", "from_numpy", "full", "functional",
           "get_backend", "gradcheck", "inference_mode", "is_grad_enabled", "load", "manual_seed", "metrics", "models",
           "nn", "no_grad", "ones", "optim", "pad", "predict", "randn", "save", "set_backend", "stack", "tensor",
           "use_backend", "viz", "where", "zeros"]
