"""Where a DeepLabv3-ResNet-50 training step spends its time: a cProfile of one step.

    python benchmarks/profile_step.py [--backend numba|numpy|cuda] [--size 321] [--batch 2] [--top 15]
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/profile_step.py --backend cuda --count-only

Runs two warm-up steps (compilation, first allocations, the optimiser's momentum buffers), then
profiles one more (on the numba backend after ``let_blas_threads_sleep()``, as
``benchmarks/model.py`` runs it) and prints the functions with the most time of their own. On
the cuda backend it also prints the counters of the profiled step (launches, device mallocs, host<->device
copies) and the host time they imply at about 33 µs per launch and 179 µs per malloc (as
measured through numba on an H100), so a step's cost is visible without a GPU profiler.
``--count-only`` (in the simulator) counts launches without running the kernels, which shapes
alone decide: a full-size step's counts on a machine with no GPU, in seconds.
"""

import argparse
import cProfile
import pstats

import numpy as np

import atrousnp as anp
import atrousnp.functional as F


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba", "cuda"])
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--count-only", action="store_true", help="cuda in the simulator: count, do not run kernels")
    args = parser.parse_args()

    if args.count_only:
        from atrousnp.backends.cuda import launch
        launch.COUNT_ONLY = True
    anp.set_backend(args.backend)
    if args.backend == "numba":
        from atrousnp.backends.numba import let_blas_threads_sleep
        let_blas_threads_sleep()            # these maps are large: atrousnp/backends/numba/blas.py
    rng = np.random.default_rng(0)
    model = anp.models.deeplabv3_resnet50(num_classes=21, output_stride=16, head_style="torchvision", rng=rng)
    optimizer = anp.optim.SGD(list(model.parameters()), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    target = rng.integers(0, 21, (args.batch, args.size, args.size))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(anp.tensor(x)), target).backward()
        optimizer.step()

    step()
    step()
    before = anp.cuda.counters() if args.backend == "cuda" else None
    profile = cProfile.Profile()
    profile.runcall(step)
    if args.backend == "cuda":
        from numba import cuda
        cuda.synchronize()
        cost = anp.cuda.counters(since=before)
        estimate = cost["launches"] * 33e-6 + cost["device_mallocs"] * 179e-6
        print(f"counters for one step: {cost}; host time they imply (an estimate): {estimate:.3f} s")
    stats = pstats.Stats(profile).sort_stats("tottime")
    print(f"# one training step, backend={args.backend}, batch {args.batch}, {args.size}x{args.size}")
    print(f"{'seconds':>8} {'calls':>7}  function")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])
    for (filename, line, name), (_, calls, own, _, _) in rows[:args.top]:
        print(f"{own:8.3f} {calls:7d}  {name} ({filename.split('/')[-1]}:{line})")
    print(f"{stats.total_tt:8.3f}          total")


if __name__ == "__main__":
    main()
