"""Backend arrays made once from host data and kept: matrices that depend on sizes alone (the
weights of bilinear resizing and adaptive pooling), which every step would otherwise build
again and, on a GPU, copy to the device. The last ``LIMIT`` used are kept."""

from collections import OrderedDict

KEPT = OrderedDict()   # (backend name, key) -> backend array, least recently used first
LIMIT = 64


def kept(backend, key, build):
    """The array of ``build()`` (a host array) on ``backend``, made once per ``key``; the caller
    never writes into it."""
    cache_key = (backend.name, key)
    if cache_key in KEPT:
        KEPT.move_to_end(cache_key)
    else:
        KEPT[cache_key] = backend.asarray(build())
        if len(KEPT) > LIMIT:
            KEPT.popitem(last=False)
    return KEPT[cache_key]
