"""Compile every kernel of the cuda backend for sm_90 (an H100), with no GPU; with --sass, read its machine code.

    python tests/compile_cuda_kernels.py          # PTX of every kernel, float32 and float64
    python tests/compile_cuda_kernels.py --sass   # and the sm_90 SASS of every float32 kernel, checked

The CUDA simulator runs kernels as Python, so it never types them: code that numba cannot
compile for a GPU passes there. This runs numba-cuda's real compiler (NVVM) instead. It needs
numba-cuda with its NVVM (``pip install "numba-cuda[cu13]"``), exits 77 when that is missing,
and must run without NUMBA_ENABLE_CUDASIM. Each kernel module of the backend lists its kernels
with their argument types in ``signatures(dtype)``. Prints one line per kernel; exit 1 if any
fails, or if a module defines a kernel that its signatures() leave out.

``--sass`` also assembles each float32 kernel's PTX with ``ptxas -arch=sm_90 -v`` (registers,
spills) and disassembles it with ``cuobjdump -sass`` (``pip install nvidia-cuda-nvcc
nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm``: cuobjdump runs nvdisasm; exit 77 without them), and
prints, per kernel, its registers, spilled bytes, instructions,
float64 instructions, its longest loop and its hottest loop: the innermost loop with the most FFMA (fused
multiply-add) instructions, and their share of it. It checks what the machine code of a fast
kernel must show, which the simulator never can:

The loop column is the longest loop's instruction count: in a one-dimensional grid-stride
kernel, what one element costs. For im2col, which copies an element per load, the report also
gives the instructions per element of its innermost loop (its instructions over its loads:
numba-cuda's compiler unrolls it).

* the tiled GEMM's hottest loop is at least 75% FFMA, and no float32 kernel spills registers
  to local memory;
* no float32 kernel runs a float64 instruction (1/64 of the float32 rate on consumer and
  L4/L40 GPUs), unless its docstring says that it works in float64 (a reduction that
  accumulates in float64 for accuracy).
"""

import argparse
import collections
import glob
import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tempfile
import types

if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
    sys.exit("run without NUMBA_ENABLE_CUDASIM=1: the simulator has no compiler")
try:
    import numba_cuda  # noqa: F401 - numba's own, older numba.cuda needs a driver to compile max()
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda
    from numba import types as t
    cuda.compile_ptx(lambda a: None, (t.float32[::1],), cc=(9, 0))
except Exception as error:  # no numba-cuda, or no NVVM for it
    print(f"skip: numba-cuda cannot compile here ({type(error).__name__}: {str(error).splitlines()[0][:120]})")
    sys.exit(77)

import atrousnp.backends.cuda as package  # noqa: E402

# Every module of the package: a kernel module exports signatures(dtype), and a new module is
# found here without a change to this script.
MODULES = [importlib.import_module(f"{package.__name__}.{info.name}") for info in pkgutil.iter_modules(package.__path__)]

# A kernel that calls a device function asks the current GPU for its compute capability;
# there is none, so say sm_90.
dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))

MIN_GEMM_FFMA_SHARE = 0.75
# Double-precision arithmetic, conversions to or from float64, and the float64 special functions.
FLOAT64 = re.compile(r"^(D(ADD|MUL|FMA|SETP|MNMX|SET)\b|\S*\.F64|MUFU\.\w+64H)")
SASS_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def signatures(dtype):
    """(name, kernel, argument types) for every kernel, on arrays of ``dtype``."""
    return [entry for module in MODULES if hasattr(module, "signatures") for entry in module.signatures(dtype)]


def every_kernel():
    """The names of every kernel the cuda modules define (dispatchers, and kernel factories'
    results), so that a kernel a module leaves out of its signatures() fails this script."""
    found = set()
    for module in MODULES:
        for name, value in vars(module).items():
            if isinstance(value, dispatcher.CUDADispatcher) and not value.targetoptions.get("device"):
                found.add(value.py_func.__name__)
    return found


def tool(name):
    """The path of a CUDA command-line tool: in the bin/ folder of an nvidia-* wheel, else on PATH.

    The wheel's comes first: the PTX is written by the wheel's NVVM, and a ptxas older than that NVVM
    refuses its PTX version (a system CUDA 13.0 ptxas refuses NVVM 13.5's PTX 9.5)."""
    try:
        import nvidia  # the namespace package of NVIDIA's wheels (nvidia-cuda-nvcc brings ptxas)
    except ImportError:
        return shutil.which(name)
    candidates = sorted(path for root in nvidia.__path__ for path in glob.glob(os.path.join(root, "*", "bin", name)))
    return candidates[0] if candidates else shutil.which(name)


