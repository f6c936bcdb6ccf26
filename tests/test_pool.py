"""Max, average and adaptive pooling equal their loop definitions and torch, in PyTorch's options, with gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref
from helpers import assert_matches_torch, input_gradient, seeds, t, torch_or_skip

RNG = np.random.default_rng(0)


@given(k=st.integers(1, 3), s=st.integers(1, 3), data=st.data(), seed=seeds)
def test_max_pool_equals_the_loop_definition(backend, k, s, data, seed):
    p = data.draw(st.integers(0, k // 2))
    x = np.random.default_rng(seed).standard_normal((2, 2, k + data.draw(st.integers(0, 5)), k + 3))
    y = F.max_pool2d(anp.tensor(x), k, s, p)
    np.testing.assert_array_equal(y.numpy(), ref.pool2d(x, k, s, p)[0])
    upstream = np.random.default_rng(seed + 1).standard_normal(y.shape)
    np.testing.assert_allclose(input_gradient(lambda t: F.max_pool2d(t, k, s, p), x, upstream),
                               ref.pool2d_backward(upstream, x, k, s, p), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.max_pool2d(t, k, s, p), [t(x, grad=True)])


@given(kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)), stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)), ceil_mode=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]), specials=st.sampled_from(["none", "ties", "-inf", "nan"]),
       data=st.data(), seed=seeds)
def test_numba_max_pool_in_inference_equals_the_composition(kernel, stride, dilation, ceil_mode, dtype, specials, data,
                                                             seed):
    """With no gradient needed, the numba backend pools in one pass (Backend.max_pool2d_forward);
    it equals the composition (pad with -inf, im2col, max down each column), max pooling's
    definition, value for value: with ceil_mode's overhanging windows, dilation, ties, -inf
    windows and NaN (a zero's sign and a NaN's payload are not compared: NumPy's SIMD max keeps
    the later of two equal values, the kernel the first)."""
    padding = tuple(data.draw(st.integers(0, k // 2)) for k in kernel)
    shape = (2, 3) + tuple(d * (k - 1) + 1 + data.draw(st.integers(0, 6)) for k, d in zip(kernel, dilation))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    if specials == "ties":
        x = np.round(x).astype(dtype)
    elif specials != "none":
        x[rng.random(shape) < 0.3] = -np.inf if specials == "-inf" else np.nan
    pooled = {}
    for name in ("numpy", "numba"):
        with anp.use_backend(name), anp.no_grad():
            pooled[name] = F.max_pool2d(anp.tensor(x), kernel, stride, padding, dilation, ceil_mode).numpy()
    np.testing.assert_array_equal(pooled["numba"], pooled["numpy"])
    assert pooled["numba"].dtype == dtype


def test_numba_max_pool_takes_one_pass_only_where_no_gradient_is_needed(monkeypatch):
    """The fused forward has no backward: a tensor that needs a gradient goes the composition's way."""
    backend, calls = anp.backends.get_backend("numba"), []
    fused = backend.max_pool2d_forward
    monkeypatch.setattr(type(backend), "max_pool2d_forward", lambda self, *args: calls.append(1) or fused(*args))
    x = RNG.standard_normal((1, 2, 7, 7))
    with anp.use_backend("numba"):
        F.max_pool2d(anp.tensor(x, requires_grad=True), 3, 2, 1).sum().backward()
        assert calls == []
        with anp.no_grad():
            F.max_pool2d(anp.tensor(x, requires_grad=True), 3, 2, 1)
        F.max_pool2d(anp.tensor(x), 3, 2, 1)
        assert calls == [1, 1]


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
    assert anp.gradcheck(lambda t: F.avg_pool2d(t, k, s, p), [t(x, grad=True)])


@given(h=st.integers(1, 7), w=st.integers(1, 7), out_h=st.integers(1, 4), out_w=st.integers(1, 4), seed=seeds)
def test_adaptive_avg_pool_bins(backend, h, w, out_h, out_w, seed):
    x = np.random.default_rng(seed).standard_normal((2, 2, h, w))
    bins = lambda i, size, out: slice((i * size) // out, -((-(i + 1) * size) // out))  # noqa: E731
    expected = np.array([[[[x[b, c, bins(i, h, out_h), bins(j, w, out_w)].mean() for j in range(out_w)]
                           for i in range(out_h)] for c in range(2)] for b in range(2)])
    np.testing.assert_allclose(F.adaptive_avg_pool2d(anp.tensor(x), (out_h, out_w)).numpy(), expected, rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(lambda t: F.adaptive_avg_pool2d(t, (out_h, out_w)), [t(x, grad=True)])


def test_against_torch(backend):
    tf = torch_or_skip().nn.functional
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 7))
    assert_matches_torch(x, {
        "max_pool": (lambda t: F.max_pool2d(t, 3, 2, 1), lambda t: tf.max_pool2d(t, 3, 2, 1)),
        "avg_pool": (lambda t: F.avg_pool2d(t, 3, 2, 1), lambda t: tf.avg_pool2d(t, 3, 2, 1)),
        "adaptive": (lambda t: F.adaptive_avg_pool2d(t, (4, 3)), lambda t: tf.adaptive_avg_pool2d(t, (4, 3))),
    })


# -- PyTorch's forms ------------------------------------------------------------------------------

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
    assert_matches_torch(x, {f"avg_pool2d{options}": (lambda a, o=options: F.avg_pool2d(a, *o),
                                                       lambda a, o=options: torch.nn.functional.avg_pool2d(a, *o))
                             for options in POOLS}, rtol=1e-12, atol=0)
    for kernel, stride, padding, ceil_mode, _, _ in POOLS:
        y, i = F.max_pool2d(t(x), kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)
        z, j = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride, padding, ceil_mode=ceil_mode,
                                              return_indices=True)
        np.testing.assert_array_equal(y.numpy(), z.numpy())
        np.testing.assert_array_equal(i.numpy(), j.numpy())
    y = F.adaptive_avg_pool2d(t(x), (None, 4))
    np.testing.assert_allclose(y.numpy(), torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), (None, 4)).numpy(),
                               rtol=1e-12)
