"""Batch norm, pooling, resize, softmax/cross-entropy and dropout: each against its loop
definition in reference/, by gradcheck, and (where PyTorch is installed) against torch."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref

seeds = st.integers(0, 2**32 - 1)


def grad_tensor(a):
    return anp.tensor(a, requires_grad=True)


def input_gradient(op, x, upstream):
    """d sum(op(x) * upstream) / dx: the op's backward, fed ``upstream``."""
    x_t = grad_tensor(x)
    (op(x_t) * anp.tensor(upstream)).sum().backward()
    return x_t.grad.numpy()


# -- batch norm -------------------------------------------------------------------------

@given(n=st.integers(1, 3), c=st.integers(1, 3), hw=st.integers(1, 4), seed=seeds)
def test_batch_norm_training_equals_the_loop_definition(backend, n, c, hw, seed):
    if n * hw * hw < 2:
        return
    rng = np.random.default_rng(seed)
    x, weight, bias = rng.standard_normal((n, c, hw, hw)), rng.standard_normal(c), rng.standard_normal(c)
    y = F.batch_norm(anp.tensor(x), None, None, anp.tensor(weight), anp.tensor(bias), training=True)
    np.testing.assert_allclose(y.numpy(), ref.batch_norm_train(x, weight, bias, 1e-5), rtol=1e-9, atol=1e-9)
    x_t = grad_tensor(x)
    w_t, b_t = grad_tensor(weight), grad_tensor(bias)
    upstream = rng.standard_normal(x.shape)
    (F.batch_norm(x_t, None, None, w_t, b_t, training=True) * anp.tensor(upstream)).sum().backward()
    for got, expected in zip((x_t.grad, w_t.grad, b_t.grad), ref.batch_norm_train_backward(x, weight, upstream, 1e-5)):
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-8, atol=1e-9)
    assert anp.gradcheck(lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], training=True),
                         [grad_tensor(x), grad_tensor(weight), grad_tensor(bias)])


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
    assert anp.gradcheck(lambda t: F.batch_norm(t, mean, var, training=False), [grad_tensor(x)])


def test_batch_norm_needs_two_values_per_channel_in_training(backend):
    with pytest.raises(ValueError, match=r"more than 1 value per channel.*\(1, 3, 1, 1\)"):
        F.batch_norm(anp.zeros(1, 3, 1, 1), None, None, training=True)
    F.batch_norm(anp.zeros(1, 3, 1, 1), anp.zeros(3), anp.ones(3), training=False)


def test_batch_norm_statistics_equal_numpys(backend):
    """Each backend's own per-channel statistics kernel, on values far from 0 in float32."""
    x = np.random.default_rng(3).standard_normal((3, 5, 7, 6)).astype(np.float32) * 100 + 1000
    be = anp.get_backend()
    for got, expected in zip(be.bn_stats(be.asarray(x)), (x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3)))):
        np.testing.assert_allclose(be.to_host(got), expected, rtol=1e-5)


# -- pooling ----------------------------------------------------------------------------