class Sass(collections.namedtuple("Sass", "registers spilled instructions")):
    """One kernel's sm_90 machine code: registers a thread, bytes spilled to local memory (stores
    and loads), and its instructions as (address, opcode, operands) in order."""

    def float64(self):
        return sum(bool(FLOAT64.match(opcode)) for _, opcode, _ in self.instructions)

    def loops(self):
        """(first, last) addresses of each loop: a branch back to an earlier address closes one."""
        found = []
        for address, opcode, operands in self.instructions:
            target = re.search(r"0x([0-9a-f]+)", operands)
            if opcode.startswith("BRA") and target and int(target.group(1), 16) <= address:
                found.append((int(target.group(1), 16), address))
        return found

    def body(self, loop):
        first, last = loop
        return [opcode for address, opcode, _ in self.instructions if first <= address <= last]

    def outer_loop(self):
        """The instructions of the longest loop: in a grid-stride kernel, the work of one item."""
        return max((len(self.body(loop)) for loop in self.loops()), default=0)

    def per_load(self):
        """Instructions per global load (LDG) of the innermost loop that loads."""
        loops = self.loops()
        innermost = [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
        for loop in innermost:
            loads = sum(op.startswith("LDG") for op in self.body(loop))
            if loads:
                return len(self.body(loop)) / loads
        return None

    def hottest_loop(self):
        """(FFMA count, instruction count) of the innermost loop with the most FFMA, or None."""
        loops = self.loops()
        innermost = [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
        scored = [(sum(op.startswith("FFMA") for op in self.body(loop)), len(self.body(loop))) for loop in innermost]
        return max(scored, default=None)


def assemble(ptx, ptxas, cuobjdump):
    """The Sass of a PTX text, through ptxas -v and cuobjdump -sass."""
    with tempfile.TemporaryDirectory() as folder:
        source, binary = os.path.join(folder, "kernel.ptx"), os.path.join(folder, "kernel.cubin")
        with open(source, "w") as f:
            f.write(ptx)
        report = subprocess.run([ptxas, "-arch=sm_90", "-v", source, "-o", binary], capture_output=True, text=True,
                                check=True).stderr
        listing = subprocess.run([cuobjdump, "-sass", binary], capture_output=True, text=True, check=True).stdout
    registers = int(re.search(r"Used (\d+) registers", report).group(1))
    spilled = sum(int(n) for n in re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report).groups())
    return Sass(registers, spilled, [(int(m.group(1), 16), m.group(2), m.group(3)) for m in SASS_LINE.finditer(listing)])


def sass_report(compiled, tools):
    """Print the machine code figures of each float32 kernel in ``compiled`` ([(name, kernel,
    PTX)]); the number of failed checks."""
    failures = 0
    print(f"{'kernel':24} {'regs':>4} {'spill':>5} {'instrs':>6} {'f64':>4} {'loop':>5}  hottest loop (FFMA / instructions)")
    for name, kernel, ptx in compiled:
        sass = assemble(ptx, *tools)
        hottest = sass.hottest_loop()
        loop = f"{hottest[0]} / {hottest[1]} = {hottest[0] / hottest[1]:.2f}" if hottest and hottest[0] else "-"
        print(f"{name:24} {sass.registers:>4} {sass.spilled:>5} {len(sass.instructions):>6} {sass.float64():>4} "
              f"{sass.outer_loop():>5}  {loop}")
        if sass.spilled:
            failures += 1
            print(f"FAIL  {name}: spills {sass.spilled} bytes to local memory")
        if sass.float64() and "float64" not in (kernel.py_func.__doc__ or ""):
            failures += 1
            print(f"FAIL  {name}: {sass.float64()} float64 instructions in a float32 kernel whose docstring does not "
                  "say it works in float64")
        if name == "im2col":
            print(f"{'':24} im2col: {sass.per_load():.0f} instructions per element in its innermost loop")
        if name == "tiled gemm" and (not hottest or hottest[0] / hottest[1] < MIN_GEMM_FFMA_SHARE):
            failures += 1
            print(f"FAIL  {name}: its hottest loop is under {MIN_GEMM_FFMA_SHARE:.0%} FFMA")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sass", action="store_true", help="also assemble and disassemble for sm_90, and check")
    options = parser.parse_args()
    tools = (tool("ptxas"), tool("cuobjdump"))
    if options.sass and not (all(tools) and tool("nvdisasm")):
        print("skip: ptxas, cuobjdump or nvdisasm not found (pip install -e \".[sass]\")")
        sys.exit(77)
    failures = 0
    covered, float32_ptx = set(), []
    for dtype in (t.float32, t.float64):
        for name, kernel, argument_types in signatures(dtype):
            covered.add(kernel.py_func.__name__)
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, argument_types, cc=(9, 0))
                print(f"ok    {dtype} {name}")
                if dtype == t.float32:
                    float32_ptx.append((name, kernel, ptx))
            except Exception as error:
                failures += 1
                print(f"FAIL  {dtype} {name}: {type(error).__name__}: {str(error).splitlines()[0][:200]}")
    for name in sorted(every_kernel() - covered):
        failures += 1
        print(f"FAIL  {name}: a kernel with no signature in this script")
    if options.sass and not failures:
        failures += sass_report(float32_ptx, tools)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
