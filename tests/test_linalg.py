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


def test_a_stack_of_matrices_times_one_matrix_as_np_matmul_computes_it():
    """The numba backend's shortcut and its fallback (a stack not C-contiguous) give np.matmul's
    values, shape and dtype, mixed dtypes included."""
    from atrousnp.backends.numba import NumbaBackend
    rng, numba_backend = np.random.default_rng(1), NumbaBackend()
    stack = rng.standard_normal((3, 4, 5))
    for a, b in [(stack.astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32)),
                 (stack.astype(np.float32), rng.standard_normal((5, 2))),
                 (stack.transpose(0, 2, 1), rng.standard_normal((4, 2)))]:
        got, expected = numba_backend.matmul(a, b), np.matmul(a, b)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


# -- bad input ------------------------------------------------------------------------------------

def test_matmul_mismatch_names_both_shapes(backend):
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        anp.zeros(2, 3) @ anp.zeros(4, 5)
