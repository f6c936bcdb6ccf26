"""A Hypothesis kit that proves anyone's dilated convolution.

    from atrousnp.testing import check_conv2d
    check_conv2d(my_conv2d)                       # my_conv2d(x, w, b, stride, padding, dilation, groups) -> y
    check_conv2d(my_conv2d, backward=my_backward) # my_backward(dy, x, w, b, stride, ...) -> (dx, dw, db)

Each check draws small, always valid convolution cases (``conv2d_cases``), runs your function on
NumPy arrays and compares it with the loop definition in ``reference/conv.py``; a failure is
Hypothesis's shrunk, minimal case, printed small enough to read. ``check_im2col`` does the same
for an im2col/col2im pair and ``check_output_size`` for the output-size formula.

Hypothesis is this module's own dependency: ``pip install "atrousnp[testing]"`` (the ``test``
extra has it too). ``import atrousnp`` never imports this module.
"""

try:
    import hypothesis  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError("atrousnp.testing needs Hypothesis: pip install 'atrousnp[testing]'") from error

from .checks import ConvMismatch, check_conv2d, check_im2col, check_output_size
from .oracles import im2col_loops, scipy_conv2d
from .strategies import ConvCase, conv2d_cases

__all__ = ["ConvCase", "ConvMismatch", "check_conv2d", "check_im2col", "check_output_size", "conv2d_cases",
           "im2col_loops", "scipy_conv2d"]
