"""Prove your own dilated convolution with atrousnp's Hypothesis kit.

    python examples/prove_your_conv.py

``student_conv2d`` below is a first dilated convolution written the way the exercise in every
deep-learning course asks for it: loops over images, output channels, output pixels and taps.
``check_conv2d`` proves it against the loop definition in reference/conv.py on hundreds of
small, random, valid cases (groups, stride, padding and dilation included). Then three classic
mistakes are planted in it, each a one-line change to its source, and each is caught: the kit
prints the smallest case Hypothesis could shrink the failure to, and both outputs.
"""

import inspect
import textwrap

import numpy as np

from atrousnp.testing import ConvMismatch, check_conv2d


def student_conv2d(x, weight, bias, stride, padding, dilation, groups):
    """y[b, o, r, q] = bias[o] + sum over (ch, i, j) of weight[o, ch, i, j] * x_pad[b, first + ch, r*sh + i*dh, q*sw + j*dw]."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, w = x.shape
    k, c_per_group, kh, kw = weight.shape
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, k, out_h, out_w), x.dtype)
    for b in range(n):
        for o in range(k):
            first = (o // (k // groups)) * c_per_group        # the first input channel of o's group
            for r in range(out_h):
                for q in range(out_w):
                    for ch in range(c_per_group):
                        for i in range(kh):
                            for j in range(kw):
                                y[b, o, r, q] += weight[o, ch, i, j] * x_pad[b, first + ch, r * sh + i * dh, q * sw + j * dw]
    if bias is not None:
        y += bias[None, :, None, None]
    return y


# (what goes wrong, the correct line, the mistaken line): mutations of student_conv2d's source.
MISTAKES = [
    ("an off-by-one in the dilated tap offset",
     "x_pad[b, first + ch, r * sh + i * dh, q * sw + j * dw]",
     "x_pad[b, first + ch, r * sh + i * (dh - 1), q * sw + j * (dw - 1)]"),
    ("padding applied once instead of on both sides",
     "np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))",
     "np.pad(x, ((0, 0), (0, 0), (ph, 0), (pw, 0)))"),
    ("stride applied before dilation",
     "x_pad[b, first + ch, r * sh + i * dh, q * sw + j * dw]",
     "x_pad[b, first + ch, r * dh + i * sh, q * dw + j * sw]"),
]


def with_mistake(correct, mistaken):
    """student_conv2d with one line of its source changed."""
    source = textwrap.dedent(inspect.getsource(student_conv2d))
    if correct not in source:
        raise ValueError(f"{correct!r} is not in student_conv2d's source")
    namespace = {"np": np}
    exec(source.replace(correct, mistaken), namespace)  # noqa: S102 - our own source, one line changed
    return namespace["student_conv2d"]


def main():
    check_conv2d(student_conv2d, max_examples=200)
    print("student_conv2d: proven on 200 random cases (groups, stride, padding, dilation)\n")
    for what, correct, mistaken in MISTAKES:
        print(f"Planted: {what}\n    - {correct}\n    + {mistaken}")
        try:
            check_conv2d(with_mistake(correct, mistaken), max_examples=200)
        except ConvMismatch as failure:
            print("Caught. The smallest case Hypothesis found:\n" + textwrap.indent(str(failure), "    ") + "\n")
        else:
            raise SystemExit(f"the mistake was not caught: {what}")


if __name__ == "__main__":
    main()
