"""What only the cuda backend has: its tiled GEMM and its reduction kernels, called directly; its
caching allocator and counters; a tiny DeepLabv3 trained on cuda and on numpy to the same
weights; a training step with no device-to-host copy, and one within its launch budget.

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
from hypothesis import given, settings, strategies as st

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends.cuda import gemm, memory, reduce
from atrousnp.backends.cuda.launch import SIMULATED

pytestmark = pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning")
rng = np.random.default_rng(0)


def _edges(size):
    """Sizes on both sides of one and two tile edges."""
    return sorted({1, size - 1, size, size + 1, 2 * size - 1, 2 * size + 1})


def _check_gemm(n, k, m, dtype, a_transposed, b_transposed, sum_batches, **options):
    """gemm() on two batch entries, each operand stored row-major or transposed, against NumPy."""
    from numba import cuda
    rng = np.random.default_rng([n, k, m])
    a, b = rng.standard_normal((2, n, k)).astype(dtype), rng.standard_normal((2, k, m)).astype(dtype)
    stored_a = a.transpose(0, 2, 1) if a_transposed else a
    stored_b = b.transpose(0, 2, 1) if b_transposed else b
    a_op = gemm.Operand(cuda.to_device(stored_a.ravel()), 0, n * k, *((1, n) if a_transposed else (k, 1)))
    b_op = gemm.Operand(cuda.to_device(stored_b.ravel()), 0, k * m, *((1, k) if b_transposed else (m, 1)))
    out = cuda.device_array(2 * n * m, dtype)
    gemm.gemm(a_op, b_op, gemm.Operand(out, 0, 0 if sum_batches else n * m, m, 1), n, k, m, 2,
              anp.get_backend("cuda").empty, sum_batches=sum_batches, **options)
    got = out.copy_to_host()[:n * m].reshape(n, m) if sum_batches else out.copy_to_host().reshape(2, n, m)
    expected = (a @ b).sum(axis=0) if sum_batches else a @ b
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol * max(1, np.abs(expected).max()))


TILE = gemm.SIMULATOR_TILE if SIMULATED else gemm.GPU_TILE
COOPERATING = 4 if SIMULATED else 64   # threads per block in the block-reduction tests: whole warps on a GPU


@settings(max_examples=40 if SIMULATED else 200)
@given(n=st.sampled_from(_edges(TILE.rows)), k=st.sampled_from([0] + _edges(TILE.depth) + [9 * TILE.depth + 1]),
       m=st.sampled_from(_edges(TILE.cols)), dtype=st.sampled_from([np.float32, np.float64]),
       a_transposed=st.booleans(), b_transposed=st.booleans(), sum_batches=st.booleans(),
       splits=st.integers(1, 3))
def test_tiled_gemm_on_every_tile_edge(n, k, m, dtype, a_transposed, b_transposed, sum_batches, splits):
    """The tiled kernel (in the simulator on its small tile, the same code) on sizes on both sides
    of the tile's edges, with either operand transposed (so each load mapping runs), the sum over
    the batch that a weight gradient takes, and k split between 1 to 3 blocks per tile."""
    _check_gemm(n, k, m, dtype, a_transposed, b_transposed, sum_batches, tiled=True, tile=TILE, splits=splits)


@pytest.mark.parametrize("tile,n,k,m,a_transposed,b_transposed", [
    (gemm.GPU_TILE, 129, 9, 130, False, True), (gemm.GPU_TILE, 2, 17, 129, True, False),
    (gemm.FEW_ROWS_TILE, 21, 17, 130, False, True), (gemm.FEW_COLS_TILE, 130, 9, 1, True, False)])
def test_tiled_gemm_on_the_gpu_tiles(tile, n, k, m, a_transposed, b_transposed):
    """The GPU's own tiles (128x128x8 with 256 threads; 32x128 and 128x32 with 128 for skinny
    products) across their edges, with either operand transposed (seconds in the simulator)."""
    _check_gemm(n, k, m, np.float32, a_transposed, b_transposed, False, tiled=True, tile=tile)


@pytest.mark.parametrize("n,m,expected", [(256, 4096, gemm.GPU_TILE), (21, 4225, gemm.FEW_ROWS_TILE),
                                          (256, 1, gemm.FEW_COLS_TILE), (2048, 32, gemm.FEW_COLS_TILE),
                                          (33, 33, gemm.GPU_TILE)])
def test_skinny_products_get_narrow_tiles(n, m, expected):
    """The classifier (21 classes) and the image pooling's 1x1 conv (1 pixel) are not run in
    128x128 tiles."""
    assert gemm.tile_for(n, m) == expected


def test_a_gemm_beyond_grid_y_and_z_is_launched_in_chunks(monkeypatch):
    """Tile rows and batch entries x splits past grid y's and z's limit (65,535 on a GPU: a batched
    matmul of N x 2048 pooled channels at N = 32) go in several launches, each within the
    limits. The limits are made small here, so that the simulator can run it."""
    from atrousnp.backends.cuda import launch
    monkeypatch.setattr(gemm, "MAX_GRID", (2 ** 31 - 1, 2, 3))
    monkeypatch.setattr(launch, "MAX_GRID", (2 ** 31 - 1, 2, 3))
    grids = []
    real = gemm.configured
    monkeypatch.setattr(gemm, "configured", lambda kernel, grid, *rest: grids.append(grid) or real(kernel, grid, *rest))
    _check_gemm(3 * TILE.rows + 1, 5, TILE.cols, np.float32, False, False, False, tiled=True, tile=TILE, splits=2)
    assert grids == [(1, 2, 3), (1, 2, 1), (1, 2, 3), (1, 2, 1)], grids      # 4 tile rows, 2 batches x 2 splits


@pytest.mark.parametrize("grid,block,shared,problem", [
    ((1, 65536, 1), 128, 0, "grid y of 65536 > 65535"), ((1, 1, 65536), 128, 0, "grid z of 65536 > 65535"),
    (2 ** 31, 128, 0, "grid x of 2147483648"), (1, 1025, 0, "block x of 1025"), (1, (32, 33), 0, "1056 threads"),
    (1, (1, 1, 65), 0, "block z of 65"), (1, 128, 48 * 1024 + 1, "49153 bytes of static shared memory"),
    (0, 128, 0, "an empty grid"), ((4, 0), 128, 0, "an empty grid")])
def test_a_launch_a_gpu_would_refuse_is_refused_everywhere(grid, block, shared, problem):
    from atrousnp.backends.cuda import elementwise, launch
    with pytest.raises(ValueError, match=f"fill_kernel .*{problem}"):
        launch.configured(elementwise.fill_kernel, grid, block, shared)
    launch.check_geometry("fill_kernel", (2 ** 31 - 1, 65535, 65535), (32, 32, 1), 48 * 1024)    # the limits pass


def test_work_with_no_items_launches_nothing():
    from atrousnp.backends.cuda import launch
    before = anp.cuda.counters()
    with anp.use_backend("cuda"):
        launch.launch(launch.configured, 0)()
        launch.launch_per_row(launch.configured, 0)()
    assert anp.cuda.counters(since=before)["launches"] == 0


@pytest.mark.parametrize("sum_batches", [False, True])
def test_simple_gemm_kernel(sum_batches):
    """The simulator's barrier-free GEMM, which its backend uses, on a transposed b."""
    _check_gemm(7, 5, 6, np.float64, False, True, sum_batches, tiled=False)