@given(k=st.integers(1, 3), s=st.integers(1, 3), data=st.data(), seed=seeds)
def test_max_pool_equals_the_loop_definition(backend, k, s, data, seed):
    p = data.draw(st.integers(0, k // 2))
    x = np.random.default_rng(seed).standard_normal((2, 2, k + data.draw(st.integers(0, 5)), k + 3))
    y = F.max_pool2d(anp.tensor(x), k, s, p)
    np.testing.assert_array_equal(y.numpy(), ref.pool2d(x, k, s, p)[0])
    upstream = np.random.default_rng(seed + 1).standard_normal(y.shape)
    np.testing.assert_allclose(input_gradient(lambda t: F.max_pool2d(t, k, s, p), x, upstream),
                               ref.pool2d_backward(upstream, x, k, s, p), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.max_pool2d(t, k, s, p), [grad_tensor(x)])


@given(k=st.integers(1, 3), s=st.integers(1, 3), data=st.data(), seed=seeds)
def test_avg_pool_counts_padding_as_zeros(backend, k, s, data, seed):
    p = data.draw(st.integers(0, k // 2))
    x = np.random.default_rng(seed).standard_normal((1, 2, k + 3, k + 2))
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    out_h, out_w = (padded.shape[2] - k) // s + 1, (padded.shape[3] - k) // s + 1
    expected = np.array([[[[padded[0, ch, i * s:i * s + k, j * s:j * s + k].mean() for j in range(out_w)]
                           for i in range(out_h)] for ch in range(2)]])
    np.testing.assert_allclose(F.avg_pool2d(anp.tensor(x), k, s, p).numpy(), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ref.pool2d(x, k, s, p, mode="avg")[0], expected, rtol=1e-12, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(expected.shape)
    np.testing.assert_allclose(input_gradient(lambda t: F.avg_pool2d(t, k, s, p), x, upstream),
                               ref.pool2d_backward(upstream, x, k, s, p, mode="avg"), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [grad_tensor(x)])


@given(h=st.integers(1, 7), w=st.integers(1, 7), out_h=st.integers(1, 4), out_w=st.integers(1, 4), seed=seeds)
def test_adaptive_avg_pool_bins(backend, h, w, out_h, out_w, seed):
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w))
    bins = lambda i, size, out: slice((i * size) // out, -((-(i + 1) * size) // out))  # noqa: E731
    expected = np.array([[[[x[b, c, bins(i, h, out_h), bins(j, w, out_w)].mean() for j in range(out_w)]
                           for i in range(out_h)] for c in range(2)] for b in range(2)])
    np.testing.assert_allclose(F.adaptive_avg_pool2d(anp.tensor(x), (out_h, out_w)).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (out_h, out_w)), [grad_tensor(x)])


# -- bilinear resize --------------------------------------------------------------------

@given(h=st.integers(1, 6), w=st.integers(1, 6), out_h=st.integers(1, 9), out_w=st.integers(1, 9),
       align_corners=st.booleans(), seed=seeds)
def test_bilinear_equals_the_loop_definition(backend, h, w, out_h, out_w, align_corners, seed):
    x = np.random.default_rng(seed).standard_normal((1, 2, h, w))
    y = F.interpolate(anp.tensor(x), size=(out_h, out_w), mode="bilinear", align_corners=align_corners)
    np.testing.assert_allclose(y.numpy(), ref.bilinear(x, out_h, out_w, align_corners), rtol=1e-12, atol=1e-12)
    upstream = np.random.default_rng(seed + 1).standard_normal(y.shape)
    np.testing.assert_allclose(input_gradient(lambda t: F.interpolate(t, (out_h, out_w), align_corners=align_corners),
                                              x, upstream),
                               ref.bilinear_backward(upstream, h, w, align_corners), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.interpolate(t, (out_h, out_w), align_corners=align_corners), [grad_tensor(x)])


# -- softmax and cross-entropy ----------------------------------------------------------

@given(c=st.integers(2, 5), hw=st.integers(1, 4), seed=seeds, weighted=st.booleans())
def test_cross_entropy_equals_the_loop_definition(backend, c, hw, seed, weighted):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((2, c, hw, hw)) * 3
    target = rng.integers(0, c, (2, hw, hw))
    target[rng.random(target.shape) < 0.3] = 255
    weight = rng.uniform(0.5, 2.0, c) if weighted else None
    loss = F.cross_entropy(anp.tensor(logits), anp.tensor(target), ignore_index=255, weight=weight)
    np.testing.assert_allclose(loss.item(), ref.cross_entropy(logits, target, 255, weight), rtol=1e-10, atol=1e-12)
    logits_t = grad_tensor(logits)
    F.cross_entropy(logits_t, anp.tensor(target), ignore_index=255, weight=weight).backward()
    np.testing.assert_allclose(logits_t.grad.numpy(), ref.cross_entropy_backward(logits, target, 255, weight),
                               rtol=1e-10, atol=1e-12)
    assert anp.gradcheck(lambda t: F.cross_entropy(t, target, weight=weight), [grad_tensor(logits)])


def test_cross_entropy_with_every_pixel_ignored_is_zero_with_zero_gradient(backend):
    logits = grad_tensor(np.random.default_rng(0).standard_normal((1, 3, 2, 2)))
    loss = F.cross_entropy(logits, np.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0
    np.testing.assert_array_equal(logits.grad.numpy(), 0.0)


def test_cross_entropy_with_an_ignore_index_that_is_also_a_class(backend):
    rng = np.random.default_rng(5)
    logits, target = rng.standard_normal((2, 3, 2, 3)), rng.integers(0, 3, (2, 2, 3))
    loss = F.cross_entropy(anp.tensor(logits), target, ignore_index=1)
    np.testing.assert_allclose(loss.item(), ref.cross_entropy(logits, target, 1, None), rtol=1e-10)


def test_cross_entropy_bad_labels(backend):
    with pytest.raises(ValueError, match=r"label 7 is outside \[0, 3\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match=r"target must have shape \(1, 2, 2\).*got \(1, 2\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(2,\)"):
        F.cross_entropy(anp.zeros(1, 3, 2, 2), np.zeros((1, 2, 2), np.int64), weight=anp.ones(2))


def test_softmax_is_stable_and_sums_to_one(backend):
    x = anp.tensor(np.array([[1000.0, 1001.0, 999.0]]))
    p = F.softmax(x, dim=1).numpy()
    np.testing.assert_allclose(p.sum(), 1.0)
    assert np.isfinite(F.log_softmax(x, dim=1).numpy()).all()
    assert anp.gradcheck(lambda t: F.log_softmax(t, dim=1), [grad_tensor(np.random.default_rng(1).standard_normal((2, 4)))])


# -- dropout ----------------------------------------------------------------------------

def test_dropout_keeps_the_mean_and_is_reproducible(backend):
    x = anp.ones(100_000)
    y1 = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(5)).numpy()
    y2 = F.dropout(x, 0.3, training=True, rng=np.random.default_rng(5)).numpy()
    np.testing.assert_array_equal(y1, y2)
    assert abs(y1.mean() - 1.0) < 0.02 and set(np.unique(y1)) <= {0.0, np.float32(1 / 0.7)}
    assert F.dropout(x, 0.3, training=False) is x


# -- PyTorch, where installed -----------------------------------------------------------

def test_against_torch(backend):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 9, 7))
    target = rng.integers(0, 3, (2, 9, 7))
    target[0, :2] = 255
    cases = {
        "max_pool": (lambda t: F.max_pool2d(t, 3, 2, 1), lambda t: tf.max_pool2d(t, 3, 2, 1)),
        "avg_pool": (lambda t: F.avg_pool2d(t, 3, 2, 1), lambda t: tf.avg_pool2d(t, 3, 2, 1)),
        "adaptive": (lambda t: F.adaptive_avg_pool2d(t, (4, 3)), lambda t: tf.adaptive_avg_pool2d(t, (4, 3))),
        "bilinear": (lambda t: F.interpolate(t, (17, 5)), lambda t: tf.interpolate(t, (17, 5), mode="bilinear")),
        "bilinear_ac": (lambda t: F.interpolate(t, (17, 5), align_corners=True),
                        lambda t: tf.interpolate(t, (17, 5), mode="bilinear", align_corners=True)),
        "batch_norm": (lambda t: F.batch_norm(t, None, None, training=True),
                       lambda t: tf.batch_norm(t, None, None, training=True)),
        "log_softmax": (lambda t: F.log_softmax(t, 1), lambda t: tf.log_softmax(t, 1)),
        "cross_entropy": (lambda t: F.cross_entropy(t, target), lambda t: tf.cross_entropy(t, torch.tensor(target), ignore_index=255)),
    }
    for name, (ours, theirs) in cases.items():
        xa, xt = grad_tensor(x), torch.tensor(x, requires_grad=True)
        ya, yt = ours(xa), theirs(xt)
        np.testing.assert_allclose(ya.numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
        projection = np.random.default_rng(1).standard_normal(ya.shape)
        (ya * anp.tensor(projection)).sum().backward()
        (yt * torch.tensor(projection)).sum().backward()
        np.testing.assert_allclose(xa.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_resize_and_pooling_weights_are_made_once_and_kept(backend, monkeypatch):
    """Their matrices depend on sizes alone: made (and, on a GPU, uploaded) once per size, the
    last constants.LIMIT sizes kept."""
    from atrousnp.backends import constants
    from atrousnp.functional import resize
    monkeypatch.setattr(constants, "KEPT", type(constants.KEPT)())
    monkeypatch.setattr(constants, "LIMIT", 2)
    made = []
    original = resize.interpolation_matrix
    monkeypatch.setattr(resize, "interpolation_matrix", lambda *args: made.append(args[:2]) or original(*args))
    x = anp.tensor(np.arange(2 * 5 * 6, dtype=np.float32).reshape(1, 2, 5, 6))
    first = F.interpolate(x, size=(7, 8)).numpy()
    np.testing.assert_array_equal(F.interpolate(x, size=(7, 8)).numpy(), first)
    assert made == [(5, 7), (6, 8)]
    F.interpolate(x, size=(7, 9))                  # (5, 7) is used again, (6, 9) is new: (6, 8) goes
    F.interpolate(x, size=(7, 8))
    assert made == [(5, 7), (6, 8), (6, 9), (6, 8)]
