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
   the graph lives; every other array its kernels use (parameters, momentum, kept constants)
   the graph pins while it lives; and state changes in place (SGD's parameters and momentum,
   batch norm's running statistics, ``load_state_dict``): a step that made a new parameter
   array would replay from the old one.
2. **Numbers passed to kernels.** A rate that the host schedules anew each step would replay
   as the value at capture. It is read from device memory instead: the optimiser keeps it in
   a 0-d device array of its own (``optim.optimizer.ParamGroup``) and rewrites it, in place, when
   the schedule sets a new rate.
3. **Host work.** The step's Python runs once, at capture: a replay runs only its kernels.
   Host arrays passed as the step's arguments are copied into the graph's input buffers before
   each replay; any other copy to the device during capture (a dropout mask drawn on the host)
   would replay its first data, and any read-back (``loss.item()``) would read what has not
   run yet: both are refused, with a ``GraphCaptureError`` that says why. Return Tensors from
   the step and read them after the call.

Memory the host writes between replays (the input buffers, the optimiser's rate) must be
memory that no captured kernel writes. During a real capture nothing keeps a launched kernel's
arguments alive: an array freed while the step is captured goes back to the graph's free
lists and is handed out again, within the same capture, to a later array (which is right:
the replay runs in the same order). A buffer allocated late in the capture could then be a
block that an earlier kernel of the graph uses as scratch, and at replay that kernel would
overwrite what the host copied in. So the input buffers are allocated before the capture
starts, and the rate in the eager call; neither is ever freed while the graph lives.

On a GPU the capture uses the driver API (``cuda.bindings.driver``): a non-blocking stream in
capture mode, the step's launches issued on it, ``cuStreamEndCapture``, ``cuGraphInstantiate``;
replays are ``cuGraphLaunch`` on the default stream, in order with the input copies there,
which are asynchronous, from pinned host buffers (``StepGraph._replay``). numba's
CUDA simulator has no graphs; there the capture records each configured kernel with where its
arguments lie (the memory, an offset, shape and strides: an address, as the driver records it)
without running it or keeping its arrays alive, and a replay runs the record in order, on
views of that memory made anew. The semantics are a real capture's (what is frozen is frozen,
nothing runs during capture, memory freed during capture is reused by it), so the tests hold
a step to the rules above, without the speed.
"""

import contextlib
import warnings
import weakref
from typing import NamedTuple

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
    arrays among ``inputs`` are read from ``buffers`` (one device array each, made before the
    capture); other transfers are refused."""

    def __init__(self, inputs, buffers, private, stream):
        self.inputs, self.buffers = inputs, buffers
        self.private, self.stream = private, stream
        self.recorded = []          # (configured kernel, recorded arguments), in the simulator
        self.used_inputs = set()    # the indices of the arguments the step uploaded
        self.pinned = []            # arrays outside the graph's own memory that its kernels use

    def configured(self, kernel, grid, block):
        def launch(*args):
            _refuse_host_arrays(args)
            self._pin_outside(args)
            if self.stream is None:
                self.recorded.append((kernel[grid, block], _recorded(args)))
            else:
                kernel[grid, block, self.stream](*args)
        return launch

    def _pin_outside(self, args):
        """Keep every device array among ``args`` that the graph's private pool did not make
        (parameters, momentum, kept constants): a replay reads and writes their addresses, so
        their memory must not be freed and handed to another array while the graph lives (a
        constant evicted from its cache, a parameter replaced by a new array)."""
        for arg in _flat(args):
            if hasattr(arg, "copy_to_host") and not self.private.holds(_address(arg)):
                self.pinned.append(arg)

    def replay_recorded(self):
        """Run the recorded launches in order, on views of the memory they were given (simulator)."""
        for kernel, args in self.recorded:
            kernel(*_views(args))

    def overlapping(self, arrays):
        """(launch number, argument number) of every recorded kernel argument whose memory
        overlaps one of ``arrays`` but is not that array's allocation (simulator): memory that a
        captured kernel uses as something else."""
        spans = [_Span.of(a) for a in arrays]
        return [(n, k) for n, (_, args) in enumerate(self.recorded) for k, arg in enumerate(_flat(args))
                if isinstance(arg, _Span) and any(arg.aliases(span) for span in spans)]

    def input_buffer(self, host_array, dtype):
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
        self.used_inputs.add(index)
        return self.buffers[index]

    def refuse_copy(self, a):
        raise GraphCaptureError(
            f"anp.cuda.graph: while the step was captured it copied host data into a device array {tuple(a.shape)} "
            "(a checkpoint loaded, a learning rate set): a replay would not repeat that copy. Do it between calls")

    def refuse_new_momentum(self, count):
        raise GraphCaptureError(
            f"anp.cuda.graph: while the step was captured, SGD met {count} parameter(s) with a gradient and no "
            "momentum buffer yet: their first update (buffer = gradient) would be frozen into the graph and run "
            "again at every replay. Run the step eagerly until every parameter it trains has been updated once "
            "(the graph's first call does that when it succeeds), then capture")

    def refuse_read_back(self, a):
        raise GraphCaptureError(
            f"anp.cuda.graph: while the step was captured it read a device array {tuple(a.shape)} back to the host "
            "(.item(), .numpy(), a check of a Tensor's values): during capture nothing has run yet, and a replay "
            "runs no Python. Return the Tensor from the step and read it after the call")


class _Span(NamedTuple):
    """Where a simulated device array lies, as a driver records a kernel argument: the memory it
    is in (kept, as device memory stays allocated), a byte offset, shape, strides and dtype; and
    a weak reference to the allocation's own array, which is not kept alive."""
    memory: object
    offset: int
    shape: tuple
    strides: tuple
    dtype: np.dtype
    allocation: weakref.ref

    @classmethod
    def of(cls, device_array):
        view = device_array._ary
        root = view
        while isinstance(root.base, np.ndarray):
            root = root.base
        offset = view.__array_interface__["data"][0] - root.__array_interface__["data"][0]
        return cls(root if root.base is None else root.base, offset, view.shape, view.strides, view.dtype,
                   weakref.ref(root))

    def view(self):
        from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray
        return FakeCUDAArray(np.ndarray(self.shape, self.dtype, self.memory, self.offset, self.strides))

    def bytes(self):
        """[first, last) bytes of the memory that the view reaches."""
        if 0 in self.shape:
            return self.offset, self.offset
        reach = [(size - 1) * stride for size, stride in zip(self.shape, self.strides)]
        return (self.offset + sum(r for r in reach if r < 0),
                self.offset + sum(r for r in reach if r > 0) + self.dtype.itemsize)

    def aliases(self, other):
        """Overlapping bytes of one memory, in another allocation (a freed one included)."""
        (a, b), (c, d) = self.bytes(), other.bytes()
        same_memory = _memory_object(self.memory) is _memory_object(other.memory)
        return same_memory and a < d and c < b and self.allocation() is not other.allocation()


def _memory_object(memory):
    return memory.obj if isinstance(memory, memoryview) else memory


def _address(device_array):
    """The address of a device array's first element (a host address in the simulator)."""
    if SIMULATED:
        return device_array.__array_interface__["data"][0]
    return device_array.__cuda_array_interface__["data"][0]


def _is_tuple(arg):
    """A tuple argument of a kernel (a _Span is a tuple too, but stands for one array)."""
    return isinstance(arg, tuple) and not isinstance(arg, _Span)


def _flat(args):
    return [item for arg in args for item in (arg if _is_tuple(arg) else (arg,))]


def _each(args, change):
    """Kernel arguments with ``change`` applied to each item, inside tuples too."""
    return tuple(tuple(change(a) for a in arg) if _is_tuple(arg) else change(arg) for arg in args)


def _recorded(args):
    """Kernel arguments with every device array replaced by its _Span (simulator)."""
    return _each(args, lambda a: _Span.of(a) if hasattr(a, "_ary") else a)


def _views(args):
    """Recorded arguments with every _Span made a device array again."""
    return _each(args, lambda a: a.view() if isinstance(a, _Span) else a)


def _refuse_host_arrays(args):
    """Refuse a host array among ``args``: numba would copy it to the device itself, a copy that
    a graph would replay with its first data."""
    for item in _flat(args):
        if isinstance(item, np.ndarray):
            raise GraphCaptureError(f"anp.cuda.graph: a kernel got a host array {item.shape} while the step "
                                    "was captured; a replay would reuse its first data")


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
    the step and replays it, every later call only replays. A first call that raises counts
    for nothing: the next call is eager again. Each call returns what ``step``
    returned at capture, the same Tensors, holding this call's results. See the module's
    docstring for the rules a step keeps; ``atrousnp.cuda.graph`` makes one."""

    def __init__(self, step, backend):
        self.step, self.backend = step, backend
        self.private = memory.Private()
        self.signature = None       # (shape, dtype) of each argument at the first call
        self.capture = None
        self.outputs = None
        self.executable = None
        self.staging, self.copied = {}, None     # pinned host copies of the inputs, and their copies' event
        weakref.finalize(self, backend.pool.release, self.private)

    def __call__(self, *arrays):
        self._check(arrays)
        if self.signature is None:        # eager, until a call succeeds: what it sets up is what the capture needs
            with self.backend.pool.use_private(self.private):
                result = self.step(*arrays)
            self.signature = [(a.shape, a.dtype) for a in arrays]
            return result
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
        with self.backend.pool.use_private(self.private):    # before the capture: no captured kernel writes them
            buffers = [self.backend.empty(a.shape, a.dtype) for a in arrays]
        stream = None if SIMULATED else _DriverCapture()
        capture = Capture(arrays, buffers, self.private, None if stream is None else stream.numba_stream)
        with self.backend.pool.use_private(self.private), capturing(capture), stream or contextlib.nullcontext():
            self.outputs = self.step(*arrays)
        self.capture = capture
        self.staging = {index: cuda.pinned_array(arrays[index].shape, arrays[index].dtype)
                        for index in sorted(capture.used_inputs)}
        self.copied = cuda.event()
        self.copied.record(cuda.default_stream())
        if stream is not None:
            self.executable = stream.executable
            weakref.finalize(self, stream.destroy)

    def _replay(self, arrays):
        """Copy the inputs in and launch the graph, without waiting for the GPU: each input goes
        through a page-locked (pinned) host buffer, which the GPU's copy engine reads on its
        own, so the copy is asynchronous and the host runs ahead (a copy from pageable memory
        makes the host wait). The host waits only before it refills the pinned buffers, for the
        copies of the previous replay to have left them, not for that replay's kernels."""
        stream = cuda.default_stream()
        self.copied.synchronize()
        for index, pinned in self.staging.items():
            np.copyto(pinned, arrays[index])
            self.capture.buffers[index].copy_to_device(pinned, stream=stream)
            COUNTERS.host_to_device += 1
        self.copied.record(stream)
        COUNTERS.launches += 1
        if self.executable is not None:
            _call("cuGraphLaunch", self.executable, 0)     # the legacy default stream: after the copies above
        else:
            self.capture.replay_recorded()


class _DriverCapture:
    """Stream capture through the driver API, as a with-block: on entry a non-blocking stream
    starts capturing (relaxed mode: a pool that must grow may still call cuMemAlloc); on exit it
    ends, and ``executable`` is the instantiated graph. Whatever fails, what was made is
    destroyed and the error names the driver call."""

    def __init__(self):
        driver = _driver()
        # The driver calls act on the calling thread's current context: numba makes its own
        # current in a thread only when that thread first uses it, so make sure it is.
        cuda.current_context()
        self.handle = _call("cuStreamCreate", driver.CUstream_flags.CU_STREAM_NON_BLOCKING.value)
        self.numba_stream = cuda.external_stream(int(self.handle))
        self.graph = self.executable = None

    def __enter__(self):
        try:
            cuda.synchronize()
            _call("cuStreamBeginCapture", self.handle, _driver().CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_RELAXED)
        except BaseException:
            self.destroy()          # no __exit__ follows a failed __enter__
            raise
        return self

    def __exit__(self, kind, error, traceback):
        result = _driver().cuStreamEndCapture(self.handle)   # always: a stream left capturing is unusable
        self.graph = result[1] if result[0] == _driver().CUresult.CUDA_SUCCESS else None
        if error is not None:
            self.destroy()
            return False
        try:
            _checked("cuStreamEndCapture", result)
            self.executable = _call("cuGraphInstantiate", self.graph, 0)
        except BaseException:
            self.destroy()
            raise
        return False

    def destroy(self):
        driver = _driver()
        if self.executable is not None:
            driver.cuGraphExecDestroy(self.executable)
        if self.graph is not None:
            driver.cuGraphDestroy(self.graph)
        if self.handle is not None:
            driver.cuStreamDestroy(self.handle)
        self.graph = self.executable = self.handle = None


def _driver():
    from cuda.bindings import driver  # numba-cuda's own dependency; not in the simulator
    return driver


def _call(name, *args):
    return _checked(name, getattr(_driver(), name)(*args))


def _checked(name, result):
    """The value of a cuda.bindings call's (error, value...) result, or a RuntimeError naming it."""
    error, *values = result
    if error != _driver().CUresult.CUDA_SUCCESS:
        hint = " (no CUDA context is current in this thread)" if "CONTEXT" in str(error) else ""
        raise RuntimeError(f"anp.cuda.graph: {name} failed: {error!r}{hint}")
    return values[0] if values else None
