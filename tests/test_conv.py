"""Atrous convolution, proven: against scipy's correlation, against the loop definition,
by finite differences, and through the adjoint identity of im2col and col2im."""

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends.primitives import conv_out_size
from atrousnp.testing import scipy_conv2d as kit_scipy_conv2d
from atrousnp.reference.conv import conv2d as reference_conv2d
from helpers import t

RNG = np.random.default_rng(0)


@st.composite
def conv_cases(draw, max_side=9, max_channels=3, winograd=False):
    """A random, valid convolution: shapes, geometry, groups and whether there is a bias.
    ``winograd``: only the convs that the numba backend can compute by Winograd (3x3, stride 1,
    rate 1 to 3, one group, padding at most twice the rate), with maps up to 14 pixels wider than
    the smallest so that tiles lie inside, on the edges and across an odd last row and column of
    every phase."""
    groups = 1 if winograd else draw(st.integers(1, 3))
    c_per_group, k_per_group = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    side, one, three = st.integers(1, 3), st.just(1), st.just(3)
    kernel = (draw(three if winograd else side), draw(three if winograd else side))
    stride = (draw(one if winograd else side), draw(one if winograd else side))
    dilation = (draw(side), draw(side))
    padding = tuple(draw(st.integers(0, 2 * rate if winograd else 3)) for rate in dilation)
    max_side = 14 if winograd else max_side
    # The smallest input that leaves one output pixel, then up to max_side more.
    hw = tuple(max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) + draw(st.integers(0, max_side))
               for a in (0, 1))
    return dict(n=draw(st.integers(1, 2)), c=c_per_group * groups, k=k_per_group * groups, hw=hw,
                kernel=kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


def make_arrays(case, dtype=np.float64):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], *case["hw"])).astype(dtype)
    w = rng.standard_normal((case["k"], case["c"] // case["groups"], *case["kernel"])).astype(dtype)
    b = rng.standard_normal(case["k"]).astype(dtype) if case["bias"] else None
    return x, w, b


def run_conv(case, x, w, b, **tensor_kw):
    t = lambda a: None if a is None else anp.tensor(a, **tensor_kw)  # noqa: E731
    return F.conv2d(t(x), t(w), t(b), stride=case["stride"], padding=case["padding"],
                    dilation=case["dilation"], groups=case["groups"])


def scipy_conv2d(case, x, w, b):
    """The kit's scipy oracle (atrousnp.testing): the zero-inserted kernel correlated with the padded input."""
    return kit_scipy_conv2d(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"])


@given(case=conv_cases())
def test_forward_equals_scipy_correlation_of_the_zero_inserted_kernel(backend, case):
    x, w, b = make_arrays(case)
    np.testing.assert_allclose(run_conv(case, x, w, b).numpy(), scipy_conv2d(case, x, w, b),
                               rtol=1e-10, atol=1e-10)


@given(case=conv_cases())
def test_forward_equals_the_loop_definition(backend, case):
    x, w, b = make_arrays(case)
    expected = reference_conv2d(x, w, b, case["stride"], case["padding"], case["dilation"], case["groups"])
    np.testing.assert_allclose(run_conv(case, x, w, b).numpy(), expected, rtol=1e-10, atol=1e-10)


@given(case=conv_cases(max_side=4, max_channels=2))
def test_gradcheck_of_input_weight_and_bias(backend, case):
    x, w, b = make_arrays(case)
    inputs = [anp.tensor(a, requires_grad=True) for a in (x, w) + ((b,) if b is not None else ())]
    fn = lambda *t: F.conv2d(*t, stride=case["stride"], padding=case["padding"],  # noqa: E731
                             dilation=case["dilation"], groups=case["groups"])
    assert anp.gradcheck(fn, inputs)


@given(case=conv_cases())
def test_dilation_one_is_the_plain_convolution(backend, case):
    case = dict(case, dilation=(1, 1))
    x, w, b = make_arrays(case)
    np.testing.assert_allclose(run_conv(case, x, w, b).numpy(), scipy_conv2d(case, x, w, b),
                               rtol=1e-10, atol=1e-10)


@given(case=conv_cases())
def test_col2im_is_the_adjoint_of_im2col(backend, case):
    """<im2col(x), c> = <x, col2im(c)> for every x and c: col2im is im2col's transpose."""
    be = anp.get_backend()
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], *case["hw"]))
    geometry = case["kernel"], case["stride"], case["padding"], case["dilation"]
    cols = be.to_host(be.im2col(be.asarray(x), *geometry))
    c = rng.standard_normal(cols.shape)
    back = be.to_host(be.col2im(be.asarray(c), x.shape, *geometry))
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("path", [{}, {"COLS_BLOCK_BYTES": 64, "MIN_BLOCK_ROWS": 1, "SPARSE_TAPS_BELOW": 0.0,
                                       "DILATED_WINOGRAD_FROM": 2.0},
                                  {"SPARSE_TAPS_BELOW": 2.0, "DILATED_WINOGRAD_FROM": 2.0}, "winograd"],
                         ids=["whole", "in-blocks", "by-tap", "winograd"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_numba_backend_equals_numpy_backend(dtype, path, data):
    """Also on numba's other paths for a non-pointwise conv: im2col in blocks of (image, channels),
    with a 64-byte budget and no minimum depth, which make every block one channel of one image (no
    conv goes tap by tap;
    Winograd keeps its own); tap by tap, with a threshold that sends every conv there; and
    Winograd, on the convs it takes.

    The paths sum the same products in different orders (in blocks, by tap, or after Winograd's
    transforms), so in float32 an entry that cancels to near zero carries a rounding error of
    the size of the array's largest values, not of its own: the float32 absolute tolerance is
    1e-5 of the array's largest magnitude. float64, at 1e-12, checks every path's algebra."""
    winograd = path == "winograd"
    case = data.draw(conv_cases(winograd=winograd))
    path = {"SPARSE_TAPS_BELOW": 0.0, "DILATED_WINOGRAD_FROM": 0.0} if winograd else path
    from atrousnp.backends.numba import conv_paths
    x, w, b = make_arrays(case, dtype)
    if winograd:
        with _patched(conv_paths, path):
            assert conv_paths.choose(x, w, case["stride"], case["padding"], case["dilation"], 1)[0] == "winograd"
    outputs = {}
    for name in ("numpy", "numba"):
        with anp.use_backend(name), _patched(conv_paths, path):
            xt, wt = anp.tensor(x, requires_grad=True), anp.tensor(w, requires_grad=True)
            y = F.conv2d(xt, wt, None if b is None else anp.tensor(b), stride=case["stride"],
                         padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
            (y * y).sum().backward()
            outputs[name] = (y.numpy(), xt.grad.numpy(), wt.grad.numpy())
            assert y.dtype == dtype and xt.grad.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, expected in zip(outputs["numba"], outputs["numpy"]):
        scale = max(1.0, float(np.abs(expected).max())) if dtype == np.float32 else 1.0
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("expected, path, dilation", [
    ("by_tap", {}, 2),
    ("blocks", {"COLS_BLOCK_BYTES": 64, "MIN_BLOCK_ROWS": 1, "SPARSE_TAPS_BELOW": 0.0, "DILATED_WINOGRAD_FROM": 2.0}, 2),
    ("winograd", {}, 1), ("winograd", {"DILATED_WINOGRAD_FROM": 0.0}, 2),
    ("im2col", {"SPARSE_TAPS_BELOW": 0.0, "DILATED_WINOGRAD_FROM": 2.0}, 2)])
@pytest.mark.parametrize("needs", ["dx", "dweight"])
def test_numba_backend_computes_one_gradient_alone_as_numpy_does(expected, path, dilation, needs):
    """When only x, or only the weight, needs a gradient, each numba path computes that one alone."""
    from atrousnp.backends.numba import conv_paths
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3))
    with _patched(conv_paths, path):
        assert conv_paths.choose(x, w, (1, 1), (dilation,) * 2, (dilation,) * 2, 1)[0] == expected
    grads = {}
    for name in ("numpy", "numba"):
        with anp.use_backend(name), _patched(conv_paths, path):
            xt, wt = anp.tensor(x, requires_grad=needs == "dx"), anp.tensor(w, requires_grad=needs == "dweight")
            (F.conv2d(xt, wt, padding=dilation, dilation=dilation) ** 2).sum().backward()
            grads[name] = (xt if needs == "dx" else wt).grad.numpy()
            assert (wt if needs == "dx" else xt).grad is None
    np.testing.assert_allclose(grads["numba"], grads["numpy"], rtol=1e-12, atol=1e-12)


@contextlib.contextmanager
def _patched(module, values):
    """``module.name = value`` for each item, for the block (monkeypatch is per test, not per
    Hypothesis example)."""
    saved = {name: getattr(module, name) for name in values}
    for name, value in values.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


@pytest.mark.parametrize("kernel,dilation", [((3, 3), (1, 1)), ((3, 3), (2, 3)), ((2, 4), (1, 2)), ((1, 1), (5, 5))])
def test_same_padding_keeps_the_size(backend, kernel, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 7, 8))
    w = rng.standard_normal((3, 2, *kernel))
    y = F.conv2d(anp.tensor(x), anp.tensor(w), padding="same", dilation=dilation)
    assert y.shape == (1, 3, 7, 8)
    # PyTorch's rule: total = d(k-1), before = total // 2, after = the rest.
    totals = [dilation[a] * (kernel[a] - 1) for a in (0, 1)]
    x_pad = np.pad(x, ((0, 0), (0, 0), (totals[0] // 2, totals[0] - totals[0] // 2),
                       (totals[1] // 2, totals[1] - totals[1] // 2)))
    np.testing.assert_allclose(y.numpy(), reference_conv2d(x_pad, w, dilation=dilation), rtol=1e-10, atol=1e-10)


def test_padding_valid_is_no_padding(backend):
    x, w = t(RNG.standard_normal((1, 2, 6, 6))), t(RNG.standard_normal((3, 2, 3, 3)))
    np.testing.assert_array_equal(F.conv2d(x, w, padding="valid").numpy(), F.conv2d(x, w, padding=0).numpy())


def test_the_output_size_formula():
    # 33 pixels, 3x3 kernel at rate 6 with padding 6: the ASPP branch keeps 33.
    assert conv_out_size(33, 3, 1, 6, 6) == 33
    assert conv_out_size(65, 3, 2, 1, 1) == 33
    assert conv_out_size(5, 3, 1, 0, 3) < 1  # the dilated kernel spans 7 > 5 pixels


def test_float32_stays_float32(backend):
    x = anp.randn(1, 2, 5, 5, rng=np.random.default_rng(0))
    w = anp.randn(3, 2, 3, 3, rng=np.random.default_rng(1))
    assert F.conv2d(x, w, padding=2, dilation=2).dtype == np.float32


# -- bad input ---------------------------------------------------------------------------

def conv_error(x_shape=(1, 4, 8, 8), w_shape=(6, 4, 3, 3), **kw):
    return F.conv2d(anp.zeros(*x_shape), anp.zeros(*w_shape), **kw)


@pytest.mark.parametrize("kw,message", [
    (dict(dilation=4), r"output would be 0x0.*span is 9x9"),
    (dict(w_shape=(6, 3, 3, 3)), r"x has 4 channels.*expects 3"),
    (dict(groups=3), r"groups=3 must divide.*\(4\).*\(6\)"),
    (dict(stride=0), r"stride must be >= 1, got 0"),
    (dict(dilation=(1, -2)), r"dilation must be >= 1"),
    (dict(padding=-1), r"padding must be >= 0"),
    (dict(padding="same", stride=2), r"'same' needs stride 1"),
    (dict(x_shape=(8, 8)), r"x must be \(N, C, H, W\) or \(C, H, W\), got shape \(8, 8\)"),  # (C, H, W) is one image
])
def test_bad_input_names_the_argument_and_sizes(backend, kw, message):
    with pytest.raises(ValueError, match=message):
        conv_error(**kw)


def test_bias_of_the_wrong_shape(backend):
    with pytest.raises(ValueError, match=r"bias must have shape \(6,\), got \(5,\)"):
        F.conv2d(anp.zeros(1, 4, 8, 8), anp.zeros(6, 4, 3, 3), anp.zeros(5))


@given(batch=st.integers(1, 3), rows=st.integers(1, 80), cols=st.integers(1, 80))
def test_the_tiled_transpose_of_the_tap_path_is_a_transpose(batch, rows, cols):
    """swap_last_axes lays a weight out per tap for the tap-by-tap path, and its gradient back, in
    32x32 tiles: sizes that are not multiples of a tile included."""
    from atrousnp.backends.numba import conv_paths
    a = np.arange(batch * rows * cols, dtype=np.float32).reshape(batch, rows, cols)
    np.testing.assert_array_equal(conv_paths.swap_last_axes(a), a.transpose(0, 2, 1))
    np.testing.assert_array_equal(conv_paths.swap_last_axes(a[0].T), a[0])      # a non-contiguous input


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_weight_stored_tap_by_tap_goes_by_tap_with_no_copy_and_the_same_numbers(dtype):
    """A weight laid out as (kh, kw, K, C) in memory (nn.Conv2d.lay_out_weight) is multiplied where
    it lies, and the by-tap path gives bit for bit what it gives for the same weight in NumPy's
    default layout; its gradient comes laid out as the weight is, which SGD then updates in place."""
    from atrousnp.backends.numba import conv_paths
    rng = np.random.default_rng(0)
    x, grad = rng.standard_normal((2, 6, 9, 8)).astype(dtype), rng.standard_normal((2, 5, 9, 8)).astype(dtype)
    weight = rng.standard_normal((5, 6, 3, 3)).astype(dtype)
    by_tap = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).transpose(2, 3, 0, 1)
    assert np.shares_memory(conv_paths.weight_taps(by_tap), by_tap)
    assert not np.shares_memory(conv_paths.weight_taps(weight), weight)
    be, geometry = anp.backends.get_backend("numba"), ((1, 1), (2, 2), (2, 2), 1)
    assert conv_paths.choose(x, weight, *geometry[:3], 1)[0] == "by_tap"
    np.testing.assert_array_equal(be.conv2d_forward(x, by_tap, *geometry), be.conv2d_forward(x, weight, *geometry))
    (dx, dw), (dx_ref, dw_ref) = (be.conv2d_backward(grad, x, w, *geometry, True, True) for w in (by_tap, weight))
    np.testing.assert_array_equal(dx, dx_ref)
    np.testing.assert_array_equal(dw, dw_ref)
    assert dw.strides == by_tap.strides and dw_ref.flags.c_contiguous


def test_the_tap_that_reads_the_whole_image_is_found_and_only_it():
    """A stride-1 conv with "same" padding has a tap that reads all of x for all of y (its center),
    which the tap-by-tap path computes as a 1x1 conv; a strided or unpadded conv has none."""
    from atrousnp.backends.numba import conv_paths

    def whole(x_hw, stride, padding, dilation, kernel=(3, 3)):
        out_hw = conv_paths.conv_out_hw((1, 1) + x_hw, kernel, stride, padding, dilation)
        windows = conv_paths.tap_windows(x_hw, kernel, stride, padding, dilation, out_hw)
        tap, others = conv_paths.whole_tap(windows, (1, 1) + x_hw, out_hw, stride)
        assert len(others) == len(windows) - (tap is not None)
        return tap
    assert whole((21, 21), (1, 1), (6, 6), (6, 6)) == (1, 1)
    assert whole((9, 8), (1, 1), (2, 3), (2, 3)) == (1, 1)
    assert whole((9, 8), (1, 1), (0, 2), (1, 2), kernel=(1, 3)) == (0, 1)
    assert whole((9, 8), (1, 1), (0, 0), (2, 2)) is None        # y is smaller than x
    assert whole((9, 8), (2, 2), (2, 2), (2, 2)) is None        # every other pixel
    assert whole((9, 8), (1, 1), (2, 1), (2, 2)) is None        # shifted by a column


@pytest.mark.parametrize("needs", ["dx", "dweight"])
def test_by_tap_strided_equals_numpy(needs):
    """The tap path at stride 2 (its windows read every other pixel, and dx's are added back
    the same way), forward and each gradient alone, against the NumPy backend."""
    from atrousnp.backends.numba import conv_paths
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 11, 10)), rng.standard_normal((4, 3, 3, 3))
    geometry = (2, 2), (3, 2), (3, 2), 1
    assert conv_paths.choose(x, w, *geometry[:3], 1)[0] == "by_tap"
    results = {}
    for name in ("numpy", "numba"):
        with anp.use_backend(name):
            xt, wt = anp.tensor(x, requires_grad=needs == "dx"), anp.tensor(w, requires_grad=needs == "dweight")
            y = F.conv2d(xt, wt, stride=geometry[0], padding=geometry[1], dilation=geometry[2])
            (y ** 2).sum().backward()
            results[name] = y.numpy(), (xt if needs == "dx" else wt).grad.numpy()
    for got, expected in zip(results["numba"], results["numpy"]):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_the_numba_backend_refuses_a_gradient_of_the_wrong_shape():
    """conv2d_backward's grad must be the forward's output shape: its kernels index it unchecked."""
    be = anp.backends.get_backend("numba")
    x, w = np.ones((2, 3, 9, 8)), np.ones((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"grad has shape \(2, 4, 2, 4\).*output shape \(2, 4, 9, 8\)"):
        be.conv2d_backward(np.ones((2, 4, 2, 4)), x, w, (1, 1), (6, 6), (6, 6), 1, True, True)


@pytest.mark.parametrize("needs_dx", [True, False])
def test_by_tap_gives_the_taps_that_read_only_padding_a_zero_weight_gradient(needs_dx):
    """At rate 6 on a 5x5 map every tap but the center reads only padding: the path computes the
    center alone, and the other eight taps' weight gradient is zero, as the NumPy backend's is."""
    from atrousnp.backends.numba import conv_paths
    rng = np.random.default_rng(0)
    x, w, grad = (rng.standard_normal(shape) for shape in ((2, 3, 5, 5), (4, 3, 3, 3), (2, 4, 5, 5)))
    geometry = (1, 1), (6, 6), (6, 6), 1
    assert conv_paths.choose(x, w, *geometry[:3], 1)[0] == "by_tap"
    expected = anp.backends.get_backend("numpy").conv2d_backward(grad, x, w, *geometry, needs_dx, True)
    got = anp.backends.get_backend("numba").conv2d_backward(grad, x, w, *geometry, needs_dx, True)
    assert np.all(got[1][:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] == 0)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-12)
    if needs_dx:
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-12, atol=1e-12)
    else:
        assert got[0] is None


