"""Module: a tree of layers holding parameters and buffers, as in PyTorch.

Assigning a Parameter or a Module to an attribute registers it; ``register_buffer`` adds
state that is saved but not trained (batch norm's running statistics). Names are dotted
paths, ``layer1.0.conv1.weight``, the same as PyTorch's, so state dicts carry over.
"""

from collections import OrderedDict

import numpy as np

from ..backends import check_dtype, get_backend
from ..checkpoint import state_array
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module trains: requires_grad is True unless said otherwise."""

    def __init__(self, data, requires_grad=True):
        host = data.numpy() if isinstance(data, Tensor) else np.asarray(data)
        backend = get_backend()
        check_dtype(backend, host.dtype, "Parameter")
        self._init(backend.asarray(host.copy()), backend, requires_grad)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} defines no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- registration -----------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def register_buffer(self, name, value):
        """Saved state that is not trained; ``value`` a Tensor (or None)."""
        self._buffers[name] = value

    # -- traversal --------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def get_submodule(self, path: str) -> "Module":
        """The module at the dotted ``path`` below this one ("" is this one), as in PyTorch."""
        module = self
        for name in filter(None, path.split(".")):
            if name not in module._modules:
                raise AttributeError(f"{type(self).__name__} has no submodule {path!r} ({name!r} is missing)")
            module = module._modules[name]
        return module

    def modules(self):
        return (m for _, m in self.named_modules())

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def children(self):
        return (m for _, m in self.named_children())

    def _named(self, registry):
        """(dotted name, value) for every entry of ``registry`` in this module and below."""
        for path, module in self.named_modules():
            for name, value in module.__dict__[registry].items():
                if value is not None:
                    yield (f"{path}.{name}" if path else name), value

    def named_parameters(self):
        return self._named("_parameters")

    def parameters(self):
        return (p for _, p in self.named_parameters())

    def named_buffers(self):
        return self._named("_buffers")

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # -- modes ------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def astype(self, dtype) -> "Module":
        """Cast every floating-point parameter and buffer to ``dtype`` in place, as PyTorch's
        ``module.to(dtype)`` (``model.astype("float64")`` for float64 experiments); returns self."""
        for t in list(self.parameters()) + list(self.buffers()):
            if t.dtype.kind == "f":
                t.data = t._backend.astype(t.data, check_dtype(t._backend, dtype, "astype"))
                t.grad = None
        return self

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Every parameter and buffer as a host NumPy array, by dotted name."""
        state = OrderedDict((name, p.numpy()) for name, p in self.named_parameters())
        state.update((name, b.numpy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into the parameters and buffers of the same names, in place (as PyTorch's
        ``copy_``: what refers to a parameter's array, a CUDA graph's replays included, sees the
        loaded values).

        Shapes must match. With strict=True, missing and unexpected names are an error;
        otherwise they are returned as (missing, unexpected)."""
        own = OrderedDict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched = [f"{k}: checkpoint {tuple(state_dict[k].shape)}, model {own[k].shape}" for k in own
                      if hasattr(state_dict.get(k), "shape") and tuple(state_dict[k].shape) != own[k].shape]
        problems = []
        if mismatched:
            problems.append("shape mismatch for " + "; ".join(mismatched))
        if strict and missing:
            problems.append("missing keys: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise ValueError("load_state_dict: " + " | ".join(problems))
        # Every value is checked and converted before any is copied: a refused dict changes nothing.
        arrays = {name: state_array("load_state_dict", name, state_dict[name], target.shape, target.dtype)
                  for name, target in own.items() if name in state_dict}
        for prefix, module in self.named_modules():
            module.check_loaded(f"{prefix}." if prefix else "", arrays)
        for name, array in arrays.items():       # in place: a captured CUDA graph reads these very arrays
            own[name]._backend.copy_from_host(own[name].data, array)
        return missing, unexpected

    def check_loaded(self, prefix, arrays):
        """Refuse, with a ValueError naming the key, values that ``load_state_dict`` is about to
        copy into this module (``arrays[prefix + name]``) and that it cannot hold; by default
        any value of the right shape will do."""

    def __repr__(self):
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}({extra}\n" + "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


class Sequential(Module):
    """Calls its modules in order, each on the previous one's output."""

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x

    def __getitem__(self, i):
        return list(self.children())[i]

    def __len__(self):
        return len(self._modules)


class ModuleList(Module):
    """A list of modules, registered under the names 0, 1, 2, ..."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        return list(self.children())[i]

    def __iter__(self):
        return iter(list(self.children()))

    def __len__(self):
        return len(self._modules)