@pytest.mark.parametrize("tiles,steps,sms,expected", [(132, 100, 132, 1), (5, 1000, 132, 27), (5, 20, 132, 2),
                                                      (5, 7, 132, 1), (1, 10_000, 132, 132)])
def test_split_k_fills_the_gpu_with_shares_of_at_least_eight_steps(tiles, steps, sms, expected):
    assert gemm.split_count(tiles, steps, sms) == expected


@pytest.mark.parametrize("rows,cols,by_block,parts", [(3, 1000, True, None), (1, 4097, True, 5), (2, 3, True, 5),
                                                   (3, 1000, False, None), (1000, 3, False, None)])
@pytest.mark.parametrize("op", ["sum", "max"])
def test_reduction_kernels_directly(rows, cols, op, by_block, parts):
    """Parts of rows folded by blocks of COOPERATING threads (the block reduction, which the
    simulator's own launches skip for its cost in barriers), with parts that do not divide a row
    and more parts than a row has values, then added in order; and a thread per row. Against
    NumPy in float32."""
    from numba import cuda
    a = rng.standard_normal((rows, cols)).astype(np.float32)
    out = cuda.device_array(rows, np.float32)
    reduce.reduce_rows(op, cuda.to_device(a.ravel()), cols, out, by_block, anp.get_backend("cuda").empty,
                       parts=parts, threads=COOPERATING)
    np.testing.assert_allclose(out.copy_to_host(), getattr(np, op)(a, axis=1), rtol=1e-5, atol=1e-4)


