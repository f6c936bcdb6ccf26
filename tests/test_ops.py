"""Every op of the foundation: forward equals NumPy, backward passes gradcheck.

Shapes come from Hypothesis (broadcasting included); values from a seeded generator.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, mutually_broadcastable_shapes

import atrousnp as anp
import atrousnp.functional as F
from helpers import random_array

seeds = st.integers(0, 2**32 - 1)
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


def check(fn, np_fn, arrays, requires_grad=None):
    """fn on tensors equals np_fn on arrays, and fn passes gradcheck."""
    requires_grad = requires_grad or [True] * len(arrays)
    tensors = [anp.tensor(a, requires_grad=r) for a, r in zip(arrays, requires_grad)]
    np.testing.assert_allclose(fn(*tensors).numpy(), np_fn(*arrays), rtol=1e-12, atol=1e-12)
    assert anp.gradcheck(fn, tensors)


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


@pytest.mark.parametrize("reduction", ["sum", "mean", "max"])
@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=seeds, data=st.data())
def test_reductions(backend, reduction, shape, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    keepdims = data.draw(st.booleans())
    a = random_array(np.random.default_rng(seed), shape)
    check(lambda t: getattr(t, reduction)(axis=axis, keepdims=keepdims),
          lambda x: getattr(np, reduction)(x, axis=axis, keepdims=keepdims), [a])


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=5), seed=seeds, data=st.data())
def test_argmax(backend, shape, seed, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    a = random_array(np.random.default_rng(seed), shape)
    np.testing.assert_array_equal(anp.tensor(a).argmax(axis=axis).numpy(), a.argmax(axis=axis))


def test_max_shares_the_gradient_among_ties(backend):
    x = anp.tensor(np.array([1.0, 3.0, 3.0, 0.0]), requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0.5, 0.5, 0])


@given(shapes=mutually_broadcastable_shapes(signature="(n,k),(k,m)->(n,m)", max_dims=2, max_side=4),
       seed=seeds)
def test_batched_matmul(backend, shapes, seed):
    rng = np.random.default_rng(seed)
    a_shape, b_shape = shapes.input_shapes
    check(lambda a, b: a @ b, np.matmul, [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


@pytest.mark.parametrize("a_shape,b_shape", [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((4, 2, 3), (3,))])
def test_matmul_with_vectors(backend, a_shape, b_shape):
    rng = np.random.default_rng(0)
    check(lambda a, b: a @ b, np.matmul, [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


@given(shape=array_shapes(min_dims=1, max_dims=4, max_side=4), seed=seeds, data=st.data())
def test_reshape_and_permute(backend, shape, seed, data):
    a = random_array(np.random.default_rng(seed), shape)
    perm = data.draw(st.permutations(range(len(shape))))
    check(lambda t: t.reshape(-1, shape[-1]), lambda x: x.reshape(-1, shape[-1]), [a])
    check(lambda t: t.permute(*perm), lambda x: np.transpose(x, perm), [a])
    check(lambda t: t.transpose(0, -1), lambda x: np.swapaxes(x, 0, -1), [a])


INDICES = [
    (slice(1, None), 1),
    (Ellipsis, slice(None, None, -2)),
    (0,),
    (None, slice(0, 2)),
    (np.array([0, 2, 2, 1]),),           # repeated rows: their gradients add up
    (slice(None), np.array([[1, 0], [0, 0]])),
]


@pytest.mark.parametrize("index", INDICES, ids=range(len(INDICES)))
def test_indexing_and_slicing(backend, index):
    a = random_array(np.random.default_rng(1), (3, 4, 2))
    check(lambda t: t[index], lambda x: x[index], [a])


def test_boolean_mask_indexing(backend):
    a = random_array(np.random.default_rng(2), (3, 4))
    mask = a > 0
    check(lambda t: t[mask], lambda x: x[mask], [a])
    check(lambda t: t[anp.tensor(mask)], lambda x: x[mask], [a])


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds, data=st.data())
def test_cat_and_stack(backend, shape, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(0, len(shape) - 1))
    other = shape[:axis] + (data.draw(st.integers(1, 3)),) + shape[axis + 1:]
    a, b, c = rng.standard_normal(shape), rng.standard_normal(other), rng.standard_normal(shape)
    check(lambda x, y: anp.cat([x, y], dim=axis), lambda x, y: np.concatenate([x, y], axis), [a, b])
    check(lambda x, y: anp.stack([x, y], dim=axis), lambda x, y: np.stack([x, y], axis), [a, c])


@given(shape=array_shapes(min_dims=1, max_dims=3, max_side=4), seed=seeds,
       widths=st.lists(st.integers(0, 2), min_size=2, max_size=6))
def test_pad(backend, shape, seed, widths):
    widths = widths[:2 * len(shape)]
    widths = widths[:len(widths) // 2 * 2]
    pairs = [(0, 0)] * (len(shape) - len(widths) // 2) + [tuple(widths[i:i + 2]) for i in range(0, len(widths), 2)][::-1]
    a = random_array(np.random.default_rng(seed), shape)
    check(lambda t: anp.pad(t, widths, value=0.5), lambda x: np.pad(x, pairs, constant_values=0.5), [a])


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
