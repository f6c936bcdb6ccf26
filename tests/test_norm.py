"""Batch norm equals its loop definition, NumPy's statistics and torch, with its gradients and running statistics."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref
from helpers import assert_matches_torch, seeds, t, torch_or_skip

RNG = np.random.default_rng(0)


@given(n=st.integers(1, 3), c=st.integers(1, 3), hw=st.integers(1, 4), seed=seeds)
def test_batch_norm_training_equals_the_loop_definition(backend, n, c, hw, seed):
    if n * hw * hw < 2:
        return
    rng = np.random.default_rng(seed)
    x, weight, bias = rng.standard_normal((n, c, hw, hw)), rng.standard_normal(c), rng.standard_normal(c)
    y = F.batch_norm(anp.tensor(x), None, None, anp.tensor(weight), anp.tensor(bias), training=True)
    np.testing.assert_allclose(y.numpy(), ref.batch_norm_train(x, weight, bias, 1e-5), rtol=1e-9, atol=1e-9)
    x_t = t(x, grad=True)
    w_t, b_t = t(weight, grad=True), t(bias, grad=True)
    upstream = rng.standard_normal(x.shape)
    (F.batch_norm(x_t, None, None, w_t, b_t, training=True) * anp.tensor(upstream)).sum().backward()
    for got, expected in zip((x_t.grad, w_t.grad, b_t.grad), ref.batch_norm_train_backward(x, weight, upstream, 1e-5)):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8, atol=1e-9)
    assert anp.gradcheck(lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], training=True),
                         [t(x, grad=True), t(weight, grad=True), t(bias, grad=True)])


def test_batch_norm_running_statistics_and_eval(backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 3, 3)) * 3 + 1
    mean, var = anp.tensor(np.zeros(2)), anp.tensor(np.ones(2))
    F.batch_norm(anp.tensor(x), mean, var, training=True, momentum=0.25)
    m = 4 * 9
    np.testing.assert_allclose(mean.numpy(), 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), 0.75 + 0.25 * x.var(axis=(0, 2, 3)) * m / (m - 1), rtol=1e-12)
    weight = rng.standard_normal(2)
    y = F.batch_norm(anp.tensor(x), mean, var, anp.tensor(weight), None, training=False)
    expected = (x - mean.numpy()[None, :, None, None]) / np.sqrt(var.numpy()[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y.numpy(), expected * weight[None, :, None, None], rtol=1e-12)
    assert anp.gradcheck(lambda t: F.batch_norm(t, mean, var, training=False), [t(x, grad=True)])


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batch_norm_takes_n_c_and_n_c_l(backend, shape):
    x = RNG.standard_normal(shape)
    axes = (0,) + tuple(range(2, len(shape)))
    expected = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    y = F.batch_norm(t(x), None, None, training=True)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert anp.gradcheck(lambda a: F.batch_norm(a, None, None, training=True), [t(x, grad=True)])


def test_batch_norm_statistics_equal_numpys(backend):
    """Each backend's own per-channel statistics kernel, on values far from 0 in float32."""
    x = np.random.default_rng(3).standard_normal((3, 5, 7, 6)).astype(np.float32) * 100 + 1000
    be = anp.get_backend()
    for got, expected in zip(be.bn_stats(be.asarray(x)), (x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)))):
        np.testing.assert_allclose(be.to_host(got), expected, rtol=1e-5)


def test_against_torch(backend):
    tf = torch_or_skip().nn.functional
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 7))
    assert_matches_torch(x, {
        "batch_norm": (lambda t: F.batch_norm(t, None, None, training=True),
                       lambda t: tf.batch_norm(t, None, None, training=True)),
    })


# -- bad input ------------------------------------------------------------------------------------

def test_batch_norm_needs_two_values_per_channel_in_training(backend):
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3, 1, 1\)"):
        F.batch_norm(anp.zeros(1, 3, 1, 1), None, None, training=True)
    F.batch_norm(anp.zeros(1, 3, 1, 1), anp.zeros(3), anp.ones(3), training=False)
