"""Loop definitions of one optimiser step, element by element, as PyTorch's documentation writes
them (torch.optim.SGD, Adam, AdamW). Each returns new arrays and leaves its inputs alone."""

import math

import numpy as np


def sgd_step(param, grad, buf, lr, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
    """(new param, new momentum buffer); ``buf`` is None before the first step."""
    new_param, new_buf = np.empty_like(param), np.empty_like(param)
    for i in np.ndindex(param.shape):
        g = grad[i] + weight_decay * param[i]
        b = g
        if momentum:
            b = g if buf is None else momentum * buf[i] + (1 - dampening) * g
            g = g + momentum * b if nesterov else b
        new_param[i], new_buf[i] = param[i] - lr * g, b
    return new_param, new_buf


def adam_step(param, grad, m, v, step, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """(new param, new m, new v) at step ``step`` (1 for the first, when m and v are zeros).
    ``decoupled``: AdamW's decay of the parameter itself instead of Adam's L2 term."""
    beta1, beta2 = betas
    new_param, new_m, new_v = np.empty_like(param), np.empty_like(param), np.empty_like(param)
    for i in np.ndindex(param.shape):
        p, g = param[i], grad[i]
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        new_m[i] = beta1 * m[i] + (1 - beta1) * g
        new_v[i] = beta2 * v[i] + (1 - beta2) * g * g
        m_hat = new_m[i] / (1 - beta1 ** step)
        v_hat = new_v[i] / (1 - beta2 ** step)
        new_param[i] = p - lr * m_hat / (math.sqrt(v_hat) + eps)
    return new_param, new_m, new_v
