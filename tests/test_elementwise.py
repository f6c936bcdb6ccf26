"""Elementwise ops equal NumPy and torch, pass gradcheck, broadcast like NumPy and name the operands they refuse."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import atrousnp as anp
import atrousnp.functional as F
from helpers import check, random_array, seeds, t, torch_or_skip

small_shapes = array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)
broadcast_pairs = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, max_side=4)

# name: (atrousnp op, NumPy op, domain of a, domain of b)
BINARY = {
    "add": (lambda a, b: a + b, np.add, {}, {}),
    "sub": (lambda a, b: a - b, np.subtract, {}, {}),
    "mul": (lambda a, b: a * b, np.multiply, {}, {}),
    "div": (lambda a, b: a / b, np.divide, {}, dict(low=0.5, high=2.0)),
    "pow": (lambda a, b: a ** b, np.power, dict(low=0.5, high=2.0), dict(low=-2.0, high=2.0)),
}
UNARY = {
    "neg": (lambda a: -a, np.negative, {}),
    "exp": (F.exp, np.exp, {}),
    "log": (F.log, np.log, dict(low=0.2, high=3.0)),
    "sqrt": (F.sqrt, np.sqrt, dict(low=0.2, high=3.0)),
    "relu": (F.relu, lambda a: np.maximum(a, 0), dict(away_from=0.0)),
    "sigmoid": (F.sigmoid, lambda a: 1 / (1 + np.exp(-a)), {}),
    "tanh": (F.tanh, np.tanh, {}),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@given(shapes=broadcast_pairs, seed=seeds)
def test_binary_op_broadcasts_like_numpy(backend, name, shapes, seed):
    fn, np_fn, a_domain, b_domain = BINARY[name]
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    check(fn, np_fn, [random_array(rng, a_shape, **a_domain), random_array(rng, b_shape, **b_domain)])


@pytest.mark.parametrize("name", sorted(UNARY))
@given(shape=small_shapes, seed=seeds)
def test_unary_op(backend, name, shape, seed):
    fn, np_fn, domain = UNARY[name]
    check(fn, np_fn, [random_array(np.random.default_rng(seed), shape, **domain)])


def test_python_scalars_keep_the_tensor_dtype(backend):
    x = anp.tensor(np.ones(3, np.float32))
    for y in (x * 2.0, 2.0 * x, x - 1, 1 - x, x / 3, 3 / x, x ** 2, 2 ** x):
        assert y.dtype == np.float32


@given(shapes=mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), seed=seeds)
def test_where(backend, shapes, seed):
    rng = np.random.default_rng(seed)
    c_shape, a_shape, b_shape = shapes.input_shapes
    cond = rng.random(c_shape) > 0.5
    check(lambda a, b: anp.where(anp.tensor(cond), a, b), lambda a, b: np.where(cond, a, b),
          [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


def test_astype_passes_the_gradient_back_in_the_input_dtype(backend):
    # Finite differences cannot see through a float32 cast (it rounds eps away): check exactly.
    x = anp.tensor(np.array([0.5, 1.5, -2.0]), requires_grad=True)
    y = x.astype(np.float32)
    assert y.dtype == np.float32
    (y * 2).sum().backward()
    assert x.grad.dtype == np.float64
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, 2.0])


# -- PyTorch's forms ------------------------------------------------------------------------------

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


# -- bad input ------------------------------------------------------------------------------------

def test_mismatched_shapes_name_both(backend):
    a, b = anp.zeros(2, 3), anp.zeros(4)
    for op in (lambda: a + b, lambda: a - b, lambda: a * b, lambda: a / b, lambda: a ** b):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
            op()


def test_where_needs_a_boolean_condition(backend):
    with pytest.raises(TypeError, match="boolean"):
        F.where(anp.zeros(2), anp.zeros(2), anp.zeros(2))
