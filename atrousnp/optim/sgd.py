"""Stochastic gradient descent with momentum and weight decay, PyTorch's update rule."""

import math
import numbers

import numpy as np

from ..checkpoint import state_array


class SGD:
    """For each parameter p with gradient g:

        g = g + weight_decay * p
        buf = g  (first step),  then  buf = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf  if nesterov  else  buf
        p = p - lr * g

    Parameters without a gradient (frozen ones, or unused this step) are skipped. The update
    is the backend's fused ``sgd_step`` over all parameters of a group at once (in place on
    the Numba backend); ``backends/base.py`` holds its readable definition.

    ``params`` is a list of Parameters, or, as in PyTorch, of groups ``{"params": [...], "lr":
    ...}`` whose own settings override the keyword ones (a backbone fine-tuned at a tenth of the
    head's rate). ``param_groups[g]["lr"]`` is what a scheduler changes.

    Each group also keeps its rate on every backend its parameters live on, as a 0-d array that
    the update reads (``ParamGroup.rate``): a CUDA graph replays the update without running this
    Python, and reads the rate from where it was at capture. So setting ``group["lr"]`` writes the
    new rate into those arrays, in place, and a replayed step uses it.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, dampening=dampening)
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [_group(dict(defaults, **group), i) for i, group in enumerate(groups)]
        self.params = [p for group in self.param_groups for p in group["params"]]
        if not self.params:
            raise ValueError("SGD: got an empty parameter list")
        if len({id(p) for p in self.params}) < len(self.params):
            raise ValueError("SGD: a parameter appears twice (in one group or in two)")
        self.momentum_buffers = [None] * len(self.params)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        """Update every parameter that has a gradient: one fused backend call per group and backend."""
        first = 0
        for group in self.param_groups:
            indices = range(first, first + len(group["params"]))
            first += len(group["params"])
            by_backend = {}
            for i in indices:
                p = self.params[i]
                if p.grad is not None and p.requires_grad:
                    by_backend.setdefault(p._backend, []).append(i)
            for be, live in by_backend.items():
                params, buffers = be.sgd_step([self.params[i].data for i in live],
                                              [self.params[i].grad.data for i in live],
                                              [self.momentum_buffers[i] for i in live],
                                              group.rate(be), group["momentum"], group["weight_decay"],
                                              group["dampening"], group["nesterov"])
                for i, p, buf in zip(live, params, buffers):
                    self.params[i].data, self.momentum_buffers[i] = p, buf

    def state_dict(self):
        """Host arrays and numbers: each group's learning rate, and every momentum buffer there is
        (numbered over all parameters, group after group)."""
        state = {"lr": [group["lr"] for group in self.param_groups]}
        for i, buf in enumerate(self.momentum_buffers):
            if buf is not None:
                state[f"momentum_buffer.{i}"] = self.params[i]._backend.to_host(buf)
        return state

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s output. Everything is checked before anything changes: the
        learning rates as in the constructor (one per group; a single number, as checkpoints
        before groups held, for a single group), each momentum buffer's exact shape (a
        broadcastable one would silently spread one row's momentum over the whole tensor), and
        no buffer for a parameter this optimiser does not have."""
        lrs = state.get("lr")
        lrs = [lrs] if isinstance(lrs, numbers.Real) else lrs
        if not isinstance(lrs, (list, tuple)) or len(lrs) != len(self.param_groups):
            raise ValueError(f"SGD.load_state_dict: lr must hold one rate per group ({len(self.param_groups)}), "
                             f"got {state.get('lr')!r}")
        for lr in lrs:
            _check_setting("lr", lr)
        names = {f"momentum_buffer.{i}" for i in range(len(self.params))}
        unexpected = sorted(set(state) - names - {"lr"})
        if unexpected:
            raise ValueError(f"SGD.load_state_dict: unexpected entries {', '.join(unexpected)} "
                             f"(this optimiser has {len(self.params)} parameters)")
        buffers = [None if state.get(f"momentum_buffer.{i}") is None else
                   state_array("SGD.load_state_dict", f"momentum_buffer.{i}", state[f"momentum_buffer.{i}"],
                               p.shape, p.dtype) for i, p in enumerate(self.params)]
        for group, lr in zip(self.param_groups, lrs):
            group["lr"] = float(lr)
        for i, (p, buf) in enumerate(zip(self.params, buffers)):
            if buf is not None and self.momentum_buffers[i] is not None:   # in place, as the parameters
                p._backend.copy_from_host(self.momentum_buffers[i], buf)
            else:
                self.momentum_buffers[i] = None if buf is None else p._backend.asarray(buf)


class ParamGroup(dict):
    """One group's parameters and settings, a dict as in PyTorch, which also holds its learning
    rate on each backend as a 0-d float64 array (``rate(backend)``), made on first use and
    rewritten in place whenever ``"lr"`` is set."""

    def __init__(self, settings):
        super().__init__(settings)
        self.rates = {}                 # backend -> its 0-d array holding self["lr"]

    def rate(self, backend):
        if backend not in self.rates:
            self.rates[backend] = backend.asarray(np.array(self["lr"], np.float64))
        return self.rates[backend]

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if key == "lr":
            for backend, rate in self.rates.items():
                backend.copy_from_host(rate, np.array(value, np.float64))

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value


def _group(group, index):
    """A parameter group with every setting checked; ``index`` names it in errors."""
    unknown = set(group) - {"params", "lr", "momentum", "weight_decay", "nesterov", "dampening"}
    if unknown:
        raise ValueError(f"SGD: group {index} has unknown settings {', '.join(sorted(unknown))}")
    for name in ("lr", "momentum", "weight_decay", "dampening"):
        _check_setting(name, group[name])
    if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
        raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
    return ParamGroup(dict(group, params=list(group["params"])))


def _check_setting(name, value):
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"SGD: {name} must be a finite number >= 0, got {value!r}")
