"""Data-parallel training speed over MPI: images/s on 1 and K processes, and what the allreduce costs.

    python benchmarks/parallel.py [--ranks 2] [--backbone small] [--batch-size 8] [--steps 10]

Each process runs with one thread (OMP/OPENBLAS/NUMBA_NUM_THREADS=1), so K processes use K
cores: on a 2-core machine, 1 process on 1 core against 2 on 2. Every step is timed whole, and
``allreduce_gradients`` within it; the allreduce's rate is the gradient bytes over its time
(the algorithm bandwidth). It ends with the communication a ring allreduce needs per step
for DeepLabv3-ResNet-50, and what that costs on 10 and 100 Gb/s links.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import atrousnp as anp  # noqa: E402
import atrousnp.functional as F  # noqa: E402
from atrousnp import parallel  # noqa: E402
from atrousnp.train import BACKBONES  # noqa: E402


def worker(args):
    """One rank: train on random data, time each step and its allreduce; rank 0 prints JSON."""
    parallel.init()
    anp.set_backend(args.backend)
    model = BACKBONES[args.backbone](num_classes=21, rng=np.random.default_rng(0))
    parallel.broadcast_parameters(parallel.convert_sync_batch_norm(model))
    optimizer = anp.optim.SGD(list(model.parameters()), lr=0.01, momentum=0.9, weight_decay=1e-4)
    share = parallel.shard(args.batch_size)
    rng = np.random.default_rng(parallel.rank())
    steps, reductions = [], []
    for step in range(args.steps + 2):  # two warm-up steps: compilation, first allocations
        images = rng.standard_normal((len(share), 3, args.crop_size, args.crop_size)).astype(np.float32)
        labels = rng.integers(0, 21, (len(share), args.crop_size, args.crop_size))
        start = time.perf_counter()
        loss = F.cross_entropy(model(anp.tensor(images)), labels)
        optimizer.zero_grad()
        loss.backward()
        reduce_start = time.perf_counter()
        parallel.allreduce_gradients(model.parameters())
        reduce_end = time.perf_counter()
        optimizer.step()
        if step >= 2:
            steps.append(time.perf_counter() - start)
            reductions.append(reduce_end - reduce_start)
    if parallel.is_main():
        gradient_bytes = sum(p.numel() * p.dtype.itemsize for p in model.parameters())
        print(json.dumps({"ranks": parallel.world_size(), "step_s": statistics.median(steps),
                          "allreduce_s": statistics.median(reductions), "gradient_bytes": gradient_bytes}))


def launch(args, ranks):
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    command = ["mpiexec", "-n", str(ranks), sys.executable, __file__, "--worker", "--backbone", args.backbone,
               "--batch-size", str(args.batch_size), "--crop-size", str(args.crop_size), "--steps", str(args.steps),
               "--backend", args.backend]
    run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def ring_allreduce_table():
    """Per-step communication of DeepLabv3-ResNet-50 under a ring allreduce, on paper."""
    model = anp.models.deeplabv3_resnet50(num_classes=21, rng=np.random.default_rng(0))
    parameters = sum(p.numel() for p in model.parameters())
    size = parameters * 4
    print(f"\nDeepLabv3-ResNet-50: {parameters / 1e6:.1f} M parameters, {size / 1e6:.0f} MB of float32 gradients.")
    print("A ring allreduce sends and receives 2 (K-1)/K times that per process per step:")
    print("| processes | bytes per process | at 10 Gb/s | at 100 Gb/s |")
    print("|---|---|---|---|")
    for k in (8, 64):
        volume = 2 * (k - 1) / k * size
        print(f"| {k} | {volume / 1e6:.0f} MB | {volume * 8 / 10e9:.3f} s | {volume * 8 / 100e9:.4f} s |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--backbone", choices=list(BACKBONES), default="small")
    parser.add_argument("--backend", default="numba")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop-size", type=int, default=96)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print(f"DeepLabv3-{args.backbone}, global batch {args.batch_size}, crop {args.crop_size}, {args.backend} backend, "
          f"1 thread per process, median of {args.steps} steps\n")
    print("| processes | step (s) | images/s | allreduce (s) | allreduce share | allreduce GB/s |")
    print("|---|---|---|---|---|---|")
    results = [launch(args, ranks) for ranks in (1, args.ranks)]
    for r in results:
        rate = r["gradient_bytes"] / r["allreduce_s"] / 1e9 if r["ranks"] > 1 else float("nan")
        print(f"| {r['ranks']} | {r['step_s']:.3f} | {args.batch_size / r['step_s']:.1f} | {r['allreduce_s']:.4f} | "
              f"{r['allreduce_s'] / r['step_s']:.1%} | {rate:.2f} |")
    print(f"\nspeed-up on {args.ranks} processes: {results[0]['step_s'] / results[1]['step_s']:.2f}x")
    ring_allreduce_table()


if __name__ == "__main__":
    main()
