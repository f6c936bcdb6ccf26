"""The properties a dilated convolution must have, run by Hypothesis on your functions.

Each check builds a Hypothesis test over ``conv2d_cases`` and runs it at once. It uses the
settings of the Hypothesis profile in force (``max_examples`` overrides its number of cases),
and when a property fails Hypothesis shrinks the case to a minimal one and raises
``ConvMismatch`` for it: the property, the case, and what you returned beside what is expected.
"""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .oracles import conv2d_backward_loops, conv2d_loops, im2col_loops
from .strategies import _indent, conv2d_cases


class ConvMismatch(AssertionError):
    """A failed property: ``.case`` is the (shrunk) ConvCase; the message shows both values."""

    def __init__(self, what, case, got=None, expected=None):
        self.case = case
        text = f"{what}\n{case}"
        if expected is not None:
            text += (f"\n  got {np.shape(got)}:\n{_indent(got)}"
                     f"\n  expected {np.shape(expected)}:\n{_indent(expected)}")
        super().__init__(text)


def check_conv2d(fn, backward=None, max_examples=None, **case_options):
    """Prove ``fn(x, weight, bias, stride, padding, dilation, groups) -> y`` on NumPy arrays
    (stride, padding, dilation as (h, w) pairs; bias may be None) against the loop definition.

    With ``backward(grad, x, weight, bias, stride, padding, dilation, groups) -> (dx, dweight,
    dbias)`` also: the gradients against the loop definition's; central differences of ``fn``
    along a random direction (exact here: a convolution is linear in x and in the weight, and
    the values are quarters); and the adjoint identity <dy, fn(x, w)> = <dx, x> = <dw, w>.
    ``case_options`` go to ``conv2d_cases`` (max_size, dtypes, groups=False, ...).
    """
    def properties(case):
        _compare("forward", case, _call("fn", fn, case, *case.arguments()), conv2d_loops(*case.arguments()))
        if backward is None:
            return
        got = _call("backward", backward, case, case.grad, *case.arguments())
        expected = conv2d_backward_loops(case.grad, case.x, case.weight, case.stride, case.padding,
                                         case.dilation, case.groups)
        for name, g, e in zip(("dx", "dweight", "dbias"), got, expected):
            if name != "dbias" or case.bias is not None:
                _compare(f"backward {name}", case, g, e)
        _check_differences_and_adjoint(fn, case, got[0], got[1])

    _run(properties, case_options, max_examples)


def check_im2col(im2col, col2im=None, max_examples=None, **case_options):
    """Prove ``im2col(x, kernel, stride, padding, dilation) -> cols`` in atrousnp's layout,
    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sh + i*dh, ow*sw + j*dw], against loops, and
    ``col2im(cols, x_shape, kernel, stride, padding, dilation) -> x`` as its adjoint:
    <im2col(x), c> = <x, col2im(c)> for every x and c."""
    def properties(case):
        geometry = (case.weight.shape[2:], case.stride, case.padding, case.dilation)
        cols = np.asarray(_call("im2col", im2col, case, case.x, *geometry))
        _compare("im2col", case, cols, im2col_loops(case.x, *geometry))
        if col2im is None:
            return
        c = _direction(cols.shape, cols.dtype, 1)
        back = np.asarray(_call("col2im", col2im, case, c, case.x.shape, *geometry))
        if back.shape != case.x.shape:
            raise ConvMismatch(f"col2im: shape {back.shape}, expected x's {case.x.shape}", case)
        _close("adjoint identity <im2col(x), c> = <x, col2im(c)>", case, np.vdot(case.x, back), np.vdot(cols, c))

    _run(properties, dict(case_options, bias=False), max_examples)


def check_output_size(out_size, max_examples=None):
    """Prove ``out_size(size, kernel, stride, padding, dilation)`` by counting: the outputs are
    the o >= 0 whose dilated window, input o*stride .. o*stride + dilation*(kernel-1), fits in the
    padded input of size + 2*padding."""
    cases = st.tuples(st.integers(1, 40), st.integers(1, 5), st.integers(1, 4), st.integers(0, 4), st.integers(1, 6))

    @settings(deadline=None, report_multiple_bugs=False, **({} if max_examples is None else {"max_examples": max_examples}))
    @given(cases)
    def properties(case):
        size, kernel, stride, padding, dilation = case
        span = dilation * (kernel - 1) + 1
        count = sum(1 for o in range(size + 2 * padding) if o * stride + span <= size + 2 * padding)
        got = out_size(size, kernel, stride, padding, dilation)
        if max(count, 0) != max(got, 0):
            raise AssertionError(f"out_size{case} = {got}, but {count} windows fit "
                                 f"(size {size}, kernel {kernel}, stride {stride}, padding {padding}, dilation {dilation})")

    properties()


def _check_differences_and_adjoint(fn, case, dx, dweight):
    x, w, dy = case.x, case.weight, case.grad
    geometry = (case.stride, case.padding, case.dilation, case.groups)
    for name, grad, direction, shifted in (
            ("x", dx, _direction(x.shape, x.dtype, 2), lambda d: fn(x + d, w, None, *geometry)),
            ("weight", dweight, _direction(w.shape, w.dtype, 3), lambda d: fn(x, w + d, None, *geometry))):
        central = (np.vdot(dy, shifted(direction)) - np.vdot(dy, shifted(-direction))) / 2
        _close(f"central difference along a direction in {name}: <dy, fn'> = <d{name}, direction>",
               case, np.vdot(grad, direction), central)
    y = np.asarray(fn(x, w, None, *geometry))
    _close("adjoint identity <dy, fn(x, w)> = <dx, x>", case, np.vdot(dx, x), np.vdot(dy, y))
    _close("adjoint identity <dy, fn(x, w)> = <dweight, w>", case, np.vdot(dweight, w), np.vdot(dy, y))


def _call(name, function, case, *arguments):
    """``function(*arguments)``; an exception it raises becomes a ConvMismatch naming the case."""
    try:
        return function(*arguments)
    except Exception as error:
        raise ConvMismatch(f"{name} raised {type(error).__name__}: {error}", case) from error


def _direction(shape, dtype, seed):
    """A fixed pseudo-random array of quarters: exact arithmetic, so the identities hold exactly."""
    return (np.random.default_rng(seed).integers(-8, 9, shape) / 4).astype(dtype)


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-9, atol=1e-9)


def _compare(what, case, got, expected):
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise ConvMismatch(f"{what}: shape {got.shape}, expected {expected.shape}", case, got, expected)
    if got.dtype != case.x.dtype:
        raise ConvMismatch(f"{what}: dtype {got.dtype} for inputs of dtype {case.x.dtype}", case, got, expected)
    if not np.allclose(got, expected, **_tolerance(got.dtype)):
        raise ConvMismatch(f"{what}: values differ", case, got, expected)


def _close(what, case, got, expected):
    if not np.isclose(got, expected, **_tolerance(case.x.dtype)):
        raise ConvMismatch(f"{what}: {got!r} != {expected!r}", case)


def _run(properties, case_options, max_examples):
    chosen = {} if max_examples is None else {"max_examples": max_examples}
    test = given(case=conv2d_cases(**case_options))(properties)
    settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False,
             **chosen)(test)()