def test_rows_are_cut_into_parts_for_two_blocks_per_sm(monkeypatch):
    monkeypatch.setattr(reduce, "multiprocessors", lambda: 132)
    assert reduce.row_parts(64, 2 * 161 * 161) == 5          # a 64-channel batch norm: 320 blocks
    assert reduce.row_parts(2048, 2 * 21 * 21) == 1
    assert reduce.row_parts(1, 3 * reduce.MIN_PART) == 3     # no part shorter than MIN_PART


@pytest.mark.parametrize("parts", [1, 3])
def test_batch_norm_per_channel_kernels_with_cooperating_threads(parts):
    """Batch-norm statistics and backward with COOPERATING threads per block combining their sums,
    as on a GPU (the simulator's own launches give a block one thread), over 1 and 3 parts of
    each channel."""
    from numba import cuda
    from atrousnp.backends.cuda import batch_norm, launch
    from atrousnp.backends.numpy import NumpyBackend
    n, c, length = 2, 3, 7
    x, grad, out = (rng.standard_normal((n, c, length)) for _ in range(3))
    x += 100                                                   # the shifted sums keep the variance's digits
    weight, var = rng.standard_normal(c), rng.uniform(0.5, 2, c)
    x_dev, partials = cuda.to_device(x.ravel()), anp.get_backend("cuda").empty((2, c * parts), np.float64)
    mean_dev, var_dev = cuda.device_array(c), cuda.device_array(c)
    launch.launch_per_row(batch_norm.bn_partial_stats_kernel, c * parts, threads=COOPERATING)(
        x_dev, c, length, parts, partials)
    launch.launch(batch_norm.bn_finish_stats_kernel, c)(x_dev, length, parts, partials, mean_dev, var_dev)
    np.testing.assert_allclose(mean_dev.copy_to_host(), x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var_dev.copy_to_host(), x.var(axis=(0, 2)), rtol=1e-12)
    mean = x.mean(axis=(0, 2))
    dx, dweight, dbias, terms = cuda.device_array(x.size), cuda.device_array(c), cuda.device_array(c), \
        cuda.device_array((3, c))
    grad_dev, out_dev, mean_dev, var_dev, weight_dev = (cuda.to_device(a.ravel())
                                                        for a in (grad, out, mean, var, weight))
    launch.launch_per_row(batch_norm.bn_backward_sums_kernel, c * parts, threads=COOPERATING)(
        grad_dev, x_dev, out_dev, mean_dev, var_dev, 1e-5, c, length, parts, partials)
    launch.launch(batch_norm.bn_backward_finish_kernel, c)(mean_dev, var_dev, weight_dev, 1e-5, True, n * length, parts,
                                                      partials, terms, dweight, dbias)
    launch.launch(batch_norm.bn_backward_kernel, x.size)(grad_dev, x_dev, out_dev, c, length, terms, dx)
    expected = NumpyBackend().batch_norm_backward(grad, x, mean, var, weight, 1e-5, True, out)
    for got, want in zip((dx.copy_to_host().reshape(x.shape), dweight.copy_to_host(), dbias.copy_to_host()), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_tiny_deeplabv3_forward_and_training_step_match_numpy(tiny_deeplab):
    """In float64: two SGD steps at lr 0.1 through batch norms over a few values amplify float32's
    rounding, in whichever order a backend sums, to 1e-4..3e-3 on some inputs (numba's backend
    too), while float64 agrees to 1e-11. So float64, and a tolerance that a wrong kernel cannot meet."""
    x = rng.standard_normal((2, 3, 17, 19))
    target = rng.integers(0, 3, (2, 17, 19))
    results = {}
    for name in ("numpy", "cuda"):
        with anp.use_backend(name):
            model = tiny_deeplab().astype(np.float64)
            optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
            for _ in range(2):
                logits = model(anp.tensor(x))
                optimizer.zero_grad()
                F.cross_entropy(logits, target).backward()
                optimizer.step()
            results[name] = (logits.numpy(), model.state_dict())
    np.testing.assert_allclose(results["cuda"][0], results["numpy"][0], rtol=1e-9, atol=1e-9)
    for key, value in results["numpy"][1].items():
        np.testing.assert_allclose(results["cuda"][1][key], value, rtol=1e-9, atol=1e-9, err_msg=key)


def test_a_checkpoint_resumes_training_on_cuda_bit_for_bit(tmp_path, tiny_deeplab):
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


def test_no_host_round_trip_inside_a_training_step(monkeypatch, tiny_deeplab):
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


def test_a_training_step_after_warm_up_makes_no_device_malloc_and_few_launches(tiny_deeplab):
    """The counters on a small DeepLabv3. Two warm-up steps: the first one's optimiser step creates
    the momentum buffers, which then hold blocks that the second step's forward pass needs again;
    from then on every allocation finds a cached block. The launch budget per conv counts its
    batch norm's two launches each way (parts of each channel's sums, then the kernel that
    finishes them: so that the sums of a few channels still fill the GPU)."""
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
        x = rng.standard_normal((2, 3, 17, 19)).astype(np.float32)
        labels = rng.integers(0, 3, (2, 17, 19))

        def step():
            optimizer.zero_grad()
            F.cross_entropy(model(anp.tensor(x)), labels).backward()
            optimizer.step()

        step()
        step()
        before = anp.cuda.counters()
        step()
        cost = anp.cuda.counters(since=before)
    convs = sum(isinstance(m, anp.nn.Conv2d) for m in model.modules())
    assert cost["device_mallocs"] == 0, cost
    assert cost["launches"] <= 14 * convs + 50, f"{cost['launches']} launches for {convs} Conv2d modules: {cost}"
    # two uploads, the images and the NumPy labels: resize and pooling weights are made on the
    # device once and kept
    assert cost["host_to_device"] == 2 and cost["device_to_host"] == 0, cost


def test_the_pool_reuses_freed_blocks_and_empty_cache_returns_them():
    with anp.use_backend("cuda"):
        anp.cuda.empty_cache()
        start = anp.cuda.memory_stats()
        a = anp.zeros(1000, 3)
        grown = anp.cuda.memory_stats()
        assert grown["device_mallocs"] == start["device_mallocs"] + 1
        assert grown["allocated_bytes"] - start["allocated_bytes"] >= 12000
        del a
        b = anp.zeros(1000, 3)                                   # the same size: the freed block again
        assert anp.cuda.memory_stats()["device_mallocs"] == grown["device_mallocs"]
        view = b.data.reshape((3000,))
        del b                                                    # a view keeps the block in use
        assert anp.cuda.memory_stats()["allocated_bytes"] == grown["allocated_bytes"]
        del view
        anp.cuda.empty_cache()
        stats = anp.cuda.memory_stats()
        assert stats["reserved_bytes"] == stats["allocated_bytes"] and stats["device_frees"] > start["device_frees"]


@pytest.mark.parametrize("nbytes,expected", [(0, 512), (1, 512), (513, 1024), (1 << 20, 1 << 20),
                                             ((1 << 20) + 1, (1 << 20) + (1 << 17)), (3 << 20, 3 << 20)])
def test_block_sizes_round_up_by_at_most_an_eighth(nbytes, expected):
    assert memory.rounded_size(nbytes) == expected


def test_the_pool_bookkeeping_without_a_device():
    pool = memory.CachingPool(bytearray)
    block, give_back = pool.take(1000)
    assert (len(block), pool.stats()["allocated_bytes"], pool.stats()["device_mallocs"]) == (1024, 1024, 1)
    give_back()
    assert pool.take(900)[0] is block and pool.stats()["device_mallocs"] == 1
    assert pool.stats()["peak_allocated_bytes"] == 1024


def test_a_private_pool_keeps_its_blocks_until_released():
    """A graph's blocks serve only the graph while it lives (its replays write them)."""
    pool = memory.CachingPool(bytearray)
    in_use = pool.take(4000)                          # more in use than cached: the cache is kept when the pool grows
    shared, give_shared = pool.take(1000)
    give_shared()
    private = memory.Private()
    with pool.use_private(private):
        graph_block, give_graph = pool.take(1000)         # not the shared cached block
    assert graph_block is not shared and pool.stats()["device_mallocs"] == 3
    give_graph()
    assert pool.take(1000)[0] is shared                   # outside, the graph's block is not handed out
    with pool.use_private(private):
        again, give_again = pool.take(1000)
        still_held, give_held = pool.take(2000)
    assert again is graph_block                           # inside, it is
    give_again()
    pool.release(private)
    assert pool.take(1000)[0] is graph_block              # released: shared now
    give_held()                                           # freed after the release: shared too
    assert pool.take(2000)[0] is still_held
    pool.empty_cache()
    assert pool.stats()["reserved_bytes"] == pool.stats()["allocated_bytes"]


def test_without_a_gpu_or_simulator_the_error_says_how(monkeypatch):
    from numba import cuda
    monkeypatch.setattr(cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="NUMBA_ENABLE_CUDASIM=1"):
        from atrousnp.backends.cuda import CudaBackend
        CudaBackend()


@pytest.mark.parametrize("options", [[], ["--sass"]], ids=["ptx", "sass"])
def test_every_kernel_compiles_for_a_real_gpu(options):
    """The simulator never types a kernel; numba-cuda's compiler does, with no GPU needed. Runs
    where numba-cuda and its NVVM are installed (pip install "numba-cuda[cu13]"). With --sass,
    the sm_90 machine code of every float32 kernel is held to its thresholds: the tiled GEMM's
    hottest loop at least 75% FFMA, no spills, no float64 instruction outside the kernels
    whose docstrings say they work in float64 (needs nvidia-cuda-cuobjdump too)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    script = Path(__file__).with_name("compile_cuda_kernels.py")
    run = subprocess.run([sys.executable, str(script), *options], env=env, capture_output=True, text=True)
    if run.returncode == 77:
        pytest.skip(run.stdout.strip())
    assert run.returncode == 0, run.stdout + run.stderr


def test_zero_size_tensors_behave_as_on_numpy():
    """A product over an empty k is zeros, and a loss over a batch of no images is 0 with an empty
    gradient, as on the numpy backend; no launch has an empty grid (a GPU refuses one)."""
    results = {}
    for name in ("numpy", "cuda"):
        with anp.use_backend(name):
            a = anp.tensor(np.ones((2, 0), np.float32), requires_grad=True)
            b = anp.tensor(np.ones((0, 3), np.float32), requires_grad=True)
            product = a @ b
            product.sum().backward()
            logits = anp.tensor(np.ones((0, 3, 4, 4), np.float32), requires_grad=True)
            loss = F.cross_entropy(logits, np.zeros((0, 4, 4), np.int64))
            loss.backward()
            results[name] = [product.numpy(), a.grad.numpy(), b.grad.numpy(), loss.numpy(), logits.grad.numpy()]
    for got, expected in zip(results["cuda"], results["numpy"]):
        assert got.shape == expected.shape and got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_a_failed_allocation_empties_the_cache_and_tries_once_more():
    """As PyTorch's caching allocator: the device is full, but a cached block could make room."""
    device = memory.SimulatedDevice(capacity=4096)
    released = []
    pool = memory.CachingPool(device.malloc, flush=lambda: released.append(1))
    kept = pool.take(1024)
    cached = pool.take(1024)[1]
    cached()                                                 # 1 KiB cached, 1 KiB in use: no reason to drop it
    del cached                                               # (the finalizer refers to the block until it has run)
    big, _ = pool.take(3072)                                 # no room until the cached block is freed
    assert len(big) == 3072 and pool.stats()["device_frees"] == 1 and released == [1]
    with pytest.raises(memory.OutOfMemoryError, match="block of 1024 bytes: atrousnp's pool had 4096 bytes reserved, "
                                                      "0 bytes of it cached"):
        pool.take(1024)
    assert len(released) == 2 and kept


def test_the_simulator_pool_has_a_capacity_and_the_backend_reports_running_out(monkeypatch):
    with anp.use_backend("cuda"):
        backend = anp.get_backend()
        monkeypatch.setattr(backend, "_simulated_pool", memory.simulated_pool(capacity=1 << 20))
        a = anp.zeros(100_000, 2)                            # 800 KB of the 1 MiB
        with pytest.raises(memory.OutOfMemoryError, match="out of memory for a block of 0.8 MiB"):
            anp.zeros(100_000, 2)
        del a
        anp.zeros(100_000, 2)                                # the first block, freed, serves it


def test_multi_scale_inference_after_training_keeps_reserved_memory_bounded(tiny_deeplab):
    """Every image size x 5 scales x flip asks for new block sizes. A cache that kept every size
    would reserve more with each image; the pool empties a cache larger than what is in use before
    asking the device for more, so reserved memory stays within twice the peak in use."""
    rng = np.random.default_rng(5)
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9)
        F.cross_entropy(model(anp.tensor(rng.standard_normal((2, 3, 17, 19)).astype(np.float32))),
                        rng.integers(0, 3, (2, 17, 19))).backward()
        optimizer.step()
        reserved = []
        for h, w in [(17, 19), (23, 21), (29, 31), (19, 27), (31, 17)]:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            anp.predict(model, image, scales=(0.5, 0.75, 1.0, 1.25, 1.75), flip=True)
            reserved.append(anp.cuda.memory_stats()["reserved_bytes"])
        stats = anp.cuda.memory_stats()
    assert max(reserved) <= 2 * stats["peak_allocated_bytes"] + (1 << 20), (reserved, stats)


