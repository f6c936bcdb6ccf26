"""Reductions equal NumPy over any axes, zero-size tensors included, pass gradcheck, and refuse a bad axis."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import atrousnp as anp
import atrousnp.functional as F
from helpers import check, random_array, seeds, t


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


# -- bad input ------------------------------------------------------------------------------------

def test_axis_out_of_range(backend):
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        anp.zeros(2, 3).sum(axis=2)
