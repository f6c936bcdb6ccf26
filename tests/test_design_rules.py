"""Promises about how the library behaves as a whole: it leaves the caller's global state alone,
ops run where their data lives, every backend offers the whole primitive set, and comparison
operators work elementwise as in NumPy and PyTorch."""

import matplotlib
import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp import viz


def test_plotting_leaves_the_matplotlib_backend_alone(tmp_path):
    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # as a notebook would have its own
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        label = np.zeros((8, 8), np.uint8)
        viz.save_prediction_grid(tmp_path / "grid.png", [(image, label, label)], ("background",))
        viz.save_training_curves(tmp_path / "curves.png", {"iteration": [1, 2], "loss": [1.0, 0.5],
                                                           "val_iteration": [2], "val_miou": [0.3]})
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "grid.png").stat().st_size > 0 and (tmp_path / "curves.png").stat().st_size > 0
    finally:
        matplotlib.use(previous)


def test_an_op_runs_where_its_inputs_are_and_mixing_backends_is_refused():
    with anp.use_backend("numpy"):
        a = anp.ones(2, 3)
    with anp.use_backend("numba"):
        b = anp.ones(2, 3)
        assert (a + 1.0).backend == "numpy"           # the data decides, not the current backend
        assert F.conv2d(anp.ones(1, 1, 3, 3), anp.ones(1, 1, 1, 1)).backend == "numba"
    with pytest.raises(TypeError, match=r"add: its inputs live on different backends \('numba' and 'numpy'\)"):
        a + b
    with pytest.raises(TypeError, match="different backends"):
        F.cross_entropy(a.reshape(2, 3, 1), np.zeros((2, 1), np.int64)) + b.sum()


def test_comparisons_are_elementwise_and_tensors_stay_hashable(backend):
    t = anp.tensor(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_array_equal((t == 1.0).numpy(), [False, True, False])
    np.testing.assert_array_equal((t != 1.0).numpy(), [True, False, True])
    assert (t == t).numpy().all() and {t: 1}[t] == 1 and len({t, anp.tensor(np.zeros(3))}) == 2
    with pytest.raises(ValueError, match=r"truth value of a tensor of shape \(3,\) is ambiguous"):
        bool(t == 0)
    assert bool(anp.tensor(np.array([2.0])) == 2.0)


def test_no_grad_means_no_input_needs_a_gradient(backend):
    seen = []

    class Probe(anp.Function):
        @staticmethod
        def forward(ctx, a):
            seen.append(ctx.needs_input_grad)
            return a

        @staticmethod
        def backward(ctx, grad):
            return grad

    x = anp.tensor(np.ones(2), requires_grad=True)
    with anp.no_grad():
        Probe.apply(x)
    Probe.apply(x)
    assert seen == [(False,), (True,)]


def test_every_backend_offers_exactly_the_primitive_set():
    """PRIMITIVES is the one list: Backend's abstract methods, which a backend must implement or it
    cannot be built, and the OPTIONAL ones, which a backend may fuse; no backend adds others. The
    backends that run kernels (numba, cuda) fuse SGD's update; numba fuses max pooling."""
    import inspect
    from atrousnp.backends.primitives import OPTIONAL, PRIMITIVES, Backend
    assert Backend.__abstractmethods__ | set(OPTIONAL) == set(PRIMITIVES)
    assert all(getattr(Backend, name) is None for name in OPTIONAL)
    assert anp.get_backend("numba").sgd_step is not None and anp.get_backend("cuda").sgd_step is not None
    assert anp.get_backend("numba").max_pool2d_forward is not None
    for name in anp.backend_names():
        backend = type(anp.get_backend(name))
        public = {n for n, _ in inspect.getmembers(backend, inspect.isfunction) if not n.startswith("_")}
        assert public <= set(PRIMITIVES), f"{name}: methods outside the primitive set: {public - set(PRIMITIVES)}"
        assert not inspect.isabstract(backend), f"{name} leaves {sorted(backend.__abstractmethods__)} unimplemented"


def test_the_wheel_lists_every_package_and_installs_no_top_level_reference():
    """pyproject.toml names the packages one by one (reference/ ships as atrousnp.reference): a
    package folder left out of the list would be missing from the wheel."""
    import tomllib
    from pathlib import Path
    root = Path(__file__).parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(init.parent.relative_to(root).parts) for init in (root / "atrousnp").rglob("__init__.py")}
    assert set(setuptools["packages"]) == folders | {"atrousnp.reference"}
    assert setuptools["package-dir"] == {"atrousnp.reference": "reference"}
    assert (root / "reference" / "__init__.py").is_file()


def import_graph():
    """{module: the atrousnp modules its import statements name}, for every module of the package
    (a package is its __init__; ``from . import x`` names the submodule x where there is one)."""
    import ast
    from pathlib import Path
    root = Path(__file__).parents[1]
    modules = {}
    for path in (root / "atrousnp").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                target = ".".join(filter(None, (base, node.module)))
                for alias in node.names:  # a submodule, or a name the module defines
                    named.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        graph[name] = {m for m in named if m in modules and m != name}
    return graph


def strongly_connected(graph):
    """The import circles: Tarjan's strongly connected components of more than one module."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while not component or w != v:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
            if len(component) > 1:
                found.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_nothing_below_the_training_app_imports_it_and_mpi_stays_in_parallel():
    """functional/, nn/, optim/, models/ and backends/ know nothing of MPI, CUDA graphs' training
    strategy or the command line, however they import (relative, absolute, plain import)."""
    above = ("atrousnp.parallel", "atrousnp.train", "atrousnp.cli")
    graph = import_graph()
    assert "atrousnp.parallel.sync_batch_norm" in graph["atrousnp.parallel"]  # absolute and relative both resolved
    for name, imported in graph.items():
        layer = name.split(".")[1] if "." in name else None
        if layer in ("functional", "nn", "optim", "models", "backends"):
            assert not {m for m in imported if m.startswith(above)}, name


def test_the_only_import_circle_is_the_tensor_and_its_ops():
    """Tensor's operators call functional, whose ops make Tensors: that circle is the price of
    operator overloading, closed in tensor.py. No other modules import each other."""
    circles = strongly_connected(import_graph())
    assert any("atrousnp.tensor" in circle for circle in circles)  # the analysis sees the one there is
    for circle in circles:
        outside = {m for m in circle if m not in ("atrousnp.tensor", "atrousnp.autograd")
                   and not m.startswith("atrousnp.functional")}
        assert not outside, f"an import circle through {sorted(outside)}"


def test_import_atrousnp_loads_no_training_mpi_or_command_line():
    import subprocess
    import sys
    code = ("import sys, atrousnp; print([m for m in sys.modules if m.startswith(('atrousnp.train', "
            "'atrousnp.parallel', 'atrousnp.cli', 'mpi4py'))])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
