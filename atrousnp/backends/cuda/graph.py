"""CUDA graphs: a whole training step recorded once, then replayed as a single launch.

Why a graph. A DeepLabv3-ResNet-50 step is some 730 kernels, and each launch from Python through
numba's dispatcher costs 33-44 µs of host time (it checks the arguments' types, packs them,
calls cuLaunchKernel): 25-30 ms a step, while the GPU's own work on the smaller kernels is a few
µs each. So the GPU mostly waits for the host. A CUDA graph removes the host from the loop:
the driver records every launch of one step (kernel, grid, block, and the argument bytes,
device addresses included) while it is issued on a capturing stream, and ``cuGraphLaunch``
then replays all of them at once, some 1 µs a kernel (measured on an H100 with numba-cuda
0.30.4: 1,000 numba kernels in 1.13 ms replayed, 43.7 ms launched one by one).

What a graph freezes, and so what a captured step must keep to (``StepGraph`` checks what it can):

1. **Addresses.** A replay reads and writes the device addresses seen at capture. So every
   call has the first call's argument shapes and dtypes (a ValueError otherwise); the step's
   arrays come from a private pool (``memory.Private``) that hands them to nothing else while
   the graph lives; and state changes in place (SGD's parameters and momentum, batch norm's
   running statistics): a step that made a new parameter array would replay from the old one.
2. **Numbers passed to kernels.** A rate that the host schedules anew each step would replay
   as the value at capture. It is read from device memory instead, a *feed*
   (``Backend.scalar_feed``) that the graph writes before every replay.
3. **Host work.** The step's Python runs once, at capture: a replay runs only its kernels.
   Host arrays passed as the step's arguments are copied into the graph's input buffers before
   each replay; any other copy to the device during capture (a dropout mask drawn on the host)
   would replay its first data, and any read-back (``loss.item()``) would read what has not
   run yet: both are refused, with a ``GraphCaptureError`` that says why. Return Tensors from
   the step and read them after the call.

On a GPU the capture uses the driver API (``cuda.bindings.driver``): a non-blocking stream in
capture mode, the step's launches issued on it, ``cuStreamEndCapture``, ``cuGraphInstantiate``;
replays are ``cuGraphLaunch`` on the default stream, in order with numba's copies there. numba's
CUDA simulator has no graphs; there the capture records each configured kernel with its
arguments, without running it, and a replay runs the record in order: the same semantics (what
is frozen is frozen, nothing runs during capture), so the tests hold a step to the rules above,
without the speed.
"""

import contextlib
import warnings
import weakref

import numpy as np
from numba import cuda

from . import launch as launching
from . import memory
from .launch import COUNTERS, SIMULATED


class GraphCaptureError(RuntimeError):
    """A step did something during capture that a replayed graph cannot repeat."""


class Capture:
    """What the cuda backend does differently while a step is captured: launches go to the
    capturing ``stream`` (or, with ``stream=None`` in the simulator, into ``recorded``); host
    arrays among ``inputs`` get input buffers; feeds get cells; other transfers are refused."""

    def __init__(self, inputs, stream):
        self.inputs = inputs
        self.stream = stream
        self.recorded = []          # (configured kernel, arguments), in the simulator
        self.input_buffers = {}     # argument index -> the device array it is copied into
        self.feeds = []             # (cell, read): cell[0] = read() before every replay

    def configured(self, kernel, grid, block):
        if self.stream is None:
            return lambda *args: self.recorded.append((kernel[grid, block], _device_only(args)))
        on_stream = kernel[grid, block, self.stream]
        return lambda *args: on_stream(*_device_only(args))

    def input_buffer(self, host_array, dtype, empty):
        """The device buffer of the step argument that ``host_array`` is."""
        index = next((i for i, a in enumerate(self.inputs) if a is host_array), None)
        if index is None or (dtype is not None and np.dtype(dtype) != host_array.dtype):
            shape, kind = np.shape(host_array), np.asarray(host_array).dtype
            raise GraphCaptureError(
                f"anp.cuda.graph: while the step was captured it copied a host array ({shape}, {kind}) to the "
                "device that is not one of the step's arguments as given (or converts one to "
                f"{np.dtype(dtype) if dtype is not None else 'another dtype'}): a replay would repeat that copy's "
                "first data (a dropout mask drawn on the host, say). Pass it as an argument of the step, in the "
                "dtype the step uses, or run the step without a graph")
        if index not in self.input_buffers:
            self.input_buffers[index] = empty(host_array.shape, host_array.dtype)
        return self.input_buffers[index]

    def feed(self, read, cell):
        self.feeds.append((cell, read))
        return cell

    def refuse_read_back(self, a):
        raise GraphCaptureError(
            f"anp.cuda.graph: while the step was captured it read a device array {tuple(a.shape)} back to the host "
            "(.item(), .numpy(), a check of a Tensor's values): during capture nothing has run yet, and a replay "
            "runs no Python. Return the Tensor from the step and read it after the call")


def _device_only(args):
    """``args``, once checked for host arrays: numba would copy one to the device itself, a
    copy that a graph would replay with its first data."""
    for arg in args:
        for item in arg if isinstance(arg, tuple) else (arg,):
            if isinstance(item, np.ndarray):
                raise GraphCaptureError(f"anp.cuda.graph: a kernel got a host array {item.shape} while the step "
                                        "was captured; a replay would reuse its first data")
    return args


