"""PyTorch's functional forms, on every backend: each against reference/ loops or NumPy, against
torch.nn.functional where torch is installed (forward and gradients, float64), and gradcheck."""

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref

RNG = np.random.default_rng(0)


def t(array, grad=False):
    return anp.tensor(np.asarray(array, np.float64), requires_grad=grad)


def torch_or_skip():
    return pytest.importorskip("torch")


# -- unbatched inputs -----------------------------------------------------------------------------

UNBATCHED = {
    "conv2d": lambda x: F.conv2d(x, t(np.arange(54.0).reshape(2, 3, 3, 3) / 50), padding=2, dilation=2),
    "max_pool2d": lambda x: F.max_pool2d(x, 3, 2, 1),
    "avg_pool2d": lambda x: F.avg_pool2d(x, 2, ceil_mode=True),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (2, None)),
    "interpolate": lambda x: F.interpolate(x, scale_factor=1.5),
}


@pytest.mark.parametrize("op", UNBATCHED)
def test_an_unbatched_image_is_a_batch_of_one(backend, op):
    x = RNG.standard_normal((3, 7, 7))
    unbatched, batched = UNBATCHED[op](t(x)), UNBATCHED[op](t(x[None]))
    assert unbatched.shape == batched.shape[1:]
    np.testing.assert_allclose(unbatched.numpy(), batched.numpy()[0], rtol=1e-12)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5)])
def test_batch_norm_takes_n_c_and_n_c_l(backend, shape):
    x = RNG.standard_normal(shape)
    axes = (0,) + tuple(range(2, len(shape)))
    expected = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    y = F.batch_norm(t(x), None, None, training=True)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-10, atol=1e-12)
    assert anp.gradcheck(lambda a: F.batch_norm(a, None, None, training=True), [t(x, grad=True)])


def test_padding_valid_is_no_padding(backend):
    x, w = t(RNG.standard_normal((1, 2, 6, 6))), t(RNG.standard_normal((3, 2, 3, 3)))
    np.testing.assert_array_equal(F.conv2d(x, w, padding="valid").numpy(), F.conv2d(x, w, padding=0).numpy())


# -- pooling --------------------------------------------------------------------------------------

POOLS = [  # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    (3, 2, 0, True, True, None), (3, 2, 1, True, True, None), (3, 2, 1, True, False, None),
    (2, 2, 1, False, False, None), (3, 3, 1, True, True, 5), (2, 3, 0, True, True, None),
]


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode,count_include_pad,divisor", POOLS)
def test_avg_pool2d_options_match_pytorchs_definition(backend, kernel, stride, padding, ceil_mode, count_include_pad,
                                                      divisor):
    x = RNG.standard_normal((2, 2, 8, 9))
    expected, _ = ref.pool2d(x, kernel, stride, padding, ceil_mode, "avg", count_include_pad, divisor)
    pool = lambda a: F.avg_pool2d(a, kernel, stride, padding, ceil_mode, count_include_pad, divisor)  # noqa: E731
    np.testing.assert_allclose(pool(t(x)).numpy(), expected, rtol=1e-12)
    assert anp.gradcheck(pool, [t(x[:1, :1], grad=True)])


@pytest.mark.parametrize("kernel,stride,padding,ceil_mode", [(3, 2, 0, True), (3, 2, 1, True), (2, 2, 0, False)])
def test_max_pool2d_ceil_mode_and_indices_match_pytorchs_definition(backend, kernel, stride, padding, ceil_mode):
    x = RNG.integers(0, 4, (2, 2, 8, 9)).astype(np.float64)  # ties: the first maximum's index
    expected, expected_indices = ref.pool2d(x, kernel, stride, padding, ceil_mode, "max")
    y, indices = F.max_pool2d(t(x), kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
    np.testing.assert_array_equal(y.numpy(), expected)
    np.testing.assert_array_equal(indices.numpy(), expected_indices)
    unique = RNG.permutation(2 * 9 * 9).reshape(2, 1, 9, 9) / 7.0  # no ties: gradcheck's differences are exact
    assert anp.gradcheck(lambda a: F.max_pool2d(a, kernel, stride, padding, ceil_mode=ceil_mode),
                         [t(unique, grad=True)])


def test_pooling_matches_torch():
    torch = torch_or_skip()
    x = RNG.standard_normal((2, 3, 9, 10))
    for kernel, stride, padding, ceil_mode, include, divisor in POOLS:
        ours, theirs = t(x, grad=True), torch.tensor(x, requires_grad=True)
        y = F.avg_pool2d(ours, kernel, stride, padding, ceil_mode, include, divisor)
        z = torch.nn.functional.avg_pool2d(theirs, kernel, stride, padding, ceil_mode, include, divisor)
        np.testing.assert_allclose(y.numpy(), z.detach().numpy(), rtol=1e-12)
        y.sum().backward(), z.sum().backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12)
        y, i = F.max_pool2d(t(x), kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        z, j = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, padding, ceil_mode=ceil_mode,
                                              return_indices=True)
        np.testing.assert_array_equal(y.numpy(), z.numpy())
        np.testing.assert_array_equal(i.numpy(), j.numpy())
    y = F.adaptive_avg_pool2d(t(x), (None, 4))
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), (None, 4)).numpy(),
                               rtol=1e-12)