ADAPTER_CHECK = """
import weakref
from numba.cuda.cudadrv import driver
from atrousnp.backends.cuda import memory

class Context:                                   # what the manager asks of numba's context, no more
    pass

calls = []
def fake_memalloc(self, size):                   # numba's own allocation: out of memory once
    calls.append(size)
    if len(calls) == 3:
        raise driver.CudaAPIError(driver.binding.CUresult.CUDA_ERROR_OUT_OF_MEMORY, "out of memory")
    return type("Block", (), {"device_pointer": 4096 * len(calls), "device_pointer_value": 4096 * len(calls)})()
driver.NumbaCUDAMemoryManager.memalloc = fake_memalloc
manager = memory.caching_memory_manager(memory.CachingPool)(context=Context())
flushes = []
manager.deallocations.clear = lambda: flushes.append(1)
kept = manager.pool.take(1000)
manager.pool.take(1000)[1]()                     # a cached block, as many bytes as are in use
manager.pool.take(5000)                          # numba says out of memory: the cache goes, numba's queue is flushed
assert calls == [1024, 1024, 5120, 5120] and flushes == [1], (calls, flushes)
manager.pool.empty_cache()
assert flushes == [1, 1]
print("ok")
"""


def test_on_a_gpu_the_pool_flushes_numbas_deallocation_queue_and_retries_after_out_of_memory():
    """The EMM adapter that only a GPU runs, against a fake numba allocation: numba's out-of-memory
    error makes the pool empty its cache, flush numba's queue of pending frees (without which
    the memory would not go back to the driver) and retry; empty_cache flushes it too. Runs
    without the simulator, where numba-cuda is installed."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    run = subprocess.run([sys.executable, "-c", ADAPTER_CHECK], env=env, capture_output=True, text=True)
    if "No module named 'numba_cuda'" in run.stderr or "cudadrv" in run.stderr and "ImportError" in run.stderr:
        pytest.skip("numba-cuda is not installed")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
