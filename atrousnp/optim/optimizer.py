"""What every optimiser shares: parameter groups, as PyTorch has them.

``params`` is a list of Parameters, or a list of groups ``{"params": [...], "lr": ...}`` whose
own settings override the keyword ones (a backbone fine-tuned at a tenth of the head's rate).
``param_groups[g]["lr"]`` is what a scheduler changes.
"""

import math
import numbers

import numpy as np


class Optimizer:
    """Holds ``param_groups`` (each a dict of settings and its ``params``) and ``params`` (all of
    them, group after group); a subclass defines ``step``. ``defaults`` names every setting a
    group may have; each value is checked by ``check_setting``."""

    def __init__(self, params, defaults):
        name = type(self).__name__
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for index, group in enumerate(groups):
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{name}: group {index} has unknown settings {', '.join(sorted(unknown))}")
            group = ParamGroup({**defaults, **group, "params": list(group["params"])})
            for setting, value in group.items():
                if setting != "params":
                    self.check_setting(setting, value)
            self.param_groups.append(group)
        self.params = [p for group in self.param_groups for p in group["params"]]
        if not self.params:
            raise ValueError(f"{name}: got an empty parameter list")
        if len({id(p) for p in self.params}) < len(self.params):
            raise ValueError(f"{name}: a parameter appears twice (in one group or in two)")

    def check_setting(self, name, value):
        """Refuse a setting that is not a finite number >= 0 (booleans pass as they are)."""
        if isinstance(value, bool):
            return
        if not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{type(self).__name__}: {name} must be a finite number >= 0, got {value!r}")

    def state_dict(self):
        """Host arrays and numbers: each group's learning rate, and what the subclass keeps for
        each parameter (``parameter_state``: entries ``key.i``, i numbered over all parameters,
        group after group)."""
        return {"lr": [group["lr"] for group in self.param_groups], **self.parameter_state()}

    def checked_rates(self, state, keys):
        """The learning rates of a ``state_dict()`` (one per group, each checked as the
        constructor checks them), once ``state`` is seen to hold nothing but them and ``key.i``
        for the ``keys`` and parameters i there are. Changes nothing, so that a subclass's
        ``load_state_dict`` checks everything before it sets anything (``set_rates``)."""
        name = f"{type(self).__name__}.load_state_dict"
        lrs = state.get("lr")
        if not isinstance(lrs, (list, tuple)) or len(lrs) != len(self.param_groups):
            raise ValueError(f"{name}: lr must hold one rate per group ({len(self.param_groups)}), got {lrs!r}")
        for lr in lrs:
            self.check_setting("lr", lr)
        known = {"lr"} | {f"{key}.{i}" for key in keys for i in range(len(self.params))}
        unexpected = sorted(set(state) - known)
        if unexpected:
            raise ValueError(f"{name}: unexpected entries {', '.join(unexpected)} "
                             f"(this optimiser has {len(self.params)} parameters)")
        return [float(lr) for lr in lrs]

    def set_rates(self, lrs):
        for group, lr in zip(self.param_groups, lrs):
            group["lr"] = lr

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def stepped(self):
        """(group, index into ``params``, parameter) for each parameter that has a gradient to follow."""
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.requires_grad:
                    yield group, index, p
                index += 1


class ParamGroup(dict):
    """One group's parameters and settings, a dict as in PyTorch, which also holds its learning
    rate on each backend as a 0-d float64 array (``rate(backend)``), made on first use and
    rewritten in place whenever ``"lr"`` is set. A CUDA graph replays an update without running
    the optimiser's Python, reading the rate where it was at capture: in place, a scheduled
    rate still reaches it."""

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
