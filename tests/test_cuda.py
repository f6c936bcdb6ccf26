"""What only the cuda backend has: its tiled GEMM and its two reduction kernels, called
directly; a tiny DeepLabv3 trained on cuda and on numpy to the same weights; and a training
step with no device-to-host copy.

Everything else runs on cuda through the ``backend`` fixture of the other test modules. Without
a GPU all of it runs in numba's CUDA simulator (conftest turns it on), which executes each GPU
thread in Python: shapes here are small on purpose.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends import numba_cuda

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
rng = np.random.default_rng(0)


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


@pytest.mark.parametrize("rows,cols,by_block", [(3, 1000, True), (1, 4097, True), (3, 1000, False), (1000, 3, False)])
@pytest.mark.parametrize("op", ["sum", "max"])
def test_reduction_kernels_directly(rows, cols, op, by_block):
    """A block per row (a shared-memory tree, which the simulator otherwise skips for its cost in
    barriers) and a thread per row, against NumPy in float32."""
    from numba import cuda
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    out = cuda.device_array(rows, np.float32)
    numba_cuda.reduce_rows(op, cuda.to_device(a.ravel()), cols, out, by_block)
    np.testing.assert_allclose(out.copy_to_host(), getattr(np, op)(a, axis=1), rtol=1e-5, atol=1e-4)


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


def test_a_checkpoint_resumes_training_on_cuda_bit_for_bit(tmp_path):
    """Weights, batch-norm statistics and SGD momentum go to the host and back exactly."""
    x = rng.standard_normal((2, 3, 17, 17)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 17, 17))

    def new_run():
        model = tiny_deeplab()
        return model, anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)

    def step(model, optimizer):
        optimizer.zero_grad()
        F.cross_entropy(model(anp.tensor(x)), labels).backward()
        optimizer.step()

    with anp.use_backend("cuda"):
        model, optimizer = new_run()
        step(model, optimizer)
        anp.save(tmp_path / "ck.npz", {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
        step(model, optimizer)
        resumed, resumed_optimizer = new_run()
        state = anp.load(tmp_path / "ck.npz")
        resumed.load_state_dict(state["model"])
        resumed_optimizer.load_state_dict(state["optimizer"])
        step(resumed, resumed_optimizer)
        for name, value in model.state_dict().items():
            np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_no_host_round_trip_inside_a_training_step(monkeypatch):
    """Forward, the loss on NumPy labels (as the data pipeline yields them), backward and an SGD
    step, with every device-to-host copy made to fail."""
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x = anp.tensor(rng.standard_normal((2, 3, 17, 17)).astype(np.float32))
        labels = rng.integers(0, 3, (2, 17, 17))
        labels[0, :4] = 255
        backend = anp.get_backend()

        def forbidden(*args, **kwargs):
            raise AssertionError("a device array was copied to the host inside a training step")

        monkeypatch.setattr(type(backend), "to_host", forbidden)
        monkeypatch.setattr(type(x.data), "copy_to_host", forbidden)
        for _ in range(2):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), labels)
            loss.backward()
            optimizer.step()
        monkeypatch.undo()
        assert all(p.grad is not None for p in model.parameters())
        assert np.isfinite(loss.item())


def test_without_a_gpu_or_simulator_the_error_says_how(monkeypatch):
    from numba import cuda
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        numba_cuda.CudaBackend()


def test_every_kernel_compiles_for_a_real_gpu():
    """The simulator never types a kernel; numba-cuda's compiler does, with no GPU needed. Runs
    where numba-cuda and its NVVM are installed (pip install "numba-cuda[cu12]")."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    script = Path(__file__).with_name("compile_cuda_kernels.py")
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr
