"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019), PyTorch's update rules."""

from ..autograd import no_grad
from ..checkpoint import state_array
from ..functional.operands import positive_int
from ..tensor import Tensor
from .optimizer import Optimizer


class Adam(Optimizer):
    """For each parameter p with gradient g, at step t = 1, 2, ...:

        g = g + weight_decay * p                      (Adam: decay as an L2 term in the gradient)
        p = p - lr * weight_decay * p                 (AdamW: decay applied to p directly, "decoupled")
        m = beta1 * m + (1 - beta1) * g               a running mean of the gradient
        v = beta2 * v + (1 - beta2) * g^2             and of its square
        m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)     bias correction: m, v start at 0
        p = p - lr * m_hat / (sqrt(v_hat) + eps)

    Each parameter moves by about lr, whatever the scale of its gradient: v_hat divides that out.

    The rule is written on Tensors, with the step's numbers (lr, the bias corrections) computed
    in Python at each call. A step captured as a CUDA graph (``anp.cuda.graph``) would replay
    the captured call's numbers, so capture steps that use SGD, whose rate lives on the device.
    """

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.state = [{} for _ in self.params]

    def check_setting(self, name, value):
        if name == "betas":
            if len(value) != 2 or not all(0 <= b < 1 for b in value):
                raise ValueError(f"{type(self).__name__}: betas must be two numbers in [0, 1), got {value!r}")
            return
        super().check_setting(name, value)

    def step(self):
        with no_grad():
            for group, i, p in self.stepped():
                self._update(p, group, self.state[i])

    def _update(self, p, group, state):
        lr, (beta1, beta2), eps, decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        g = p.grad
        if decay and not self.decoupled:
            g = g + decay * p
        state["step"] = t = state.get("step", 0) + 1
        state["m"] = m = g * (1 - beta1) if t == 1 else state["m"] * beta1 + g * (1 - beta1)
        state["v"] = v = g * g * (1 - beta2) if t == 1 else state["v"] * beta2 + g * g * (1 - beta2)
        new = p * (1 - lr * decay) if decay and self.decoupled else p
        new = new - lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)).sqrt() + eps)
        p.data = new.data

    def parameter_state(self):
        """Each stepped parameter's step count and moments, as host arrays."""
        state = {}
        for i, s in enumerate(self.state):
            if s:
                state[f"step.{i}"] = s["step"]
                state[f"m.{i}"], state[f"v.{i}"] = s["m"].numpy(), s["v"].numpy()
        return state

    def load_state_dict(self, state):
        """Restore ``state_dict()``'s output, checking everything before anything changes."""
        name = f"{type(self).__name__}.load_state_dict"
        lrs = self.checked_rates(state, ["step", "m", "v"])
        restored = []
        for i, p in enumerate(self.params):
            if f"step.{i}" not in state:
                restored.append({})
                continue
            step = positive_int(name, f"step.{i}", state[f"step.{i}"])
            moments = {key: state_array(name, f"{key}.{i}", state.get(f"{key}.{i}"), p.shape, p.dtype)
                       for key in ("m", "v")}
            restored.append({"step": step, **{key: Tensor._wrap(p._backend.asarray(value), p._backend)
                                                    for key, value in moments.items()}})
        self.set_rates(lrs)
        self.state = restored


class AdamW(Adam):
    """Adam with decoupled weight decay: p shrinks by lr * weight_decay * p at each step, apart
    from the gradient's moments, so that decay does not get divided by sqrt(v_hat)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01):
        super().__init__(params, lr, betas, eps, weight_decay)
