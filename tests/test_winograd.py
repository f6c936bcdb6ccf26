"""Winograd's F(2x2, 3x3) kernels compute the paper's matrix formulas (Lavin and Gray, 2016).

The numba backend's Winograd convs are compared with the NumPy oracle on random convs in
test_conv.py; these tests tie the hand-written transforms to the matrices G, B^T and A^T.
"""

import numpy as np
import pytest

from atrousnp.backends.numba import winograd
from atrousnp.backends.numpy import NumpyBackend


def test_weight_transform_is_g_g_gt():
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((2, 3, 3, 3))
    u = np.empty((16, 2, 3))
    winograd._transform_weight(weight, u)
    expected = winograd.G @ weight @ winograd.G.T                  # (2, 3, 4, 4)
    np.testing.assert_allclose(u, expected.reshape(2, 3, 16).transpose(2, 0, 1), rtol=1e-14, atol=1e-14)


def test_a_turned_kernel_permutes_the_transform():
    """G (J g J) G^T = P (G g G^T) P^T: the input gradient's turned kernels are read from the
    forward's transformed weight through TURNED, with no turned copy."""
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((2, 3, 3, 3))
    u, u_turned = np.empty((16, 2, 3)), np.empty((16, 2, 3))
    winograd._transform_weight(weight, u)
    winograd._transform_weight(np.ascontiguousarray(weight[:, :, ::-1, ::-1]), u_turned)
    np.testing.assert_allclose(u_turned, u[winograd.TURNED], rtol=1e-14, atol=1e-14)


def test_one_tile_is_at_of_u_times_v_a():
    """A 4x4 input, a 3x3 kernel, no padding: the 2x2 output is one tile,
    A^T [(G g G^T) * (B^T d B)] A, and equals the direct correlation."""
    rng = np.random.default_rng(1)
    d, g = rng.standard_normal((4, 4)), rng.standard_normal((3, 3))
    product = (winograd.G @ g @ winograd.G.T) * (winograd.B_T @ d @ winograd.B_T.T)
    tile = winograd.A_T @ product @ winograd.A_T.T
    direct = np.array([[np.sum(d[r:r + 3, q:q + 3] * g) for q in range(2)] for r in range(2)])
    np.testing.assert_allclose(tile, direct, rtol=1e-13, atol=1e-13)
    y = winograd.conv3x3(d[None, None], g[None, None], (0, 0))
    np.testing.assert_allclose(y[0, 0], tile, rtol=1e-13, atol=1e-13)


def test_planes_are_not_4_kib_apart():
    u = winograd._planes(16, 256, 256, np.float32)                   # 256 KiB planes, padded
    assert u.shape == (16, 256, 256) and u.strides[0] % 4096 != 0 and u.strides[1:] == (1024, 4)
    assert winograd._planes(16, 3, 5, np.float64).strides[0] == 15 * 8   # no padding needed


def test_weight_gradient_transforms_are_the_adjoints():
    """<T(a), b> = <a, T*(b)> for the weight transform and the output transform: the weight
    gradient's kernels are the exact transposes of the forward's, so dW is the gradient of the
    Winograd forward itself."""
    rng = np.random.default_rng(2)
    g, du = rng.standard_normal((2, 3, 3, 3)), rng.standard_normal((16, 2, 3))
    u, dg = np.empty((16, 2, 3)), np.empty((2, 3, 3, 3))
    winograd._transform_weight(g, u)
    winograd._transform_weight_grad(du, dg)
    np.testing.assert_allclose(np.sum(u * du), np.sum(g * dg), rtol=1e-13)

    m, dy = rng.standard_normal((16, 2, 2 * 3 * 2)), rng.standard_normal((2, 2, 5, 3))   # 3x2 tiles, cut
    y, dm = np.empty((2, 2, 5, 3)), np.empty((16, 2, 2 * 3 * 2))
    winograd._transform_output(m, y, 3, 2)
    winograd._transform_output_grad(dy, dm, 3, 2)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(m * dm), rtol=1e-13)


