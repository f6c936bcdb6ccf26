"""The fused hot-path primitives: the Numba and CUDA backends' equal the NumPy backend's, their
definition written as plain NumPy maths (backends/numpy.py), and their fused SGD equals
optim.sgd.sgd_update, in float32 and float64; the ops built on them pass gradcheck."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends.numpy import NumpyBackend
from atrousnp.backends.primitives import conv_out_hw
from atrousnp.optim.sgd import sgd_update
from helpers import seeds

dtypes = st.sampled_from([np.float32, np.float64])
shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 5), st.integers(1, 5))


def tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


# The backends whose fused ops are held to the NumPy backend's definitions.
fast_backends = pytest.mark.parametrize("backend", ["numba", "cuda"], indirect=True)


DEFINITION = NumpyBackend()


def fused_and_definition(name, *args):
    """The backend's own ``name``, and the NumPy backend's on host copies of the arguments (which
    a primitive may update in place), both as host arrays."""
    be = anp.get_backend()
    copies = [np.array(be.to_host(a)) if be.owns(a) else a for a in args]
    to_host = lambda out, b: tuple(b.to_host(o) for o in out) if isinstance(out, (tuple, list)) else b.to_host(out)  # noqa: E731
    return to_host(getattr(be, name)(*args), be), to_host(getattr(DEFINITION, name)(*copies), DEFINITION)


def upload(*arrays):
    """Copies on the backend: asarray may share a NumPy array, which an in-place primitive would change."""
    be = anp.get_backend()
    return [None if a is None else be.asarray(np.array(a)) for a in arrays]


@fast_backends
@given(shape=shapes, dtype=dtypes, residual=st.booleans(), relu=st.booleans(), affine=st.booleans(), seed=seeds)
def test_batch_norm_forward(backend, shape, dtype, residual, relu, affine, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x, mean, var = rng.standard_normal(shape), rng.standard_normal(c), rng.uniform(0.2, 3, c)
    weight, bias = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    r = rng.standard_normal(shape) if residual else None
    args = upload(*(a if a is None else a.astype(dtype) for a in (x, mean, var, weight, bias)))
    fused, definition = fused_and_definition("batch_norm_forward", *args, 1e-5, *upload(r if r is None else r.astype(dtype)),
                                       relu)
    np.testing.assert_allclose(fused, definition, **tolerance(dtype))
    assert fused.dtype == dtype and fused.shape == shape


@fast_backends
@given(shape=shapes, dtype=dtypes, seed=seeds)
def test_relu_backward(backend, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    grad, out = rng.standard_normal(shape).astype(dtype), np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    fused, definition = fused_and_definition("relu_backward", *upload(grad, out))
    np.testing.assert_array_equal(fused, definition)


@fast_backends
@given(shape=shapes, dtype=dtypes, training=st.booleans(), affine=st.booleans(), relu=st.booleans(), seed=seeds)
def test_batch_norm_backward(backend, shape, dtype, training, affine, relu, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    grad, x = rng.standard_normal(shape), rng.standard_normal(shape) * 2 + 1
    mean, var = rng.standard_normal(c), rng.uniform(0.2, 3, c)
    weight = rng.standard_normal(c) if affine else None
    relu_out = np.maximum(rng.standard_normal(shape), 0) if relu else None
    args = upload(*(a if a is None else a.astype(dtype) for a in (grad, x, mean, var, weight)))
    fused, definition = fused_and_definition("batch_norm_backward", *args, 1e-5, training,
                                       *upload(relu_out if relu_out is None else relu_out.astype(dtype)))
    for got, expected in zip(fused, definition):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@fast_backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_mask_in_batch_norm_backward_drops_non_finite_gradients(backend, dtype):
    """Where the forward's ReLU gave 0, the gradient is 0 whatever arrives there, NaN or infinite
    (as PyTorch's threshold_backward): the fused backward, which reads the mask as it goes, and the
    definition, which masks first, agree with a backward that never saw those entries."""
    rng = np.random.default_rng(0)
    shape = (2, 3, 4, 5)
    x, grad = rng.standard_normal(shape), rng.standard_normal(shape)
    relu_out = np.maximum(rng.standard_normal(shape), 0)
    poisoned = grad.copy()
    poisoned[relu_out == 0] = np.where(rng.random(int((relu_out == 0).sum())) < 0.5, np.nan, np.inf)
    mean, var, weight = rng.standard_normal(3), rng.uniform(0.5, 2, 3), rng.standard_normal(3)
    clean = DEFINITION.batch_norm_backward(np.where(relu_out > 0, grad, 0).astype(dtype), *(
        a.astype(dtype) for a in (x, mean, var, weight)), 1e-5, True)
    fused, definition = fused_and_definition("batch_norm_backward", *upload(
        *(a.astype(dtype) for a in (poisoned, x, mean, var, weight))), 1e-5, True, *upload(relu_out.astype(dtype)))
    for got, by_definition, expected in zip(fused, definition, clean):
        np.testing.assert_allclose(by_definition, expected, **tolerance(dtype))
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@fast_backends
@given(c=st.integers(1, 5), dtype=dtypes, momentum=st.floats(0, 1), count=st.integers(2, 50), seed=seeds)
def test_update_running_stats(backend, c, dtype, momentum, count, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.uniform(0.1, 2, c).astype(dtype) for _ in range(4)]
    fused, definition = fused_and_definition("update_running_stats", *upload(*arrays[:2]), *upload(*arrays[2:]),
                                       momentum, count)
    for got, expected in zip(fused, definition):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@fast_backends
@given(n=st.integers(1, 2), groups=st.integers(1, 2), c_per_group=st.integers(1, 3), k_per_group=st.integers(1, 3),
       kernel=st.sampled_from([(1, 1), (3, 3), (2, 3)]), stride=st.integers(1, 2), padding=st.integers(0, 2),
       dilation=st.integers(1, 2), hw=st.integers(3, 7), dtype=dtypes, seed=seeds)
def test_conv2d_forward_and_backward(backend, n, groups, c_per_group, k_per_group, kernel, stride, padding,
                                     dilation, hw, dtype, seed):
    rng = np.random.default_rng(seed)
    c, k = groups * c_per_group, groups * k_per_group
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    weight = rng.standard_normal((k, c_per_group) + kernel).astype(dtype)
    geometry = (stride, stride), (padding, padding), (dilation, dilation)
    out_hw = conv_out_hw(x.shape, kernel, *geometry)
    if min(out_hw) < 1:
        return
    fused, definition = fused_and_definition("conv2d_forward", *upload(x, weight), *geometry, groups)
    np.testing.assert_allclose(fused, definition, **tolerance(dtype))
    grad = rng.standard_normal(definition.shape).astype(dtype)
    fused, definition = fused_and_definition("conv2d_backward", *upload(grad, x, weight), *geometry, groups, True, True)
    for got, expected in zip(fused, definition):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))


@fast_backends
@given(n=st.integers(1, 3), c=st.integers(1, 5), length=st.integers(1, 7), dtype=dtypes,
       weighted=st.booleans(), ignore=st.sampled_from([255, 0, -100]), seed=seeds)
def test_softmax_cross_entropy_and_its_backward(backend, n, c, length, dtype, weighted, ignore, seed):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, c, length)) * 3).astype(dtype)
    target = rng.integers(0, c, (n, length))
    target[rng.random((n, length)) < 0.3] = ignore
    weight = rng.uniform(0.5, 2, c).astype(dtype) if weighted else None
    args = upload(logits, target, weight)
    fused, definition = fused_and_definition("softmax_cross_entropy", *args, ignore)
    for got, expected in zip(fused, definition):
        np.testing.assert_allclose(got, expected, **tolerance(dtype))
    be = anp.get_backend()
    loss, lse, norm = (be.asarray(a) for a in definition)
    grad = be.asarray(np.asarray(rng.uniform(0.5, 2), dtype))
    fused, definition = fused_and_definition("softmax_cross_entropy_backward", grad, *args, ignore, lse, norm)
    np.testing.assert_allclose(fused, definition, **tolerance(dtype))


@fast_backends
@given(sizes=st.lists(st.integers(1, 20), min_size=1, max_size=4), dtype=dtypes,
       momentum=st.sampled_from([0.0, 0.9]), weight_decay=st.sampled_from([0.0, 1e-2]),
       nesterov=st.booleans(), steps=st.integers(1, 3), seed=seeds)
def test_sgd_step_over_several_steps(backend, sizes, dtype, momentum, weight_decay, nesterov, steps, seed):
    """The fused update and the rule (optim.sgd.sgd_update), each from the same start and with the
    same gradients, several steps on. A backend that updates in place must leave the gradients
    alone, since the first buffer copies one."""
    nesterov = nesterov and momentum > 0
    rng = np.random.default_rng(seed)
    be = anp.get_backend()
    start = [rng.standard_normal(s).astype(dtype) for s in sizes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in sizes] for _ in range(steps)]
    params, buffers = upload(*start), [None] * len(sizes)
    rule, rule_buffers = [p.copy() for p in start], [None] * len(sizes)
    for step_grads in grads:
        uploaded = upload(*step_grads)
        lr = be.asarray(np.array(0.1))              # the rate as the optimiser keeps it: 0-d, float64
        params, buffers = be.sgd_step(params, uploaded, buffers, lr, momentum, weight_decay, 0.0, nesterov)
        for g, host in zip(uploaded, step_grads):
            np.testing.assert_array_equal(be.to_host(g), host)
        for k, g in enumerate(step_grads):
            rule[k], rule_buffers[k] = sgd_update(rule[k], g, rule_buffers[k], 0.1, momentum, weight_decay, 0.0,
                                                  nesterov)
    for fused, expected in zip(params, rule):
        np.testing.assert_allclose(be.to_host(fused), expected, **tolerance(dtype))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("residual,relu", [(False, True), (True, True), (True, False)])
def test_batch_norm_with_residual_and_relu_gradcheck(backend, training, residual, relu):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 3, 3))
    mean, var = anp.tensor(rng.standard_normal(2)), anp.tensor(rng.uniform(0.5, 2, 2))
    inputs = [anp.tensor(a, requires_grad=True)
              for a in (x, rng.standard_normal(2), rng.standard_normal(2), rng.standard_normal(x.shape))]

    def fn(x, w, b, r):
        return F.batch_norm(x, mean, var, w, b, training=training, residual=r if residual else None, relu=relu)

    expected = F.batch_norm(*inputs[:1], mean, var, *inputs[1:3], training=training)
    if residual:
        expected = expected + inputs[3]
    if relu:
        expected = F.relu(expected)
    np.testing.assert_allclose(fn(*inputs).numpy(), expected.numpy(), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(fn, inputs[:3] + inputs[3:] if residual else inputs[:3] + [inputs[3].detach()])


def test_batch_norm_residual_of_another_shape_is_refused(backend):
    with pytest.raises(ValueError, match=r"residual must have x's shape \(2, 3, 4, 4\), got \(2, 3, 4, 1\)"):
        F.batch_norm(anp.zeros(2, 3, 4, 4), None, None, training=True, residual=anp.zeros(2, 3, 4, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_numba_adds_large_arrays_in_parallel_exactly_as_numpy(dtype, layout, monkeypatch):
    """Autograd's sums of gradients: from kernels.PARALLEL_ADD_MIN elements of C-contiguous arrays
    the numba backend adds by its parallel kernel, bit for bit NumPy's sum; an input laid out
    otherwise (which the kernel would first copy on one core), a smaller one, or another op, by
    NumPy's own ufunc."""
    from atrousnp.backends.numba import backend as numba_backend, kernels
    be, calls, original = numba_backend.NumbaBackend(), [], kernels.add
    monkeypatch.setattr(kernels, "add", lambda *args: (calls.append(len(args[0])), original(*args))[1])
    rng = np.random.default_rng(0)
    side = int(np.sqrt(kernels.PARALLEL_ADD_MIN)) + 1
    a, b = (rng.standard_normal((side, side)).astype(dtype) for _ in range(2))
    if layout == "transposed":
        a = a.T
    total = be.zip("add", a, b)
    np.testing.assert_array_equal(total, a + b)
    kernel_calls = [side * side] if layout == "contiguous" else []
    assert total.dtype == dtype and calls == kernel_calls
    small = a[:10, :10], b[:10, :10]
    np.testing.assert_array_equal(be.zip("add", *small), small[0] + small[1])
    np.testing.assert_array_equal(be.zip("mul", a, b), a * b)
    assert calls == kernel_calls


@pytest.mark.parametrize("shape", [(4, 3, 3, 3), (1, 3, 3, 3)], ids=["weight", "one-output-channel"])
@pytest.mark.parametrize("grad_layout", ["like-the-weight", "default"])
def test_numba_sgd_updates_a_weight_stored_tap_by_tap_where_it_lies(grad_layout, shape):
    """A conv weight stored tap by tap (nn.Conv2d.lay_out_weight) stays that array, in that layout,
    through SGD with momentum, whether its gradient comes laid out as it is (the by-tap path's)
    or in NumPy's default layout, and a momentum buffer kept in the default layout (as loaded
    from a state dict) is matched to it, once; the values are the rule's, step by step. A size-1
    axis, whose stride means nothing, does not make the layouts differ."""
    from atrousnp.backends.numba.backend import NumbaBackend
    be, rng = NumbaBackend(), np.random.default_rng(0)

    def by_tap(a):
        return np.ascontiguousarray(a.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)

    start = rng.standard_normal(shape).astype(np.float32)
    param, rule, rule_buffer = by_tap(start), start.copy(), None
    buffers = [None]
    for step in range(4):
        grad = rng.standard_normal(start.shape).astype(np.float32)
        given = by_tap(grad) if grad_layout == "like-the-weight" else grad.copy()
        if step == 2:
            buffers = [np.ascontiguousarray(buffers[0])]
        kept = buffers[0]
        (updated,), buffers = be.sgd_step([param], [given], buffers, 0.1, 0.9, 1e-2, 0.0, False)
        rule, rule_buffer = sgd_update(rule, grad, rule_buffer, 0.1, 0.9, 1e-2, 0.0, False)
        assert updated is param and buffers[0].transpose(2, 3, 0, 1).flags.c_contiguous
        assert (buffers[0] is kept) == (step in (1, 3))
        np.testing.assert_array_equal(given, grad)
        np.testing.assert_allclose(param, rule, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_numba_sums_rows_in_order_exactly_as_numpy(rows):
    """The pointwise conv's weight gradient sums its per-image products with kernels.sum_rows:
    NumPy's own sum over the first axis, bit for bit (both add row after row)."""
    from atrousnp.backends.numba import kernels
    a = np.random.default_rng(rows).standard_normal((rows, 1000)).astype(np.float32)
    out = np.empty(1000, np.float32)
    kernels.sum_rows(a, out)
    np.testing.assert_array_equal(out, a.sum(axis=0))


def test_a_pointwise_convs_weight_gradient_over_the_parallel_sum_threshold_is_numpys():
    """A 1x1 conv whose per-image products hold at least kernels.PARALLEL_ADD_MIN numbers sums
    them with kernels.sum_rows; its weight gradient equals the NumPy backend's definition."""
    from atrousnp.backends.numba import kernels
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((2, 512, 2, 1)), rng.standard_normal((2, 512, 2, 1))
    w = rng.standard_normal((512, 512, 1, 1))
    assert x.shape[0] * w.shape[0] * w.shape[1] >= kernels.PARALLEL_ADD_MIN
    numba_dw = anp.backends.get_backend("numba").conv2d_backward(g, x, w, (1, 1), (0, 0), (1, 1), 1, False, True)[1]
    numpy_dw = anp.backends.get_backend("numpy").conv2d_backward(g, x, w, (1, 1), (0, 0), (1, 1), 1, False, True)[1]
    np.testing.assert_allclose(numba_dw, numpy_dw, rtol=1e-12, atol=1e-12)
