"""Data-parallel training over MPI (atrousnp.parallel): K ranks compute what one process computes.

Each test launches ``mpiexec -n 2`` as a subprocess with a timeout (tests/mpi_worker.py, or the
training example) and compares with one plain process. They skip where mpi4py or mpiexec is
missing (``pip install -e ".[mpi]"`` brings both; CI installs them).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp import parallel

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec") or (Path(sys.executable).parent / "mpiexec")
if not Path(MPIEXEC).exists():
    pytest.skip("no mpiexec (pip install mpich)", allow_module_level=True)

HERE = Path(__file__).parent
EXAMPLE = HERE.parent / "examples" / "train_voc_subset.py"
ONE_THREAD = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")


def mpiexec(*args, ranks=2, timeout=300):
    return subprocess.run([str(MPIEXEC), "-n", str(ranks), sys.executable, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=ONE_THREAD)


def run_worker(mode, tmp_path):
    run = mpiexec(HERE / "mpi_worker.py", mode, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]


def test_two_ranks_with_half_the_batch_each_average_to_one_process_gradients(tmp_path):
    sys.path.insert(0, str(HERE))
    from mpi_worker import small_model
    ranks = run_worker("gradients", tmp_path)
    anp.set_backend("numpy")
    model, images, labels = small_model()
    F.cross_entropy(model(anp.tensor(images)), labels).backward()
    expected = {**{n: p.grad.numpy() for n, p in model.named_parameters()}, **{n: b.numpy() for n, b in model.named_buffers()}}
    for name, value in expected.items():
        for rank in ranks:
            np.testing.assert_allclose(rank[name], value, rtol=0, atol=1e-12 * max(1.0, np.abs(value).max()),
                                       err_msg=name)


def test_sync_batch_norm_on_two_ranks_is_batch_norm_on_the_whole_batch(tmp_path):
    ranks = run_worker("sync_batch_norm", tmp_path)
    rng = np.random.default_rng(2)
    x, residual, upstream = rng.standard_normal((3, 4, 3, 5, 5)) * np.array([1, 3, 0.5]).reshape(3, 1, 1) + 1
    anp.set_backend("numpy")
    layer = anp.nn.BatchNorm2d(3, dtype=np.float64)
    layer.weight.data = rng.uniform(0.5, 2, 3)
    xt, rt = anp.tensor(x, requires_grad=True), anp.tensor(residual, requires_grad=True)
    y = layer(xt, residual=rt, relu=True)
    (y * anp.tensor(upstream)).sum().backward()
    together = {"y": y.numpy(), "dx": xt.grad.numpy(), "dresidual": rt.grad.numpy()}
    for r, rank in enumerate(ranks):
        for name, value in together.items():
            np.testing.assert_allclose(rank[name], value[2 * r:2 * r + 2], rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(rank["running_mean"], layer.running_mean.numpy(), rtol=1e-12)
        np.testing.assert_allclose(rank["running_var"], layer.running_var.numpy(), rtol=1e-12)
    # each rank's parameter gradients are its share's; allreduce_gradients averages them, so K times
    # their mean is the whole batch's
    np.testing.assert_allclose(ranks[0]["dweight"] + ranks[1]["dweight"], layer.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ranks[0]["dbias"] + ranks[1]["dbias"], layer.bias.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("backend_name", ["numpy", "numba"])
def test_sync_batch_norm_passes_gradcheck(backend_name):
    """In one process the sums go over one rank; the synchronised backward formula is what is checked."""
    with anp.use_backend(backend_name):
        rng = np.random.default_rng(3)
        inputs = [anp.tensor(rng.standard_normal(shape), requires_grad=True) for shape in ((3, 2, 4, 4), (2,), (2,))]
        assert anp.gradcheck(lambda x, w, b: parallel.sync_batch_norm(x, None, None, w, b, training=True, relu=True),
                             inputs)


def test_a_distributed_run_on_two_ranks_ends_with_one_process_weights(tmp_path):
    """20 iterations of the small DeepLabv3, float64: the same weights to 1e-9. (In float32 the two
    runs sum in different orders, so they differ by float32 rounding, about 1e-7 per step, which
    training then amplifies as it amplifies any float32 difference: after 20 iterations at lr
    0.02 the weights differ by about 1%, as much as the numpy and numba backends' do in one
    process. float64 makes those roundings 1e-16, so that only a real difference would show.)"""
    common = ["--data-dir", tmp_path / "data", "--max-images", 12, "--iterations", 20, "--eval-every", 10,
              "--checkpoint-every", 10, "--crop-size", 48, "--batch-size", 4, "--backend", "numpy",
              "--dtype", "float64", "--distributed"]
    one = subprocess.run([sys.executable, EXAMPLE, *map(str, common), "--out", tmp_path / "one"], capture_output=True,
                         text=True, timeout=600, env=ONE_THREAD)
    assert one.returncode == 0, one.stderr[-3000:]
    two = mpiexec(EXAMPLE, *common, "--out", tmp_path / "two", timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("val mIoU") == one.stdout.count("val mIoU") == 3  # 2 evaluations, 1 result: rank 0
    a, b = anp.load(tmp_path / "one" / "checkpoint.npz"), anp.load(tmp_path / "two" / "checkpoint.npz")
    assert a["iteration"] == b["iteration"] == 20
    for name, value in a["model"].items():
        np.testing.assert_allclose(b["model"][name], value, rtol=0, atol=1e-9 * max(1.0, np.abs(value).max()),
                                   err_msg=name)
    np.testing.assert_allclose(b["history"]["loss"], a["history"]["loss"], rtol=1e-9)
    assert b["history"]["val_miou"] == pytest.approx(a["history"]["val_miou"], abs=1e-9)


def test_a_rank_that_fails_ends_the_job_naming_it(tmp_path):
    run = mpiexec(HERE / "mpi_worker.py", "fail", tmp_path, timeout=120)
    assert run.returncode != 0
    assert "rank 1 of 2 failed" in run.stderr and "RuntimeError: rank 1 lost its data" in run.stderr


def test_a_batch_the_ranks_cannot_share_is_refused_at_start(tmp_path):
    run = mpiexec(EXAMPLE, "--batch-size", 5, "--distributed", "--out", tmp_path / "run", timeout=120)
    assert run.returncode != 0
    assert run.stderr.count("the global batch of 5 does not divide among 2 processes") == 1  # rank 0 says it
    assert not (tmp_path / "run").exists()


def test_an_out_folder_holding_a_run_is_refused_once(tmp_path):
    """Rank 0 checks the folder; every rank refuses, and the job prints one message, as README's
    second training command would meet its first's checkpoint."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"an earlier run")
    run = mpiexec(EXAMPLE, "--iterations", 2, "--distributed", "--out", tmp_path / "run", timeout=120)
    assert run.returncode == 1
    assert run.stderr.count("holds an earlier run: pass --resume") == 1, run.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoint.npz").read_bytes() == b"an earlier run"


def test_a_flag_argparse_refuses_is_reported_once(tmp_path):
    run = mpiexec(EXAMPLE, "--distributed", "--voc-root", tmp_path / "missing", timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("does not exist") == 1, run.stderr[-3000:]
