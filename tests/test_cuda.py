"""The cuda backend against the NumPy backend: every primitive, conv2d, the layers, a tiny
DeepLabv3, and that nothing returns to the host inside forward/backward.

Without a GPU these run in numba's CUDA simulator (conftest turns it on), which executes each
GPU thread in Python: shapes here are small on purpose.
"""

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends import numba_cuda

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")


def on_both(fn, arrays, grads=True):
    """fn on tensors of ``arrays`` on numpy and on cuda: outputs and input gradients of each."""
    results = {}
    for name in ("numpy", "cuda"):
        with anp.use_backend(name):
            tensors = [anp.tensor(a, requires_grad=grads and np.issubdtype(a.dtype, np.floating)) for a in arrays]
            out = fn(*tensors)
            assert out.backend == name
            found = [out.numpy()]
            if grads:
                projection = np.random.default_rng(7).standard_normal(out.shape).astype(out.dtype)
                (out * anp.tensor(projection)).sum().backward()
                found += [t.grad.numpy() for t in tensors if t.requires_grad]
            results[name] = found
    return results


def assert_same(fn, arrays, grads=True, tol=1e-10):
    results = on_both(fn, arrays, grads)
    for got, expected in zip(results["cuda"], results["numpy"]):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)


rng = np.random.default_rng(0)
A, B = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 1))
POSITIVE = rng.uniform(0.5, 2.0, (2, 3, 4))


@pytest.mark.parametrize("name,fn,arrays", [
    ("add", lambda a, b: a + b, (A, B)), ("sub", lambda a, b: a - b, (A, B)),
    ("mul", lambda a, b: a * b, (A, B)), ("div", lambda a, b: a / (b * b + 1), (A, B)),
    ("pow", lambda a: a ** 1.5, (POSITIVE,)), ("scalar", lambda a: 2.0 - a * 3, (A,)),
    ("exp", F.exp, (A,)), ("log", F.log, (POSITIVE,)), ("sqrt", F.sqrt, (POSITIVE,)),
    ("relu", F.relu, (A,)), ("sigmoid", F.sigmoid, (A,)), ("tanh", F.tanh, (A,)), ("neg", lambda a: -a, (A,)),
    ("where", lambda a, b: anp.where(a > 0, a, b), (A, B)),
])
def test_elementwise(name, fn, arrays):
    assert_same(fn, arrays)


@pytest.mark.parametrize("fn", [
    lambda a: a.sum(), lambda a: a.sum(axis=(0, 2), keepdims=True), lambda a: a.mean(axis=1),
    lambda a: a.max(axis=2), lambda a: a.max(),
])
def test_reductions(fn):
    assert_same(fn, (A,))


def test_argmax():
    for name in ("numpy", "cuda"):
        with anp.use_backend(name):
            np.testing.assert_array_equal(anp.tensor(A).argmax(axis=1).numpy(), A.argmax(axis=1))


@pytest.mark.parametrize("a_shape,b_shape", [((3, 5), (5, 2)), ((2, 3, 5), (5, 4)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 3))])
def test_matmul(a_shape, b_shape):
    assert_same(lambda a, b: a @ b, (rng.standard_normal(a_shape), rng.standard_normal(b_shape)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n,k,m", [(19, 21, 17), (70, 20, 66)])
def test_tiled_shared_memory_gemm_directly(dtype, n, k, m):
    """The backend uses the tiled kernel on a GPU; here it runs on sizes that cross tile edges."""
    from numba import cuda
    a, b = rng.standard_normal((2, n, k)).astype(dtype), rng.standard_normal((2, k, m)).astype(dtype)
    out = cuda.device_array((2, n, m), dtype)
    numba_cuda.gemm(cuda.to_device(a), cuda.to_device(b), out, tiled=True)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.copy_to_host(), a @ b, rtol=tol, atol=tol)


@pytest.mark.parametrize("fn", [
    lambda a: a.permute(2, 0, 1), lambda a: a.transpose(0, 2), lambda a: a.reshape(4, -1),
    lambda a: a[1:, ::-2], lambda a: a[..., 1], lambda a: a[None, 0, 1:3],
    lambda a: anp.cat([a, a * 2], dim=1), lambda a: anp.stack([a, a], dim=0), lambda a: anp.pad(a, (1, 2, 0, 1), 0.5),
])
def test_layout(fn):
    assert_same(fn, (A,))


def test_advanced_indexing_says_it_is_unsupported():
    with anp.use_backend("cuda"):
        with pytest.raises(NotImplementedError, match="cuda backend: index"):
            anp.tensor(A)[np.array([0, 1])]


@pytest.mark.parametrize("kernel,stride,padding,dilation,groups", [
    (3, 1, 2, 2, 1), (3, 2, 1, 1, 1), ((2, 3), (1, 2), (1, 0), (2, 1), 2), (1, 1, 0, 1, 1),
])
def test_conv2d_forward_and_backward(kernel, stride, padding, dilation, groups):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x, w, b = rng.standard_normal((2, 4, 6, 7)), rng.standard_normal((4, 4 // groups, kh, kw)), rng.standard_normal(4)
    assert_same(lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups), (x, w, b))


def test_conv2d_gradcheck_on_cuda():
    with anp.use_backend("cuda"):
        inputs = [anp.tensor(rng.standard_normal(s), requires_grad=True) for s in ((1, 2, 4, 4), (2, 2, 2, 2))]
        assert anp.gradcheck(lambda x, w: F.conv2d(x, w, padding=1, dilation=2), inputs)


@pytest.mark.parametrize("fn", [
    lambda x: F.batch_norm(x, None, None, training=True), lambda x: F.max_pool2d(x, 3, 2, 1),
    lambda x: F.avg_pool2d(x, 2), lambda x: F.adaptive_avg_pool2d(x, 1),
    lambda x: F.interpolate(x, (7, 5)), lambda x: F.log_softmax(x, 1),
    lambda x: F.cross_entropy(x, np.array([[[0, 1, 255, 2, 1]] * 4] * 2)),
])
def test_layers(fn):
    assert_same(fn, (rng.standard_normal((2, 3, 4, 5)),))


def tiny_deeplab():
    backbone = anp.models.ResNet(anp.models.resnet.BasicBlock, (1, 1, 1, 1), widths=(2, 2, 4, 4), stem_width=2,
                                 output_stride=16, rng=np.random.default_rng(0))
    return anp.models.DeepLabV3(backbone, num_classes=3, aspp_channels=4, rng=np.random.default_rng(1))


def test_tiny_deeplabv3_forward_and_training_step_match_numpy():
    x = rng.standard_normal((2, 3, 17, 19)).astype(np.float32)
    target = rng.integers(0, 3, (2, 17, 19))
    results = {}
    for name in ("numpy", "cuda"):
        with anp.use_backend(name):
            model = tiny_deeplab()
            optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
            for _ in range(2):
                logits = model(anp.tensor(x))
                optimizer.zero_grad()
                F.cross_entropy(logits, target).backward()
                optimizer.step()
            results[name] = (logits.numpy(), model.state_dict())
    np.testing.assert_allclose(results["cuda"][0], results["numpy"][0], rtol=1e-4, atol=1e-4)
    for key, value in results["numpy"][1].items():
        np.testing.assert_allclose(results["cuda"][1][key], value, rtol=1e-4, atol=1e-4, err_msg=key)


def test_no_host_round_trip_inside_forward_and_backward(monkeypatch):
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        x = anp.tensor(rng.standard_normal((2, 3, 17, 17)).astype(np.float32))
        backend = anp.get_backend()

        def forbidden(*args, **kwargs):
            raise AssertionError("a device array was copied to the host inside forward/backward")

        monkeypatch.setattr(type(backend), "to_host", forbidden)
        device_array_type = type(x.data)
        monkeypatch.setattr(device_array_type, "copy_to_host", forbidden)
        logits = model(x)
        (logits * logits).mean().backward()
        monkeypatch.undo()
        assert all(p.grad is not None for p in model.parameters())
        assert np.isfinite(logits.numpy()).all()


def test_without_a_gpu_or_simulator_the_error_says_how(monkeypatch):
    from numba import cuda
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        numba_cuda.CudaBackend()


def test_conv2d_on_cuda_equals_scipy_correlation():
    from test_conv import make_arrays, run_conv, scipy_conv2d
    case = dict(n=1, c=4, k=2, hw=(6, 5), kernel=(3, 2), stride=(2, 1), padding=(2, 1), dilation=(2, 3),
                groups=2, bias=True, seed=3)
    x, w, b = make_arrays(case)
    with anp.use_backend("cuda"):
        got = run_conv(case, x, w, b)
        assert got.backend == "cuda"
        np.testing.assert_allclose(got.numpy(), scipy_conv2d(case, x, w, b), rtol=1e-10, atol=1e-10)
