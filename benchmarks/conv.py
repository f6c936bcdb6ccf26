"""Benchmark: atrous conv2d forward and forward+backward, against PyTorch where installed.

    python benchmarks/conv.py [--backend numba|numpy|cuda] [--repeats 7] [--shapes S1 S2] [--no-memory]

Prints, per shape, the median time, GFLOP/s and the ratio to torch.nn.functional.conv2d
measured in the same run on the same device (PyTorch on the GPU for --backend cuda; inputs
are on the device before the clock starts, and the clock stops when the GPU is done), then,
on the CPU backends, the peak memory of the forward and of the backward pass
above what each starts with and leaves, as a multiple of the im2col buffer (target: 1).
A last table gives the backend's im2col and col2im alone in GB/s: the bytes each must move
(the image read once and the column matrix written once, or the reverse) over its median
time, to compare with the device's memory bandwidth (some 3,350 GB/s on an H100 SXM).
FLOPs: forward = 2·N·K·(C/groups)·kh·kw·out_h·out_w; backward (dx and dW) twice that.
"""

import argparse
import os
import platform
import tracemalloc

import numpy as np

from timing import median_seconds, strict_float32, synchronizer, torch_device, torch_synchronizer

# name: (N, C, K, H=W, kernel, dilation); padding = dilation keeps the size, as in ASPP.
SHAPES = {
    "S1": (2, 256, 256, 33, 3, 6),
    "S2": (2, 512, 512, 33, 3, 2),
    "S3": (4, 64, 64, 65, 3, 1),
    "S4": (1, 2048, 256, 33, 3, 12),
}
SMOKE = {"tiny": (1, 4, 4, 9, 3, 2)}  # checks that the script runs, e.g. in the CUDA simulator


def make_inputs(shape, seed=0):
    n, c, k, hw, ks, _ = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
    w = rng.standard_normal((k, c, ks, ks), dtype=np.float32) * np.float32(1 / np.sqrt(c * ks * ks))
    grad = rng.standard_normal((n, k, hw, hw), dtype=np.float32)
    return x, w, grad


def forward_flops(shape):
    n, c, k, hw, ks, _ = shape
    return 2.0 * n * k * c * ks * ks * hw * hw


def atrousnp_runs(shape, backend):
    import atrousnp as anp
    import atrousnp.functional as F
    anp.set_backend(backend)
    dilation = shape[5]
    x, w, grad = make_inputs(shape)
    x, w, grad = anp.tensor(x, requires_grad=True), anp.tensor(w, requires_grad=True), anp.tensor(grad)

    def forward():
        with anp.no_grad():
            return F.conv2d(x, w, padding=dilation, dilation=dilation)

    def forward_backward():
        x.grad = w.grad = None
        F.conv2d(x, w, padding=dilation, dilation=dilation).backward(grad)

    return forward, forward_backward


def layout_kernels_row(name, shape, backend, repeats):
    """A table row: the backend's im2col and col2im on ``shape``, in ms and GB/s moved."""
    import atrousnp as anp
    anp.set_backend(backend)
    ops = anp.get_backend()
    n, c, _, hw, ks, dilation = shape
    geometry = ((ks, ks), (1, 1), (dilation, dilation), (dilation, dilation))
    x = ops.asarray(make_inputs(shape)[0])
    cols = ops.im2col(x, *geometry)
    moved = 4 * (x.size + cols.size)
    wait = synchronizer(backend)
    t_im2col = median_seconds(lambda: ops.im2col(x, *geometry), repeats, wait)
    t_col2im = median_seconds(lambda: ops.col2im(cols, tuple(x.shape), *geometry), repeats, wait)
    return (f"| {name} | {t_im2col * 1e3:.2f} | {moved / t_im2col / 1e9:.0f} | {t_col2im * 1e3:.2f} | "
            f"{moved / t_col2im / 1e9:.0f} |")


def torch_runs(shape, device):
    import torch
    strict_float32(torch)
    dilation = shape[5]
    x, w, grad = (torch.from_numpy(a).to(device) for a in make_inputs(shape))
    x.requires_grad_()
    w.requires_grad_()

    def forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(x, w, padding=dilation, dilation=dilation)

    def forward_backward():
        x.grad = w.grad = None
        torch.nn.functional.conv2d(x, w, padding=dilation, dilation=dilation).backward(grad)

    return forward, forward_backward


