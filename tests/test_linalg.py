"""matmul equals NumPy's on batches and vectors, passes gradcheck, and names both shapes it refuses."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import atrousnp as anp
from helpers import check, seeds


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


@pytest.mark.parametrize("a_shape,b_shape", [((2, 3, 5, 4), (4, 6)), ((2, 3, 0), (0, 4)), ((0, 3, 4), (4, 5)),
                                             ((2, 0, 4), (4, 5))])
def test_a_stack_of_matrices_times_one_matrix(backend, a_shape, b_shape):
    """The numba backend computes these as one GEMM of the stack's rows; empty ones included."""
    rng = np.random.default_rng(0)
    check(lambda a, b: a @ b, np.matmul, [rng.standard_normal(a_shape), rng.standard_normal(b_shape)])


# -- bad input ------------------------------------------------------------------------------------

def test_matmul_mismatch_names_both_shapes(backend):
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        anp.zeros(2, 3) @ anp.zeros(4, 5)