# -- interpolate by a scale factor -----------------------------------------------------------------

@pytest.mark.parametrize("scale,recompute", [(1.5, None), (0.6, None), (2.3, True), ((2, 0.5), False)])
def test_interpolate_by_scale_factor(backend, scale, recompute):
    x = RNG.standard_normal((1, 2, 7, 6))
    y = F.interpolate(t(x), scale_factor=scale, recompute_scale_factor=recompute)
    scales = scale if isinstance(scale, tuple) else (scale, scale)
    out = tuple(int(np.floor(n * s)) for n, s in zip((7, 6), scales))
    assert y.shape == (1, 2) + out
    if recompute:  # the sizes alone decide the sampling, as with size=
        np.testing.assert_allclose(y.numpy(), ref.bilinear(x, *out, align_corners=False), rtol=1e-12, atol=1e-14)
    assert anp.gradcheck(lambda a: F.interpolate(a, scale_factor=scale, recompute_scale_factor=recompute),
                         [t(x, grad=True)])


def test_interpolate_by_scale_factor_matches_torch():
    torch = torch_or_skip()
    x = RNG.standard_normal((1, 2, 7, 6))
    for scale, recompute in [(1.5, None), (0.6, None), (2.3, True), (2.3, False), ((2.0, 0.5), None)]:
        y = F.interpolate(t(x), scale_factor=scale, recompute_scale_factor=recompute)
        z = torch.nn.functional.interpolate(torch.tensor(x), scale_factor=scale, mode="bilinear",
                                            align_corners=False, recompute_scale_factor=recompute)
        np.testing.assert_allclose(y.numpy(), z.numpy(), rtol=1e-12, atol=1e-14)


def test_interpolate_needs_exactly_one_of_size_and_scale_factor():
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(t(np.ones((1, 1, 2, 2))), size=3, scale_factor=2)


# -- cross_entropy --------------------------------------------------------------------------------

CROSS_ENTROPY = [  # logits shape, reduction, label_smoothing, weighted, probability targets
    ((3, 4), "none", 0.0, False, False), ((2, 4, 5), "sum", 0.1, True, False),
    ((2, 4, 3, 2, 2), "mean", 0.2, True, False), ((2, 4, 3, 3), "none", 0.1, True, False),
    ((2, 4, 3), "mean", 0.0, False, True), ((2, 4, 3, 2), "sum", 0.3, True, True),
]


def cross_entropy_case(shape, probabilities):
    logits = RNG.standard_normal(shape)
    if probabilities:
        target = RNG.dirichlet(np.ones(shape[1]), (shape[0],) + shape[2:])
        return logits, np.moveaxis(target, -1, 1)
    labels = RNG.integers(0, shape[1], (shape[0],) + shape[2:])
    labels.flat[::4] = 255
    return logits, labels


@pytest.mark.parametrize("shape,reduction,smoothing,weighted,probabilities", CROSS_ENTROPY)
def test_cross_entropy_forms_match_pytorchs_definition(backend, shape, reduction, smoothing, weighted, probabilities):
    logits, target = cross_entropy_case(shape, probabilities)
    weight = RNG.uniform(0.5, 2, shape[1]) if weighted else None
    loss = lambda a: F.cross_entropy(a, target, weight=weight, reduction=reduction,  # noqa: E731
                                     label_smoothing=smoothing)
    expected = ref.cross_entropy(logits, target, 255, weight, reduction, smoothing)
    np.testing.assert_allclose(loss(t(logits)).numpy(), expected, rtol=1e-10)
    assert anp.gradcheck(loss, [t(logits, grad=True)])


def test_cross_entropy_forms_match_torch():
    torch = torch_or_skip()
    for shape, reduction, smoothing, weighted, probabilities in CROSS_ENTROPY:
        logits, target = cross_entropy_case(shape, probabilities)
        weight = RNG.uniform(0.5, 2, shape[1]) if weighted else None
        ours, theirs = t(logits, grad=True), torch.tensor(logits, requires_grad=True)
        y = F.cross_entropy(ours, target, weight=weight, reduction=reduction, label_smoothing=smoothing)
        z = torch.nn.functional.cross_entropy(theirs, torch.tensor(target), None if weight is None else
                                              torch.tensor(weight), ignore_index=-100 if probabilities else 255,
                                              reduction=reduction,
                                              label_smoothing=smoothing)
        np.testing.assert_allclose(y.numpy(), z.detach().numpy(), rtol=1e-10)
        (y * anp.tensor(np.ones(y.shape))).sum().backward()
        (z * torch.ones(z.shape, dtype=z.dtype)).sum().backward()
        np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-9, atol=1e-14)


