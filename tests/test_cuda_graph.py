"""anp.cuda.graph: a training step captured once and replayed. In numba's CUDA simulator the
capture records the step's kernels without running them and a replay runs the record, so these
tests hold a step to a graph's rules (frozen addresses, kernel arguments and host work) there
too; on a GPU the same tests run real CUDA graphs."""

import threading

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends.cuda.graph import GraphCaptureError
from atrousnp.backends.cuda.launch import SIMULATED

pytestmark = [pytest.mark.filterwarnings("ignore::numba.NumbaPerformanceWarning"),
              pytest.mark.filterwarnings("ignore:anp.cuda.graph. numba's CUDA simulator")]

SHAPE = (2, 3, 17, 19)


def batches(count):
    """(images, labels) pairs, different each step, with some ignored pixels."""
    rng = np.random.default_rng(3)
    for _ in range(count):
        labels = rng.integers(0, 3, (SHAPE[0],) + SHAPE[2:])
        labels[:, :2] = 255
        yield rng.standard_normal(SHAPE).astype(np.float32), labels


def training(tiny_deeplab):
    """A step function over a fresh tiny DeepLabv3, SGD with momentum and weight decay, and the poly
    schedule: everything a graph must carry from one replay to the next."""
    model = tiny_deeplab()
    optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9, weight_decay=1e-4)
    schedule = anp.optim.PolyLR(optimizer, max_iter=5)

    def step(images, labels):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(anp.tensor(images)), labels)
        loss.backward()
        optimizer.step()
        return loss
    return model, schedule, step


def assert_same_state(graphed, eager):
    """Two state_dicts equal bit for bit, entry by entry, each mismatch named."""
    for name, value in eager.items():
        np.testing.assert_array_equal(graphed[name], value, err_msg=name)


def test_replayed_steps_equal_eager_steps_bit_for_bit(tiny_deeplab):
    """Four steps on new batches each, the rate falling every step, batch norm's running statistics
    moving: eager and graphed (the warm-up, the capture, two replays) end with the same bits."""
    results = {}
    with anp.use_backend("cuda"):
        for graphed in (False, True):
            model, schedule, step = training(tiny_deeplab)
            if graphed:
                step = anp.cuda.graph(step)
            losses = []
            for images, labels in batches(4):
                losses.append(step(images, labels).item())
                schedule.step()
            results[graphed] = losses, model.state_dict()
    assert results[True][0] == results[False][0]
    assert len(set(results[True][0])) == 4                          # each step saw its own batch
    assert_same_state(results[True][1], results[False][1])


def test_a_replay_is_one_launch_and_copies_only_its_inputs(tiny_deeplab):
    """The schedule's new rate reaches the device when it is set: one copy, into the optimiser's rate."""
    with anp.use_backend("cuda"):
        _, schedule, step = training(tiny_deeplab)
        step = anp.cuda.graph(step)
        data = list(batches(3))
        for images, labels in data[:2]:
            step(images, labels)
        before = anp.cuda.counters()
        step(*data[2])
        replay = anp.cuda.counters(since=before)
        before = anp.cuda.counters()
        schedule.step()
        new_rate = anp.cuda.counters(since=before)
    assert replay == {"launches": 1, "host_to_device": 2, "device_to_host": 0, "device_mallocs": 0}, replay
    assert new_rate == {"launches": 0, "host_to_device": 1, "device_to_host": 0, "device_mallocs": 0}, new_rate