def test_im2col_blocks_hold_8_mb_or_up_to_64_to_be_256_rows_deep():
    """Blocks of (image, channels) hold at most COLS_BLOCK_BYTES of im2col, unless that would
    leave a GEMM shallower than MIN_BLOCK_ROWS: then up to DEEP_BLOCK_BYTES. The stem's 7x7 conv
    on 3 channels takes each image's channels in one block (147 rows, 15 MB), not one channel
    (49 rows) a block; on a 400x400 map a 3x3 conv's block stops at 11 channels (63 MB)."""
    from atrousnp.backends.numba import conv_paths
    assert conv_paths.cols_blocks((2, 3, 321, 321), 49, 161 * 161, 4) == [(0, 0, 3), (1, 0, 3)]
    aspp = conv_paths.cols_blocks((1, 2048, 21, 21), 9, 21 * 21, 4)          # 528 channels, 8.4 MB
    assert [c1 - c0 for _, c0, c1 in aspp] == [528, 528, 528, 464]
    assert conv_paths.cols_blocks((1, 512, 65, 65), 9, 65 * 65, 4)[0] == (0, 0, 55)   # 495 rows, 8.4 MB
    assert conv_paths.cols_blocks((1, 64, 400, 400), 9, 400 * 400, 4)[0] == (0, 0, 11)  # 99 rows, 63 MB


