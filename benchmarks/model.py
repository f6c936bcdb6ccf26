"""Benchmark: DeepLabv3-ResNet-50 at output stride 16, batch 2, 321x321, float32.

    python benchmarks/model.py [--backend numba] [--repeats 3] [--size 321] [--batch 2]

Times (median) an eval-mode forward and one training step (forward, cross-entropy, backward,
SGD with momentum) of atrousnp and, where torchvision is installed, of torchvision's model
with the same weights, built by torchvision's own code at output stride 16, each library in
a fresh process of the same run. Peak memory is each phase's growth of resident memory above its level before
the phase's first run (Linux's VmHWM, reset then), so both libraries are measured the same way.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np


def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_mib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def measure(fn, repeats):
    """Median seconds over ``repeats`` runs after a warm-up, and the peak growth of resident
    memory (MiB) from before the warm-up: a caching allocator's kept memory counts too."""
    reset_peak()
    start_rss = status_mib("VmRSS")
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), status_mib("VmHWM") - start_rss


def torchvision_model(torch):
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3
    torch.manual_seed(0)
    backbone = resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
    return DeepLabV3(IntermediateLayerGetter(backbone, {"layer4": "out"}), DeepLabHead(2048, 21, atrous_rates=(6, 12, 18)))


def run_atrousnp(args, x, target):
    import atrousnp as anp
    import atrousnp.functional as F
    anp.set_backend(args.backend)
    model = anp.models.from_torchvision(torchvision_state(), output_stride=16) if torch_available() else \
        anp.models.deeplabv3_resnet50(num_classes=21, output_stride=16, head_style="torchvision",
                                      rng=np.random.default_rng(0))
    optimizer = anp.optim.SGD(list(model.parameters()), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def evaluate():
        model.eval()
        with anp.no_grad():
            model(anp.tensor(x))

    def train():
        model.train()
        optimizer.zero_grad()
        F.cross_entropy(model(anp.tensor(x)), target).backward()
        optimizer.step()

    return measure(evaluate, args.repeats), measure(train, args.repeats)


def run_torchvision(args, x, target):
    import torch
    model = torchvision_model(torch)
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def evaluate():
        model.eval()
        with torch.no_grad():
            model(xt)

    def train():
        model.train()
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(xt)["out"], tt).backward()
        optimizer.step()

    return measure(evaluate, args.repeats), measure(train, args.repeats)


def torch_available():
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
        return True
    except ImportError:
        return False


def torchvision_state():
    import torch
    return {name: value.numpy() for name, value in torchvision_model(torch).state_dict().items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=321)
    parser.add_argument("--batch", type=int, default=2)
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
    for library in ["atrousnp"] + (["torchvision"] if torch_available() else []):
        command = [sys.executable, __file__, "--library", library, "--backend", args.backend,
                   "--repeats", str(args.repeats), "--size", str(args.size), "--batch", str(args.batch)]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[library] = json.loads(output.strip().splitlines()[-1])

    torch_note = "(not installed)"
    if torch_available():
        import torch
        torch_note = f"{torch.__version__} with {torch.get_num_threads()} threads"
    print(f"# DeepLabv3-ResNet-50, output stride 16, batch {args.batch}, {args.size}x{args.size}, float32, "
          f"backend={args.backend}, median of {args.repeats}, one process per library")
    print(f"# {os.cpu_count()} cores, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"torch {torch_note}")
    print("| phase | atrousnp s | torchvision s | ratio | atrousnp peak MiB | torchvision peak MiB |")
    print("|---|---|---|---|---|---|")
    for k, phase in enumerate(("eval forward", "training step")):
        ours_s, ours_mib = results["atrousnp"][k]
        if "torchvision" in results:
            their_s, their_mib = results["torchvision"][k]
            print(f"| {phase} | {ours_s:.2f} | {their_s:.2f} | {ours_s / their_s:.2f} | {ours_mib:.0f} | {their_mib:.0f} |")
        else:
            print(f"| {phase} | {ours_s:.2f} | n/a | n/a | {ours_mib:.0f} | n/a |")


if __name__ == "__main__":
    main()