def test_input_transform_is_bt_d_b_for_every_tile():
    """Each column of v holds B^T d B for its 4x4 tile d of the zero-padded image: on maps of odd
    and even sides, with each padding the Winograd path takes (tiles cut by the right and bottom
    edges read zeros there)."""
    rng = np.random.default_rng(3)
    for (h, w), (ph, pw) in [((5, 7), (1, 1)), ((6, 4), (0, 2)), ((1, 2), (2, 1)), ((9, 8), (2, 0))]:
        x = rng.standard_normal((2, 3, h, w))
        tiles_h, tiles_w = (h + 2 * ph - 1) // 2, (w + 2 * pw - 1) // 2
        v = np.full((16, 3, 2 * tiles_h * tiles_w), np.nan)
        winograd._transform_input(x, v, ph, pw, tiles_h, tiles_w)
        padded = np.zeros((2, 3, 2 * tiles_h + 2, 2 * tiles_w + 2))
        padded[:, :, ph:ph + h, pw:pw + w] = x[:, :, :2 * tiles_h + 2 - ph, :2 * tiles_w + 2 - pw]
        for b in range(2):
            for ty in range(tiles_h):
                for tx in range(tiles_w):
                    d = padded[b, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]          # (C, 4, 4)
                    expected = (winograd.B_T @ d @ winograd.B_T.T).reshape(3, 16).T
                    np.testing.assert_allclose(v[:, :, (b * tiles_h + ty) * tiles_w + tx], expected,
                                               rtol=1e-14, atol=1e-14)


def test_a_weight_stored_tap_by_tap_is_read_and_its_gradient_written_where_it_lies():
    """A dilated conv's weight is stored tap by tap (nn/conv.py): Winograd reads it where it lies,
    and writes its gradient into an array laid out the same way, with the same values as for a
    weight in NumPy's order."""
    rng = np.random.default_rng(5)
    x, weight, grad = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 9, 8))
    by_tap = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    np.testing.assert_array_equal(winograd.conv3x3(x, by_tap, (2, 2), (2, 2)), winograd.conv3x3(x, weight, (2, 2), (2, 2)))
    dweight = winograd.conv3x3_weight_grad(grad, x, (2, 2), (2, 2), np.empty_like(by_tap))
    assert dweight.transpose(2, 3, 0, 1).flags.c_contiguous
    np.testing.assert_array_equal(dweight, winograd.conv3x3_weight_grad(grad, x, (2, 2), (2, 2)))


@pytest.mark.parametrize("rate", [1, 2, 3, 4, 5])
def test_each_output_phase_is_an_undilated_conv_on_an_input_phase(rate):
    """The phases of an axis cover every output once, and each reads the input pixels the dilated
    kernel reads: input phase position p + i - padding, for output phase position p and tap i."""
    for size in range(1, 2 * rate + 4):
        for pad in range(2 * rate + 1):
            out_size = size + 2 * pad - 2 * rate
            if out_size < 1:
                continue
            phases = winograd._axis_phases(size, out_size, pad, rate)
            covered = sorted(o for _, outs, _, _ in phases for o in range(out_size)[outs])
            assert covered == list(range(out_size))
            for ins, outs, phase_pad, count in phases:
                assert 0 <= phase_pad <= 2 and count == len(range(out_size)[outs])
                assert ins == slice(ins.start, size, rate) and 0 <= ins.start < rate
                for p, o in enumerate(range(out_size)[outs]):
                    for i in range(3):     # the input phase's pixel p + i - phase_pad is input pixel ...
                        assert o - pad + rate * i == ins.start + rate * (p + i - phase_pad)


@pytest.mark.parametrize("rates", [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (1, 3), (4, 2), (5, 1)])
def test_dilated_winograd_equals_the_numpy_backend_at_every_padding(rates):
    """Forward, input gradient and weight gradient, in float64, at every padding from 0 to twice
    the rate and on every map from the smallest that leaves an output to rate + 2 wider: tiny
    maps, empty input phases, outputs fewer than the rate."""
    rng, numpy_backend = np.random.default_rng(6), NumpyBackend()
    for pads in {(p, p) for p in range(2 * max(rates) + 1)} | {(0, 2 * rates[1]), (2 * rates[0], 1)}:
        pads = tuple(min(p, 2 * r) for p, r in zip(pads, rates))
        smallest = [max(1, 2 * r - 2 * p + 1) for r, p in zip(rates, pads)]
        for extra in range(max(rates) + 3):
            hw = (smallest[0] + extra, smallest[1] + (extra * 2) % (rates[1] + 3))
            x, w = rng.standard_normal((2, 2, *hw)), rng.standard_normal((3, 2, 3, 3))
            y = winograd.conv3x3(x, w, pads, rates)
            expected = numpy_backend.conv2d_forward(x, w, (1, 1), pads, rates, 1)
            np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
            grad = rng.standard_normal(y.shape)
            dx, dw = numpy_backend.conv2d_backward(grad, x, w, (1, 1), pads, rates, 1, True, True)
            np.testing.assert_allclose(winograd.conv3x3_input_grad(grad, w, pads, rates), dx, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(winograd.conv3x3_weight_grad(grad, x, pads, rates), dw, rtol=1e-12, atol=1e-12)


def test_the_input_gradient_refuses_padding_beyond_twice_the_rate():
    grad, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3))
    with pytest.raises(ValueError, match="exceeds twice the rate"):
        winograd.conv3x3_input_grad(grad, w, (5, 1), (2, 2))
