"""Bilinear interpolate equals its loop definition and torch, by size or scale factor; its weights are made once."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.reference import layers as ref
from helpers import assert_matches_torch, input_gradient, seeds, t, torch_or_skip

RNG = np.random.default_rng(0)


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
    assert anp.gradcheck(lambda t: F.interpolate(t, (out_h, out_w), align_corners=align_corners), [t(x, grad=True)])


def test_against_torch(backend):
    tf = torch_or_skip().nn.functional
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 7))
    assert_matches_torch(x, {
        "bilinear": (lambda t: F.interpolate(t, (17, 5)), lambda t: tf.interpolate(t, (17, 5), mode="bilinear")),
        "bilinear_ac": (lambda t: F.interpolate(t, (17, 5), align_corners=True),
                        lambda t: tf.interpolate(t, (17, 5), mode="bilinear", align_corners=True)),
    })


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
    assert_matches_torch(x, {
        f"scale {scale}, recompute {recompute}": (
            lambda a, s=scale, r=recompute: F.interpolate(a, scale_factor=s, recompute_scale_factor=r),
            lambda a, s=scale, r=recompute: torch.nn.functional.interpolate(
                a, scale_factor=s, mode="bilinear", align_corners=False, recompute_scale_factor=r))
        for scale, recompute in [(1.5, None), (0.6, None), (2.3, True), (2.3, False), ((2.0, 0.5), None)]},
        rtol=1e-12, atol=1e-14)


# -- bad input ------------------------------------------------------------------------------------

def test_interpolate_needs_exactly_one_of_size_and_scale_factor():
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(t(np.ones((1, 1, 2, 2))), size=3, scale_factor=2)