@pytest.mark.skipif(not SIMULATED, reason="the simulator's record of the capture is what is checked")
def test_no_captured_kernel_touches_memory_the_host_writes_between_replays(tiny_deeplab):
    """The input buffers and the optimiser's rate are written by the host before each replay: no
    captured kernel may be given their memory as anything else (a block freed during the capture
    and handed out again). The simulator records addresses, not arrays, as a real capture does."""
    with anp.use_backend("cuda"):
        _, schedule, step = training(tiny_deeplab)
        optimizer = schedule.optimizer
        graphed = anp.cuda.graph(step)
        for images, labels in batches(2):
            graphed(images, labels)
        capture = graphed.capture
        host_written = capture.buffers + [rate for group in optimizer.param_groups for rate in group.rates.values()]
        assert sorted(capture.used_inputs) == [0, 1]
        assert capture.overlapping(host_written) == []
        assert len(capture.recorded) > 100


def warmed_up(step):
    """``step`` as a graph after its first (eager) call, and the batch it got."""
    step = anp.cuda.graph(step)
    batch = next(batches(1))
    step(*batch)
    return step, batch


def test_the_capture_warns_in_the_simulator_only(tiny_deeplab):
    with anp.use_backend("cuda"):
        step, batch = warmed_up(training(tiny_deeplab)[2])
        if SIMULATED:
            with pytest.warns(UserWarning, match="recorded and replayed one by one"):
                step(*batch)
        else:
            step(*batch)


@pytest.mark.parametrize("forward,message", [
    (lambda model, images: F.dropout(model(anp.tensor(images)), 0.5).sum(), "dropout mask"),  # would replay its draw
    (lambda model, images: model(anp.tensor(images)).sum().item(), "read it after the call"),
    (lambda model, images: (anp.tensor(images, dtype=np.float64) * 2).sum(), "in the dtype the step uses"),
])
def test_what_a_replay_cannot_repeat_is_refused_at_capture(tiny_deeplab, forward, message):
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        step, (images, _) = warmed_up(lambda images, labels: forward(model, images))   # eager: fine
        with pytest.raises(GraphCaptureError, match=message):
            step(images, _)


def test_other_shapes_and_non_arrays_are_refused(tiny_deeplab):
    with anp.use_backend("cuda"):
        step, (images, labels) = warmed_up(training(tiny_deeplab)[2])
        with pytest.raises(ValueError, match=r"argument 0 has shape \(1, 3, 17, 19\).*made for \(2, 3, 17, 19\)"):
            step(images[:1], labels[:1])
        with pytest.raises(ValueError, match="argument 1 has shape .* dtype int8"):
            step(images, labels.astype(np.int8))
        with pytest.raises(TypeError, match="argument 1 must be a NumPy array"):
            step(images, labels.tolist())
        with pytest.raises(ValueError, match="the step got 3 arguments, 2 before"):
            step(images, labels, labels)


def test_a_graph_needs_the_cuda_backend():
    with anp.use_backend("numpy"), pytest.raises(ValueError, match="set_backend\\('cuda'\\)"):
        anp.cuda.graph(lambda: None)


class FakeDriver:
    """The few cuda.bindings.driver calls a capture makes, logged; ``failing`` names one that fails.
    As the real driver, a call fails in a thread where no context is current."""

    class CUresult:
        CUDA_SUCCESS, CUDA_ERROR_INVALID_CONTEXT, CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 0, 201, 901

    class CUstream_flags:
        class CU_STREAM_NON_BLOCKING:
            value = 1

    class CUstreamCaptureMode:
        CU_STREAM_CAPTURE_MODE_RELAXED = 2

    def __init__(self, failing=None):
        self.log, self.failing = [], failing
        self.current = threading.local()          # .context: numba made its context current in this thread

    def __getattr__(self, name):
        def call(*args):
            self.log.append(name)
            if not getattr(self.current, "context", False):
                return (self.CUresult.CUDA_ERROR_INVALID_CONTEXT, None)
            if name == self.failing:
                return (self.CUresult.CUDA_ERROR_STREAM_CAPTURE_INVALIDATED, None)
            value = 77 if name == "cuStreamCreate" else f"<{name}>"     # a stream handle is a number
            return (self.CUresult.CUDA_SUCCESS,) + (() if "Destroy" in name or "Begin" in name else (value,))
        return call