@contextlib.contextmanager
def capturing(capture):
    """Route the backend's launches and transfers through ``capture`` inside the with-block."""
    if launching.CAPTURE is not None:
        raise GraphCaptureError("anp.cuda.graph: a step is already being captured (graphs do not nest)")
    launching.CAPTURE = capture
    try:
        yield capture
    finally:
        launching.CAPTURE = None


class StepGraph:
    """``step(*arrays)`` run as a CUDA graph: the first call runs eagerly (numba compiles the
    kernels, the optimiser makes its momentum, the private pool fills), the second captures
    the step and replays it, every later call only replays. Each call returns what ``step``
    returned at capture, the same Tensors, holding this call's results. See the module's
    docstring for the rules a step keeps; ``atrousnp.cuda.graph`` makes one."""

    def __init__(self, step, backend):
        self.step, self.backend = step, backend
        self.private = memory.Private()
        self.signature = None       # (shape, dtype) of each argument at the first call
        self.capture = None
        self.outputs = None
        self.executable = None
        weakref.finalize(self, backend.pool.release, self.private)

    def __call__(self, *arrays):
        self._check(arrays)
        if self.signature is None:
            self.signature = [(a.shape, a.dtype) for a in arrays]
            with self.backend.pool.use_private(self.private):
                return self.step(*arrays)
        if self.capture is None:
            self._capture(arrays)
        self._replay(arrays)
        return self.outputs

    def _check(self, arrays):
        if self.signature is not None and len(arrays) != len(self.signature):
            raise ValueError(f"anp.cuda.graph: the step got {len(arrays)} arguments, {len(self.signature)} before")
        for i, a in enumerate(arrays):
            if not isinstance(a, np.ndarray):
                raise TypeError(f"anp.cuda.graph: argument {i} must be a NumPy array (a graph copies its host "
                                f"arguments into its input buffers), got {type(a).__name__}")
            if self.signature is not None and (a.shape, a.dtype) != self.signature[i]:
                shape, dtype = self.signature[i]
                raise ValueError(f"anp.cuda.graph: argument {i} has shape {a.shape} and dtype {a.dtype}; the graph "
                                 f"was made for {shape} {dtype} (a replay reuses the captured sizes). Make a new "
                                 "graph for these shapes, or run the step without one")

    def _capture(self, arrays):
        if SIMULATED:
            warnings.warn("anp.cuda.graph: numba's CUDA simulator has no CUDA graphs; the step's kernels are "
                          "recorded and replayed one by one (the same results and rules, no speed-up)", stacklevel=3)
        stream = None if SIMULATED else _DriverCapture()
        capture = Capture(arrays, None if stream is None else stream.numba_stream)
        with self.backend.pool.use_private(self.private), capturing(capture), stream or contextlib.nullcontext():
            self.outputs = self.step(*arrays)
        self.capture = capture
        if stream is not None:
            self.executable = stream.executable
            weakref.finalize(self, stream.destroy)

    def _replay(self, arrays):
        for index, buffer in self.capture.input_buffers.items():
            buffer.copy_to_device(np.ascontiguousarray(arrays[index]))
            COUNTERS.host_to_device += 1
        for cell, read in self.capture.feeds:
            cell.copy_to_device(np.array([read()], np.float64))
            COUNTERS.host_to_device += 1
        COUNTERS.launches += 1
        if self.executable is not None:
            _call("cuGraphLaunch", self.executable, 0)     # the default stream: after the copies above
        else:
            for kernel, args in self.capture.recorded:
                kernel(*args)


class _DriverCapture:
    """Stream capture through the driver API, as a with-block: on entry a non-blocking stream
    starts capturing (relaxed mode: a pool that must grow may still call cuMemAlloc); on exit it
    ends, and ``executable`` is the instantiated graph."""

    def __init__(self):
        driver = _driver()
        self.handle = _call("cuStreamCreate", driver.CUstream_flags.CU_STREAM_NON_BLOCKING.value)
        self.numba_stream = cuda.external_stream(int(self.handle))
        self.graph = self.executable = None

    def __enter__(self):
        cuda.synchronize()
        driver = _driver()
        _call("cuStreamBeginCapture", self.handle, driver.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED)
        return self

    def __exit__(self, kind, error, traceback):
        result = _driver().cuStreamEndCapture(self.handle)   # always: a stream left capturing is unusable
        if error is not None:
            self.graph = result[1] if result[0] == _driver().CUresult.CUDA_SUCCESS else None
            self.destroy()
            return False
        self.graph = _checked("cuStreamEndCapture", result)
        self.executable = _call("cuGraphInstantiate", self.graph, 0)
        return False

    def destroy(self):
        driver = _driver()
        if self.executable is not None:
            driver.cuGraphExecDestroy(self.executable)
        if self.graph is not None:
            driver.cuGraphDestroy(self.graph)
        driver.cuStreamDestroy(self.handle)
        self.graph = self.executable = None


def _driver():
    from cuda.bindings import driver  # numba-cuda's own dependency; not in the simulator
    return driver


def _call(name, *args):
    return _checked(name, getattr(_driver(), name)(*args))


def _checked(name, result):
    """The value of a cuda.bindings call's (error, value...) result, or a RuntimeError naming it."""
    error, *values = result
    if error != _driver().CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"anp.cuda.graph: {name} failed: {error!r}")
    return values[0] if values else None
