"""Shape ops equal NumPy and pass gradcheck, image ops take an unbatched image, and bad shapes are named."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes

import atrousnp as anp
import atrousnp.functional as F
from helpers import check, random_array, seeds, t

RNG = np.random.default_rng(0)


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


# -- PyTorch's forms ------------------------------------------------------------------------------

def test_cat_skips_a_one_dimensional_empty_tensor_as_pytorch(backend):
    x = t(RNG.standard_normal((2, 3)))
    np.testing.assert_array_equal(F.cat([t(np.zeros(0)), x, t(np.zeros((0, 3)))]).numpy(), x.numpy())


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


# -- bad input ------------------------------------------------------------------------------------

def test_reshape_to_a_different_size(backend):
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*\(4, 2\)"):
        anp.zeros(2, 3).reshape(4, 2)


def test_cat_mismatch(backend):
    with pytest.raises(ValueError, match=r"\(2, 4\).*\(2, 3\)"):
        anp.cat([anp.zeros(2, 3), anp.zeros(2, 4)], dim=0)


def test_bad_pad_and_permute(backend):
    with pytest.raises(ValueError, match="pad"):
        anp.pad(anp.zeros(2), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="permutation"):
        anp.zeros(2, 3).permute(0, 0)