def test_numba_takes_the_fast_path_for_each_deeplabv3_conv():
    """The shapes of DeepLabv3-ResNet-50 at output stride 16 on 321x321 images: ASPP's dilated
    convs go tap by tap (66%, 38% and 18% of their im2col is image), a bottleneck's 3x3 conv
    through Winograd, and so does a rate-2 3x3 of layer4 (88% image), by its phases, where at
    rate 4 (76%) it goes tap by tap; a 1x1 conv directly. At output stride 8 layer4's map is
    65x65: its rate-4 3x3 convs (92% image) go through Winograd and ASPP's rate-12 conv (77%)
    tap by tap. An undilated 3x3 conv goes through Winograd even on a map so small that 14% of
    its im2col is padding."""
    from atrousnp.backends.numba import conv_paths

    def path(x_shape, w_shape, rate=1):
        x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
        k = w_shape[2] // 2
        return conv_paths.choose(x, w, (1, 1), (k * rate, k * rate), (rate, rate), 1)[0]

    for rate in (6, 12, 18):
        assert path((2, 2048, 21, 21), (256, 2048, 3, 3), rate) == "by_tap"
    assert path((2, 256, 21, 21), (256, 256, 3, 3)) == "winograd"
    assert path((2, 256, 9, 9), (256, 256, 3, 3)) == "winograd"
    assert path((2, 512, 21, 21), (512, 512, 3, 3), 2) == "winograd"
    assert path((2, 512, 21, 21), (512, 512, 3, 3), 4) == "by_tap"
    assert path((1, 512, 65, 65), (512, 512, 3, 3), 4) == "winograd"       # output stride 8 on 513x513
    assert path((1, 2048, 65, 65), (256, 2048, 3, 3), 12) == "by_tap"
    assert path((2, 256, 21, 21), (1024, 256, 1, 1)) == "pointwise"


