"""Helpers shared by the test modules."""

import numpy as np
import pytest
from hypothesis import strategies as st

import atrousnp as anp
from atrousnp.train import TrainConfig

# A seed for np.random.default_rng: Hypothesis draws the shapes, a seeded generator the values.
seeds = st.integers(0, 2**32 - 1)


def random_array(rng, shape, low=None, high=None, away_from=None):
    """float64 samples: standard normal, or uniform in [low, high); optionally kept
    at least 1e-2 from ``away_from`` (a kink, such as relu's at 0)."""
    if low is None:
        a = rng.standard_normal(shape)
    else:
        a = rng.uniform(low, high, shape)
    if away_from is not None:
        near = np.abs(a - away_from) < 1e-2
        a[near] = away_from + np.where(a[near] >= away_from, 1e-2, -1e-2)
    return a


def t(array, grad=False):
    """``array`` as a float64 Tensor, which requires a gradient if ``grad``."""
    return anp.tensor(np.asarray(array, np.float64), requires_grad=grad)


def torch_or_skip():
    """PyTorch, the oracle; the test skips where it is not installed."""
    return pytest.importorskip("torch")


def check(fn, np_fn, arrays):
    """fn on tensors equals np_fn on arrays, and fn passes gradcheck."""
    tensors = [t(a, grad=True) for a in arrays]
    np.testing.assert_allclose(fn(*tensors).numpy(), np_fn(*arrays), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(fn, tensors)


def input_gradient(op, x, upstream):
    """d sum(op(x) * upstream) / dx: the op's backward, fed ``upstream``."""
    x_t = t(x, grad=True)
    (op(x_t) * anp.tensor(upstream)).sum().backward()
    return x_t.grad.numpy()


def assert_matches_torch(x, cases, rtol=1e-10, atol=1e-12):
    """For each ``name: (ours, theirs)`` of ``cases``, ours(x) equals theirs(x), torch's op, in
    float64 to within ``rtol`` and ``atol``: the forward, and the gradient of the output's
    projection on a random array."""
    torch = torch_or_skip()
    for name, (ours, theirs) in cases.items():
        xa, xt = t(x, grad=True), torch.tensor(x, requires_grad=True)
        ya, yt = ours(xa), theirs(xt)
        np.testing.assert_allclose(ya.numpy(), yt.detach().numpy(), rtol=rtol, atol=atol, err_msg=name)
        projection = np.random.default_rng(1).standard_normal(ya.shape)
        (ya * anp.tensor(projection)).sum().backward()
        (yt * torch.tensor(projection)).sum().backward()
        np.testing.assert_allclose(xa.grad.numpy(), xt.grad.numpy(), rtol=rtol, atol=atol, err_msg=name)


def tiny_train_config(tmp_path, **overrides):
    """A training run small enough for a test: a tiny synthetic set, 6 iterations on NumPy,
    an evaluation and a checkpoint every 3, no progress bar; ``overrides`` change any setting."""
    settings = dict(data_dir=str(tmp_path / "data"), synthetic_train=8, synthetic_val=3, synthetic_size=40,
                    crop_size=40, batch_size=4, iterations=6, lr=0.02, eval_every=3, checkpoint_every=3,
                    backend="numpy", out=str(tmp_path / "run"), progress=False)
    settings.update(overrides)
    return TrainConfig(**settings)
