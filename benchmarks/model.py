"""Benchmark: DeepLabv3-ResNet-50 at output stride 16, batch 2, 321x321, float32.

    python benchmarks/model.py [--backend numba|numpy|cuda] [--repeats 3] [--size 321] [--batch 2]
                               [--output-stride 16] [--eval-only] [--threads N]
    python benchmarks/model.py --output-stride 8 --batch 1 --size 513 --eval-only   # the paper's eval geometry

Times (median) an eval-mode forward and one training step (forward, cross-entropy, backward,
SGD with momentum) of atrousnp and, where torchvision is installed, of torchvision's model
with the same weights, built by torchvision's own code at the same output stride (ASPP at
rates 6/12/18, doubled at output stride 8), each library in a fresh process of the same run,
both on ``--threads`` threads (default: the cores this process may use) for their loops and
their BLAS; with --backend cuda, PyTorch runs on the GPU too and each time ends when the GPU
is done, and a third row times atrousnp's step replayed as a CUDA graph (``anp.cuda.graph``)
against PyTorch's eager step. On the numba backend atrousnp first lets OpenBLAS's threads
sleep after each GEMM, as a user with maps this large should (``let_blas_threads_sleep``;
not the library's default, which suits small maps). Each step uploads its batch, as a
training loop would. Peak
memory (CPU backends only) is each phase's growth of resident memory above its level before
the phase's first run (Linux's VmHWM, reset then), so both libraries are measured the same way.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

from timing import median_seconds, strict_float32, synchronizer, torch_device, torch_synchronizer


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def measure(fn, repeats, synchronize, on_gpu):
    """Median seconds over ``repeats`` runs after a warm-up, and the peak growth of resident
    memory (MiB) from before the warm-up: a caching allocator's kept memory counts too. On the
    GPU resident host memory says nothing, so the second value is None there."""
    reset_peak()
    start_rss = status_mib("VmRSS")
    seconds = median_seconds(fn, repeats, synchronize)
    return seconds, None if on_gpu else status_mib("VmHWM") - start_rss


def torchvision_model(torch, output_stride):
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    torch.manual_seed(0)
    backbone = resnet50(weights=None, replace_stride_with_dilation=[False, output_stride == 8, True])
    rates = tuple(r * 16 // output_stride for r in (6, 12, 18))
    return DeepLabV3(IntermediateLayerGetter(backbone, {"layer4": "out"}), DeepLabHead(2048, 21, atrous_rates=rates))


def run_atrousnp(args, x, target):
    import atrousnp as anp
    import atrousnp.functional as F
    anp.set_backend(args.backend)
    if args.backend == "numba":
        from atrousnp.backends.numba import let_blas_threads_sleep
        let_blas_threads_sleep()            # these maps are large: atrousnp/backends/numba/blas.py
    model = anp.models.from_torchvision(torchvision_state(args.output_stride), output_stride=args.output_stride) \
        if torch_available() else anp.models.deeplabv3_resnet50(num_classes=21, output_stride=args.output_stride,
                                                               head_style="torchvision", rng=np.random.default_rng(0))
    optimizer = anp.optim.SGD(list(model.parameters()), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def evaluate():
        model.eval()
        with anp.no_grad():
            model(anp.tensor(x))

    def step(images, labels):
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(anp.tensor(images)), labels).backward()
        optimizer.step()

    synchronize, on_gpu = synchronizer(args.backend), args.backend == "cuda"
    phases = [measure(evaluate, args.repeats, synchronize, on_gpu)]
    if not args.eval_only:
        phases.append(measure(lambda: step(x, target), args.repeats, synchronize, on_gpu))
    if on_gpu and not args.eval_only:
        graphed = anp.cuda.graph(step)
        graphed(x, target)                                   # eager: the first call; the second captures
        phases.append(measure(lambda: graphed(x, target), args.repeats, synchronize, on_gpu))
    return phases


def run_torchvision(args, x, target):
    import torch
    strict_float32(torch)
    torch.set_num_threads(args.threads)
    device = torch_device(args.backend)
    model = torchvision_model(torch, args.output_stride).to(device)
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(xt.to(device))

    def train():
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt.to(device))["out"], tt.to(device)).backward()
        optimizer.step()

    synchronize, on_gpu = torch_synchronizer(torch, device), device == "cuda"
    phases = [measure(evaluate, args.repeats, synchronize, on_gpu)]
    return phases if args.eval_only else phases + [measure(train, args.repeats, synchronize, on_gpu)]


def torch_available(backend="numba"):
    """torch and torchvision can be imported, with a GPU for them when the backend is cuda."""
    try:
        import torch
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return torch_device(backend) == "cpu" or torch.cuda.is_available()


def torchvision_state(output_stride):
    import torch
    return {name: value.numpy() for name, value in torchvision_model(torch, output_stride).state_dict().items()}


def thread_environment(threads):
    """The environment of a child that runs on ``threads`` threads: Numba's parallel loops,
    OpenBLAS (NumPy's GEMMs) and OpenMP (PyTorch's) each read their own variable at start-up."""
    names = ("NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    return dict(os.environ, **{name: str(threads) for name in names})


def positive_int(text):
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--output-stride", type=int, default=16, choices=[8, 16])
    parser.add_argument("--eval-only", action="store_true", help="time the eval forward alone")
    parser.add_argument("--threads", type=positive_int, default=len(os.sched_getaffinity(0)),
                        help="threads for both libraries (default: the cores this process may use)")
    parser.add_argument("--library", choices=["atrousnp", "torchvision"],
                        help="measure one library in this process and print JSON (the parent runs each in its own)")
    args = parser.parse_args()

    if args.library:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
        target = rng.integers(0, 21, (args.batch, args.size, args.size))
        runner = run_atrousnp if args.library == "atrousnp" else run_torchvision
        print(json.dumps(runner(args, x, target)))
        return

    # A fresh process per library: memory freed by one must not lower the other's peak.
    results = {}
    for library in ["atrousnp"] + (["torchvision"] if torch_available(args.backend) else []):
        command = [sys.executable, __file__, "--library", library, "--backend", args.backend,
                   "--repeats", str(args.repeats), "--size", str(args.size), "--batch", str(args.batch),
                   "--output-stride", str(args.output_stride), "--threads", str(args.threads)]
        command += ["--eval-only"] if args.eval_only else []
        child = subprocess.run(command, capture_output=True, text=True, env=thread_environment(args.threads))
        if child.returncode:
            sys.exit(f"the {library} run failed (exit {child.returncode}):\n{child.stderr[-3000:]}")
        results[library] = json.loads(child.stdout.strip().splitlines()[-1])

    torch_note = "(not installed)"
    if torch_available(args.backend):
        import torch
        torch_note = torch.__version__
    print(f"# DeepLabv3-ResNet-50, output stride {args.output_stride}, batch {args.batch}, {args.size}x{args.size}, "
          f"float32, backend={args.backend}, median of {args.repeats}, one process per library, "
          f"{args.threads} threads each")
    coretype = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    print(f"# {cpu_model()}, {os.cpu_count()} cores, OPENBLAS_CORETYPE={coretype}, numpy {np.__version__}, "
          f"torch {torch_note}; atrousnp on numba lets OpenBLAS's threads sleep (let_blas_threads_sleep)")
    print("| phase | atrousnp s | torchvision s | ratio | atrousnp memory growth MiB | torchvision memory growth MiB |")
    print("|---|---|---|---|---|---|")
    mib = lambda value: "n/a" if value is None else f"{value:.0f}"  # noqa: E731
    for k, phase in enumerate(("eval forward", "training step", "training step, a CUDA graph")[:len(results["atrousnp"])]):
        ours_s, ours_mib = results["atrousnp"][k]
        their_s, their_mib = results["torchvision"][min(k, 1)] if "torchvision" in results else (None, None)
        ratio = f"{ours_s / their_s:.2f}" if their_s else "n/a"
        their_text = f"{their_s:.3f}" if their_s else "n/a"
        print(f"| {phase} | {ours_s:.3f} | {their_text} | {ratio} | {mib(ours_mib)} | {mib(their_mib)} |")


if __name__ == "__main__":
    main()
