"""atrousnp.testing proves convolutions: the correct ones pass, and eight one-line mistakes in a
student's loop convolution are each caught, with a small shrunk counterexample."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import atrousnp as anp
import atrousnp.functional as F
from atrousnp.backends.primitives import conv_out_size
from atrousnp.testing import ConvMismatch, check_conv2d, check_im2col, check_output_size

_spec = importlib.util.spec_from_file_location(
    "prove_your_conv", Path(__file__).parents[1] / "examples" / "prove_your_conv.py")
example = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(example)

# The example's three mistakes and five more, each a one-line change to student_conv2d.
MISTAKES = [(what, correct, mistaken) for what, correct, mistaken in example.MISTAKES] + [
    ("group slicing", "first = (o // (k // groups)) * c_per_group", "first = o * c_per_group"),
    ("bias broadcast along the wrong axis", "y += bias[None, :, None, None]", "y += bias"),
    ("a flipped kernel: true convolution, not correlation", "weight[o, ch, i, j]", "weight[o, ch, kh - 1 - i, kw - 1 - j]"),
    ("output size off by one", "out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1",
     "out_h = (h + 2 * ph - dh * (kh - 1)) // sh + 1"),
    ("an integer accumulator", "y = np.zeros((n, k, out_h, out_w), x.dtype)", "y = np.zeros((n, k, out_h, out_w), int)"),
]


def atrousnp_conv2d(x, w, b, stride, padding, dilation, groups):
    t = lambda a: None if a is None else anp.tensor(a)  # noqa: E731
    return F.conv2d(t(x), t(w), t(b), stride=stride, padding=padding, dilation=dilation, groups=groups).numpy()


def atrousnp_backward(dy, x, w, b, stride, padding, dilation, groups):
    inputs = [None if a is None else anp.tensor(a, requires_grad=True) for a in (x, w, b)]
    F.conv2d(*inputs, stride=stride, padding=padding, dilation=dilation, groups=groups).backward(dy)
    return tuple(None if t is None else t.grad.numpy() for t in inputs)


def test_the_students_loop_convolution_passes():
    check_conv2d(example.student_conv2d)


@pytest.mark.parametrize("what,correct,mistaken", MISTAKES, ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_caught_with_a_small_counterexample(what, correct, mistaken):
    with pytest.raises(ConvMismatch) as caught:
        check_conv2d(example.with_mistake(correct, mistaken))
    n, c, h, w = caught.value.case.x.shape
    assert n <= 2 and c <= 2 and h <= 7 and w <= 7, f"{what}: shrank only to x of shape {(n, c, h, w)}"


def test_atrousnp_conv2d_and_its_backward_pass_the_kit(backend):
    dtypes = (np.float32, np.float64)
    check_conv2d(atrousnp_conv2d, backward=atrousnp_backward, dtypes=dtypes, max_examples=10 if backend == "cuda" else None)


def test_atrousnp_im2col_and_col2im_pass_the_kit(backend):
    be = anp.get_backend()
    check_im2col(lambda x, *g: be.to_host(be.im2col(be.asarray(x), *g)),
                 lambda c, shape, *g: be.to_host(be.col2im(be.asarray(c), shape, *g)))


def test_the_output_size_formula_passes_and_a_wrong_one_does_not():
    check_output_size(conv_out_size)
    with pytest.raises(AssertionError, match="windows fit"):
        check_output_size(lambda size, k, s, p, d: (size + 2 * p - d * (k - 1)) // s + 1)


def test_a_wrong_backward_is_caught():
    def backward_with_dx_doubled(dy, x, w, b, stride, padding, dilation, groups):
        dx, dw, db = atrousnp_backward(dy, x, w, b, stride, padding, dilation, groups)
        return dx * 2, dw, db
    with pytest.raises(ConvMismatch, match="backward dx"):
        check_conv2d(atrousnp_conv2d, backward=backward_with_dx_doubled, max_size=4)