# -- zero-size tensors ----------------------------------------------------------------------------

@pytest.mark.parametrize("op", ["sum", "mean", "max", "argmax", "softmax", "log_softmax"])
def test_zero_size_tensors_reduce_as_numpy_does(backend, op):
    empty = t(np.zeros((0, 3)), grad=op != "argmax")
    run = {"sum": lambda a, axis: a.sum(axis=axis), "mean": lambda a, axis: a.mean(axis=axis),
           "max": lambda a, axis: a.max(axis=axis), "argmax": lambda a, axis: a.argmax(axis=axis),
           "softmax": lambda a, axis: F.softmax(a, dim=axis), "log_softmax": lambda a, axis: F.log_softmax(a, dim=axis)}[op]
    along_rows = run(empty, 1)  # a non-empty axis of an empty tensor: an empty result
    assert along_rows.numel() == 0
    if op in ("sum", "mean"):  # over the empty axis: the identity 0, and 0/0 = nan for mean
        expected = {"sum": np.zeros(3), "mean": np.full(3, np.nan)}[op]
        np.testing.assert_array_equal(run(empty, 0).numpy(), expected)
        run(empty, 0).sum().backward() if op == "sum" else None
    elif op in ("max", "argmax"):
        with pytest.raises(ValueError, match=f"{op}: cannot reduce axis 0 of a tensor of shape \\(0, 3\\): it is empty"):
            run(empty, 0)
    else:
        assert run(empty, 0).shape == (0, 3)
        run(empty, 1).sum().backward()
        assert empty.grad.shape == (0, 3)


# -- elementwise ----------------------------------------------------------------------------------

def test_alpha_rounding_mode_maximum_and_minimum(backend):
    a, b = np.array([1.0, 2.0, 3.0, -7.5, 4.0]), np.array([2.0, 2.0, 1.0, 2.0, -3.0])
    np.testing.assert_array_equal(F.add(t(a), t(b), alpha=2).numpy(), a + 2 * b)
    np.testing.assert_array_equal(F.sub(t(a), t(b), alpha=0.5).numpy(), a - 0.5 * b)
    np.testing.assert_array_equal(F.div(t(a), t(b), rounding_mode="floor").numpy(), np.floor(a / b))
    np.testing.assert_array_equal(F.div(t(a), t(b), rounding_mode="trunc").numpy(), np.trunc(a / b))
    ta, tb = t(a, grad=True), t(b, grad=True)
    F.div(ta, tb, rounding_mode="floor").sum().backward()
    assert not ta.grad.numpy().any() and not tb.grad.numpy().any()  # piecewise constant: gradient 0
    ta, tb = t(a, grad=True), t(b, grad=True)
    (F.maximum(ta, tb) + 2 * F.minimum(ta, tb)).sum().backward()
    np.testing.assert_array_equal(F.maximum(t(a), t(b)).numpy(), np.maximum(a, b))
    np.testing.assert_array_equal(ta.grad.numpy(), [2, 1.5, 1, 2, 1])  # a tie shares its gradient equally
    np.testing.assert_array_equal(tb.grad.numpy(), [1, 1.5, 2, 1, 2])
    with pytest.raises(ValueError, match="rounding_mode must be None, 'trunc' or 'floor'"):
        F.div(t(a), t(b), rounding_mode="round")


def test_elementwise_forms_match_torch():
    torch = torch_or_skip()
    a, b = np.array([1.0, 2.0, 3.0, -7.5, 4.0]), np.array([2.0, 2.0, 1.0, 2.0, -3.0])
    ours, theirs = [t(v, grad=True) for v in (a, b)], [torch.tensor(v, requires_grad=True) for v in (a, b)]
    (F.maximum(*ours) * 3 + F.minimum(*ours)).sum().backward()
    (torch.maximum(*theirs) * 3 + torch.minimum(*theirs)).sum().backward()
    for mine, yours in zip(ours, theirs):
        np.testing.assert_array_equal(mine.grad.numpy(), yours.grad.numpy())
    for mode in ("floor", "trunc"):
        np.testing.assert_array_equal(F.div(t(a), t(b), rounding_mode=mode).numpy(),
                                      torch.div(torch.tensor(a), torch.tensor(b), rounding_mode=mode).numpy())


def test_cat_skips_a_one_dimensional_empty_tensor_as_pytorch(backend):
    x = t(RNG.standard_normal((2, 3)))
    np.testing.assert_array_equal(F.cat([t(np.zeros(0)), x, t(np.zeros((0, 3)))]).numpy(), x.numpy())
