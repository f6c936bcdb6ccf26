"""Stochastic gradient descent with momentum and weight decay, PyTorch's update rule."""

import math
import numbers

from ..checkpoint import state_array


class SGD:
    """For each parameter p with gradient g:

        g = g + weight_decay * p
        buf = g  (first step),  then  buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  if nesterov  else  buf
        p = p - lr * g

    Parameters without a gradient (frozen ones, or unused this step) are skipped. The update
    is the backend's fused ``sgd_step`` over all parameters at once (in place on the Numba
    backend); ``backends/base.py`` holds its readable definition.
    ``param_groups[0]["lr"]`` is the learning rate a scheduler changes.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0):
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay), ("dampening", dampening)):
            _check_setting(name, value)
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        self.params = list(params)
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        self.param_groups = [dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                  nesterov=nesterov, dampening=dampening)]
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient, with one fused backend call per backend."""
        group = self.param_groups[0]
        live = [i for i, p in enumerate(self.params) if p.grad is not None and p.requires_grad]
        by_backend = {}
        for i in live:
            by_backend.setdefault(self.params[i]._backend, []).append(i)
        for be, indices in by_backend.items():
            params, buffers = be.sgd_step([self.params[i].data for i in indices],
                                          [self.params[i].grad.data for i in indices],
                                          [self.momentum_buffers[i] for i in indices],
                                          group["lr"], group["momentum"], group["weight_decay"],
                                          group["dampening"], group["nesterov"])
            for i, p, buf in zip(indices, params, buffers):
                self.params[i].data, self.momentum_buffers[i] = p, buf

    def state_dict(self):
        """Host arrays and numbers: the learning rate and every momentum buffer there is."""
        state = {"lr": self.param_groups[0]["lr"]}
        for i, buf in enumerate(self.momentum_buffers):
            if buf is not None:
                state[f"momentum_buffer.{i}"] = self.params[i]._backend.to_host(buf)
        return state

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s output. Everything is checked before anything changes: the
        learning rate as in the constructor, each momentum buffer's exact shape (a broadcastable
        one would silently spread one row's momentum over the whole tensor), and no buffer for a
        parameter this optimiser does not have."""
        lr = state.get("lr")
        _check_setting("lr", lr)
        names = {f"momentum_buffer.{i}" for i in range(len(self.params))}
        unexpected = sorted(set(state) - names - {"lr"})
        if unexpected:
            raise ValueError(f"SGD.load_state_dict: unexpected entries {', '.join(unexpected)} "
                             f"(this optimiser has {len(self.params)} parameters)")
        buffers = [None if state.get(f"momentum_buffer.{i}") is None else
                   state_array("SGD.load_state_dict", f"momentum_buffer.{i}", state[f"momentum_buffer.{i}"],
                               p.shape, p.dtype) for i, p in enumerate(self.params)]
        self.param_groups[0]["lr"] = float(lr)
        self.momentum_buffers = [None if buf is None else p._backend.asarray(buf) for p, buf in zip(self.params, buffers)]



def _check_setting(name, value):
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"SGD: {name} must be a finite number >= 0, got {value!r}")