def peak_extra_bytes(shape, backend, phase):
    """Peak memory of one pass of a conv above what it starts with and what it leaves.

    tracemalloc sees every NumPy buffer (NumPy reports them to it), and the Numba kernels
    allocate none of their own, so its peak is the pass's peak."""
    import atrousnp as anp
    import atrousnp.functional as F
    anp.set_backend(backend)
    dilation = shape[5]
    x, w, grad = make_inputs(shape)
    xt, wt = anp.tensor(x, requires_grad=True), anp.tensor(w, requires_grad=True)
    y = F.conv2d(xt, wt, padding=dilation, dilation=dilation) if phase == "backward" else None
    tracemalloc.start()
    if phase == "forward":
        with anp.no_grad():
            kept = F.conv2d(xt, wt, padding=dilation, dilation=dilation)
    else:
        y.backward(grad)
        kept = xt.grad, wt.grad
    held, peak = tracemalloc.get_traced_memory()  # held: the outputs in `kept`, still alive here
    tracemalloc.stop()
    del kept
    return peak - held


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba", "cuda"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES) + list(SMOKE))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory table")
    args = parser.parse_args()
    device = torch_device(args.backend)

    try:
        import torch
        torch_version = torch.__version__ if device == "cpu" or torch.cuda.is_available() else None
    except ImportError:
        torch_version = None
    print(f"# atrousnp conv2d benchmark, backend={args.backend}, float32, median of {args.repeats}")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"numpy {np.__version__}, torch {torch_version or '(not installed, or no GPU for it)'}"
          + (f" with {torch.get_num_threads()} threads" if torch_version else "")
          + (f" on {torch.cuda.get_device_name()}" if torch_version and device == "cuda" else ""))
    print("| shape | pass | atrousnp ms | GFLOP/s | torch ms | ratio (atrousnp / torch) |")
    print("|---|---|---|---|---|---|")
    for name in args.shapes:
        shape = {**SHAPES, **SMOKE}[name]
        ours = atrousnp_runs(shape, args.backend)
        theirs = torch_runs(shape, device) if torch_version else (None, None)
        for phase, ours_fn, theirs_fn, flops in (("forward", ours[0], theirs[0], forward_flops(shape)),
                                                 ("fwd+bwd", ours[1], theirs[1], 3 * forward_flops(shape))):
            t_ours = median_seconds(ours_fn, args.repeats, synchronizer(args.backend))
            t_theirs = median_seconds(theirs_fn, args.repeats, torch_synchronizer(torch, device)) if theirs_fn else None
            ratio = f"{t_ours / t_theirs:.2f}" if t_theirs else "n/a"
            theirs_ms = f"{t_theirs * 1e3:.1f}" if t_theirs else "n/a"
            print(f"| {name} | {phase} | {t_ours * 1e3:.1f} | {flops / t_ours / 1e9:.0f} | {theirs_ms} | {ratio} |",
                  flush=True)

    print("\n| shape | im2col ms | im2col GB/s | col2im ms | col2im GB/s |")
    print("|---|---|---|---|---|")
    for name in args.shapes:
        print(layout_kernels_row(name, {**SHAPES, **SMOKE}[name], args.backend, args.repeats), flush=True)

    if args.no_memory or args.backend == "cuda":  # tracemalloc sees host memory only
        return
    print("\n| shape | im2col buffer MB | forward peak extra MB | backward peak extra MB | "
          "forward / buffer | backward / buffer |")
    print("|---|---|---|---|---|---|")
    for name in args.shapes:
        n, c, _, hw, ks, _ = shape = {**SHAPES, **SMOKE}[name]
        cols_bytes = n * c * ks * ks * hw * hw * 4
        fwd = peak_extra_bytes(shape, args.backend, "forward")
        both = peak_extra_bytes(shape, args.backend, "backward")
        print(f"| {name} | {cols_bytes / 2**20:.1f} | {fwd / 2**20:.1f} | {both / 2**20:.1f} | "
              f"{fwd / cols_bytes:.2f} | {both / cols_bytes:.2f} |", flush=True)


if __name__ == "__main__":
    main()
