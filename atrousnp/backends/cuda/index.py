"""Index arithmetic for kernels, in 32 bits where it can be.

numba computes every integer in 64 bits, and a GPU has no 64-bit divider: a 64-bit // or % is
a sequence of some 70 instructions of sm_90 code, against about 20 in 32 bits. A kernel that
works out coordinates from a flat index divides per element, so it is bound by that
arithmetic rather than by memory. The backend refuses arrays of ``MAX_ELEMENTS`` or more
(``CudaBackend.empty``), so every index, size and offset in a kernel fits 32 unsigned bits,
and ``divmod32`` divides in 32 bits: numba widens its unsigned operands to 64 bits, and LLVM
narrows the division back once it sees that both are 32-bit values. ``INDEX`` marks an index
that cannot be negative: numba adds Python's wraparound check (a compare and a select) to
every signed index, and none to an unsigned one.
"""

import numba
from numba import cuda

from .launch import SIMULATED

MAX_ELEMENTS = 2 ** 32


if not SIMULATED:
    INDEX = numba.uint64

    @cuda.jit(device=True)
    def divmod32(a, b):
        """(a // b, a % b) for 0 <= a < 2**32 and 0 < b < 2**32, as int64s, by one 32-bit division."""
        quotient = numba.int64(numba.uint32(a) // numba.uint32(b))
        return quotient, a - quotient * b
else:
    # The simulator runs kernels as Python: there a NumPy integer scalar's arithmetic is some ten
    # times slower than a Python int's, and each call of a device function swaps the module's
    # globals, so these are Python's own (the same results for indices below 2**32).
    INDEX = int
    divmod32 = divmod