@pytest.fixture
def fake_driver(monkeypatch):
    from atrousnp.backends.cuda import graph
    driver = FakeDriver()
    monkeypatch.setattr(graph, "_driver", lambda: driver)
    monkeypatch.setattr(graph.cuda, "external_stream", lambda handle: f"numba stream over {handle}", raising=False)
    monkeypatch.setattr(graph.cuda, "synchronize", lambda: None, raising=False)
    monkeypatch.setattr(graph.cuda, "current_context", lambda: setattr(driver.current, "context", True), raising=False)
    return driver


def test_a_driver_capture_makes_an_executable_graph(fake_driver):
    """The driver-API glue that only a GPU runs for real, against a fake driver: the calls, in order."""
    from atrousnp.backends.cuda.graph import _DriverCapture
    capture = _DriverCapture()
    with capture:
        pass
    assert fake_driver.log == ["cuStreamCreate", "cuStreamBeginCapture", "cuStreamEndCapture", "cuGraphInstantiate"]
    assert capture.executable == "<cuGraphInstantiate>" and capture.numba_stream == "numba stream over 77"
    capture.destroy()
    assert fake_driver.log[-3:] == ["cuGraphExecDestroy", "cuGraphDestroy", "cuStreamDestroy"]


def test_a_failing_step_still_ends_the_capture_and_frees_it(fake_driver):
    from atrousnp.backends.cuda.graph import _DriverCapture
    with pytest.raises(KeyError), _DriverCapture():
        raise KeyError("the step failed")
    assert fake_driver.log[2:] == ["cuStreamEndCapture", "cuGraphDestroy", "cuStreamDestroy"]


@pytest.mark.parametrize("failing,cleanup", [
    ("cuGraphInstantiate", ["cuGraphDestroy", "cuStreamDestroy"]),     # the graph and the stream, not leaked
    ("cuStreamEndCapture", ["cuStreamDestroy"]),
    ("cuStreamBeginCapture", ["cuStreamDestroy"]),                   # no __exit__ after a failed __enter__
])
def test_a_driver_error_names_the_call_and_frees_what_was_made(fake_driver, failing, cleanup):
    from atrousnp.backends.cuda.graph import _DriverCapture
    fake_driver.failing = failing
    with pytest.raises(RuntimeError, match=f"{failing} failed"), _DriverCapture():
        pass
    assert fake_driver.log[-len(cleanup):] == cleanup


def test_a_capture_from_another_thread_makes_numbas_context_current_there(fake_driver):
    """The driver API acts on the calling thread's current context, which numba pushes in a
    thread only when that thread first uses it."""
    from atrousnp.backends.cuda.graph import _DriverCapture
    made = []
    thread = threading.Thread(target=lambda: made.append(_DriverCapture().handle))
    thread.start()
    thread.join()
    assert made == [77]


def test_a_first_call_that_raises_is_followed_by_an_eager_call_not_a_capture(tiny_deeplab):
    """A capture needs what a successful eager call sets up (SGD's momentum buffers): after a
    failed first call, graphed steps still equal eager ones bit for bit."""
    results = {}
    with anp.use_backend("cuda"):
        for graphed in (False, True):
            model, schedule, step = training(tiny_deeplab)
            data = list(batches(4))
            if graphed:
                failures = [RuntimeError("a transient failure before the step's work")]
                train = step

                def step(images, labels):
                    if failures:
                        raise failures.pop()
                    return train(images, labels)

                step = anp.cuda.graph(step)
                with pytest.raises(RuntimeError, match="transient"):
                    step(*data[0])
            for images, labels in data:
                step(images, labels)
                schedule.step()
            results[graphed] = model.state_dict()
    assert_same_state(results[True], results[False])


