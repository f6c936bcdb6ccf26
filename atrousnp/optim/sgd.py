"""Stochastic gradient descent with momentum and weight decay, PyTorch's update rule."""

from ..autograd import no_grad
from ..checkpoint import state_array
from ..tensor import Tensor
from .optimizer import Optimizer


def sgd_update(p, g, buf, lr, momentum, weight_decay, dampening, nesterov):
    """PyTorch's SGD for one parameter p with gradient g and momentum buffer buf (None before
    the first step); returns (new p, new buf). The same lines run on Tensors or NumPy arrays."""
    if weight_decay:
        g = g + weight_decay * p                                  # L2 decay, as a gradient term
    if momentum:
        buf = g if buf is None else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf               # Nesterov looks one step ahead
    return p - lr * g, buf


class SGD(Optimizer):
    """``sgd_update`` for every parameter with a gradient; parameters without one (frozen, or
    unused this step) are skipped.

    A backend that fuses the update (``Backend.sgd_step``: Numba, CUDA) does all of a group's
    parameters in one call, in place; tests/test_fused.py holds it to ``sgd_update``. On the
    NumPy backend the update is ``sgd_update`` itself, op by op.

    Parameter groups are ``Optimizer``'s; a fused update reads a group's rate from its device
    copy (``ParamGroup.rate``), so that a scheduled rate reaches a replayed CUDA graph.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 dampening: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      dampening=dampening))
        for group in self.param_groups:
            if group["nesterov"] and (group["momentum"] == 0 or group["dampening"] != 0):
                raise ValueError("SGD: nesterov needs momentum > 0 and dampening 0")
        self.momentum_buffers = [None] * len(self.params)

    def step(self):
        """Update every parameter that has a gradient: one fused call per group and backend
        where the backend fuses SGD, else ``sgd_update`` on each parameter's Tensors."""
        work = {}  # (id(group), backend) -> (group, backend, the indices of its parameters to update)
        for group, i, p in self.stepped():
            _, _, indices = work.setdefault((id(group), p._backend), (group, p._backend, []))
            indices.append(i)
        for group, be, indices in work.values():
            settings = (group["momentum"], group["weight_decay"], group["dampening"], group["nesterov"])
            if be.sgd_step is None:
                with no_grad():
                    for i in indices:
                        self._update(i, group["lr"], *settings)
                continue
            params, buffers = be.sgd_step([self.params[i].data for i in indices],
                                          [self.params[i].grad.data for i in indices],
                                          [self.momentum_buffers[i] for i in indices], group.rate(be), *settings)
            for i, p, buf in zip(indices, params, buffers):
                self.params[i].data, self.momentum_buffers[i] = p, buf

    def _update(self, i, lr, *settings):
        p, buf = self.params[i], self.momentum_buffers[i]
        new_p, new_buf = sgd_update(p, p.grad, None if buf is None else Tensor._wrap(buf, p._backend), lr, *settings)
        p.data, self.momentum_buffers[i] = new_p.data, None if new_buf is None else new_buf.data

    def parameter_state(self):
        """Every momentum buffer there is, as a host array."""
        return {f"momentum_buffer.{i}": self.params[i]._backend.to_host(buf)
                for i, buf in enumerate(self.momentum_buffers) if buf is not None}

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s output. Everything is checked before anything changes: the
        learning rates as in the constructor (one per group), each momentum buffer's exact shape (a
        broadcastable one would silently spread one row's momentum over the whole tensor), and
        no buffer for a parameter this optimiser does not have."""
        lrs = self.checked_rates(state, ["momentum_buffer"])
        buffers = [None if state.get(f"momentum_buffer.{i}") is None else
                   state_array("SGD.load_state_dict", f"momentum_buffer.{i}", state[f"momentum_buffer.{i}"],
                               p.shape, p.dtype) for i, p in enumerate(self.params)]
        self.set_rates(lrs)
        for i, (p, buf) in enumerate(zip(self.params, buffers)):
            if buf is not None and self.momentum_buffers[i] is not None:   # in place, as the parameters
                p._backend.copy_from_host(self.momentum_buffers[i], buf)
            else:
                self.momentum_buffers[i] = None if buf is None else p._backend.asarray(buf)
