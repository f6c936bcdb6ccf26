"""Benchmark: the float32 matrix product under every convolution, in TFLOP/s.

    python benchmarks/gemm.py [--backend numba|numpy|cuda] [--sizes 1024 2048 4096] [--repeats 7]

Times atrousnp's matmul of two n×n float32 matrices already on the device (NumPy's BLAS on the
CPU backends; on cuda the tiled, register-blocked shared-memory kernel of
atrousnp/backends/cuda/gemm.py) and torch.matmul on the same device in the same run, and
prints each one's TFLOP/s (2·n³ / median time) and their ratio.
"""

import argparse

import numpy as np

from timing import median_seconds, strict_float32, synchronizer, torch_device, torch_synchronizer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numba", choices=["numpy", "numba", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import atrousnp as anp
    anp.set_backend(args.backend)
    device = torch_device(args.backend)
    try:
        import torch
        torch = strict_float32(torch) if device == "cpu" or torch.cuda.is_available() else None
    except ImportError:
        torch = None
    print(f"# atrousnp matmul, backend={args.backend}, float32, median of {args.repeats}; "
          f"torch {torch.__version__ + ' on ' + device + (', TF32 off' if device == 'cuda' else '') if torch else '(not installed, or no GPU for it)'}")
    print("| n | atrousnp ms | atrousnp TFLOP/s | torch ms | torch TFLOP/s | ratio (atrousnp / torch) |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        rng = np.random.default_rng(0)
        a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
        flops = 2.0 * n ** 3
        a_ours, b_ours = anp.tensor(a), anp.tensor(b)
        ours = median_seconds(lambda: a_ours @ b_ours, args.repeats, synchronizer(args.backend))
        row = f"| {n} | {ours * 1e3:.2f} | {flops / ours / 1e12:.2f} |"
        if torch:
            a_theirs, b_theirs = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
            theirs = median_seconds(lambda: a_theirs @ b_theirs, args.repeats, torch_synchronizer(torch, device))
            row += f" {theirs * 1e3:.2f} | {flops / theirs / 1e12:.2f} | {ours / theirs:.2f} |"
        else:
            row += " n/a | n/a | n/a |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