def test_a_capture_with_a_parameter_that_has_no_momentum_buffer_is_refused(tiny_deeplab):
    """A parameter first trained in the captured call would have its first SGD update frozen."""
    with anp.use_backend("cuda"):
        model = tiny_deeplab()
        optimizer = anp.optim.SGD(list(model.parameters()), lr=0.1, momentum=0.9)
        last = list(model.parameters())[-1]
        calls = []

        def step(images, labels):
            calls.append(len(calls))
            optimizer.zero_grad()
            loss = F.cross_entropy(model(anp.tensor(images)), labels)
            loss.backward()
            if len(calls) == 1:
                last.grad = None            # the eager call leaves one parameter without an update
            optimizer.step()
            return loss

        step = anp.cuda.graph(step)
        batch = next(batches(1))
        step(*batch)
        with pytest.raises(GraphCaptureError, match="1 parameter.* no momentum buffer yet"):
            step(*batch)


def test_a_state_dict_loaded_after_capture_is_what_replays_train(tiny_deeplab):
    """load_state_dict copies into the arrays a graph replays (model and optimiser): the loaded
    weights, running statistics and momentum are what the next replay trains, bit for bit as
    an eager step from the same state."""
    data = list(batches(4))
    with anp.use_backend("cuda"):
        source_model, _, source_step = training(tiny_deeplab)
        source_step(*data[3])                                     # some other state to load
        results = {}
        for graphed in (False, True):
            model, schedule, step = training(tiny_deeplab)
            optimizer = schedule.optimizer
            if graphed:
                step = anp.cuda.graph(step)
            for images, labels in data[:3]:
                step(images, labels)
            model.load_state_dict(source_model.state_dict())
            optimizer.load_state_dict({f"momentum_buffer.{i}": np.zeros(p.shape, p.dtype)
                                       for i, p in enumerate(optimizer.params)} | {"lr": [0.05]})
            results[graphed] = step(*data[3]).item(), model.state_dict()
    assert results[True][0] == results[False][0]
    assert_same_state(results[True][1], results[False][1])


def test_a_graph_keeps_the_constants_it_reads_when_their_cache_drops_them(tiny_deeplab):
    """Resize and pooling weights made before the graph live in the constant cache, not in the
    graph's memory; evicted, and their blocks handed to new arrays full of NaN, the replays
    still read the weights (the graph pins what it uses)."""
    from atrousnp.backends import constants
    data = list(batches(4))
    results = {}
    with anp.use_backend("cuda"):
        for graphed in (False, True):
            model, schedule, train = training(tiny_deeplab)
            train(*data[0])                                       # the constants made outside any graph
            step = anp.cuda.graph(train) if graphed else train
            losses = [step(*batch).item() for batch in data[1:3]]
            constants.KEPT.clear()
            pool = anp.get_backend().pool
            taken = [anp.tensor(np.full(size // 4, np.nan, np.float32))
                     for size, blocks in list(pool.free.items()) for _ in blocks]
            losses.append(step(*data[3]).item())
            results[graphed] = losses, model.state_dict()
            del taken
    assert results[True][0] == results[False][0] and np.isfinite(results[True][0]).all()
    assert_same_state(results[True][1], results[False][1])


def test_a_replay_copies_its_inputs_asynchronously_from_pinned_buffers(tiny_deeplab):
    """Each input goes through a page-locked host buffer and is copied on a stream (without
    making the host wait); the host waits only for the previous replay's copies."""
    with anp.use_backend("cuda"):
        step = anp.cuda.graph(training(tiny_deeplab)[2])
        data = list(batches(3))
        step(*data[0])
        step(*data[1])
        copies = []
        for index, buffer in enumerate(step.capture.buffers):
            buffer.copy_to_device = lambda host, stream=0, index=index: copies.append((index, host, stream))
        step(*data[2])
    assert [index for index, _, _ in copies] == [0, 1]
    for (index, host, stream), given in zip(copies, data[2]):
        assert host is step.staging[index] and not isinstance(stream, int)     # a stream, not the synchronous 0
        np.testing.assert_array_equal(host, given)