@pytest.mark.parametrize("kernel, padding", [((1, 1), (0, 0)), ((3, 3), (0, 2))], ids=["pointwise", "winograd"])
def test_numba_convs_through_openblas_batched_gemm_equal_numpy_backend(monkeypatch, kernel, padding):
    """Convs large enough for OpenBLAS's batched GEMM (backends/numba/gemm_batch.py), with every
    count of products taken (its thread count seen as one): a 1x1 conv's product per image, and
    Winograd's 16 planes, forward and both gradients (the input gradient reads the forward's
    transformed weight transposed, through TURNED), against the NumPy backend."""
    from atrousnp.backends.numba import gemm_batch
    real = gemm_batch.batched_gemm(np.float32)
    if real is None:
        pytest.skip("NumPy's BLAS has no cblas_sgemm_batch")
    calls = []

    def counted(*args):
        calls.append(args)
        return real.gemm(*args)

    monkeypatch.setattr(gemm_batch, "batched_gemm", lambda dtype: real._replace(gemm=counted, threads=lambda: 1)
                        if np.dtype(dtype) == np.float32 else None)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 96, 18, 26)).astype(np.float32)
    w = (rng.standard_normal((160, 96) + kernel) * 0.1).astype(np.float32)
    outputs = {}
    for name in ("numpy", "numba"):
        with anp.use_backend(name):
            xt, wt = anp.tensor(x, requires_grad=True), anp.tensor(w, requires_grad=True)
            y = F.conv2d(xt, wt, padding=padding)
            (y * y).sum().backward()
            outputs[name] = (y.numpy(), xt.grad.numpy(), wt.grad.numpy())
    assert len(calls) == 3                       # forward, input gradient, weight gradient
    for got, expected in zip(outputs["numba"], outputs["numpy"]):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))
