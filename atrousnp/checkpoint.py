"""Checkpoints: a nested dict of arrays and plain values in one .npz, written atomically.

Arrays (and Tensors) become the .npz's entries, named by their path in the dict
(``model/layer1.0.conv1.weight``); everything else — ints, floats, strings, bools, None,
lists, a numpy Generator's state — goes into one JSON entry. Nothing is pickled, so loading
a file runs no code from it.

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the
target: a crash mid-save leaves the previous checkpoint as it was.
"""

import json
import os
import tempfile
import zipfile

import numpy as np

from .tensor import Tensor

_FORMAT = "atrousnp-checkpoint-1"
_META = "__meta__.json"


def save(path, obj):
    """Write ``obj`` (a dict whose leaves are arrays, Tensors or JSON-able values) to ``path``."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict, got {type(obj).__name__}")
    arrays = {}
    meta = _split(obj, "", arrays)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **{_META: np.frombuffer(json.dumps({"format": _FORMAT, "tree": meta}).encode(), np.uint8)},
                     **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes files private; a checkpoint is not
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array under an .npz name
            raise ValueError("it holds a single array, not an archive")
        with npz:
            entries = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ValueError(f"load: {path} is not a readable checkpoint (truncated or foreign file: {error})") from None
    if _META not in entries:
        raise ValueError(f"load: {path} is an .npz but not an atrousnp checkpoint (no {_META})")
    header = json.loads(entries.pop(_META).tobytes().decode())
    if header.get("format") != _FORMAT:
        raise ValueError(f"load: {path} has format {header.get('format')!r}, expected {_FORMAT!r}")
    return _join(header["tree"], entries)


def state_array(where, name, value, shape, dtype):
    """``value`` (an array or Tensor from a state dict) as a host array of ``dtype``, after checking
    that it is numeric and has exactly ``shape`` (no broadcasting); else a ValueError naming
    ``where`` and ``name``."""
    if isinstance(value, Tensor):
        value = value.numpy()
    array = np.asarray(value) if isinstance(value, (np.ndarray, np.generic, int, float)) else None
    if array is None or array.dtype.kind not in "biuf":
        kind = type(value).__name__ if array is None else f"an array of dtype {array.dtype}"
        raise ValueError(f"{where}: {name} must be a numeric array, got {kind}")
    if array.shape != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {array.shape}, expected {tuple(shape)}")
    return array.astype(dtype)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _split(node, prefix, arrays):
    """Move the arrays of ``node`` into ``arrays``; return the JSON-able rest, marking where each array was."""
    if isinstance(node, Tensor):
        node = node.numpy()
    if isinstance(node, np.ndarray):
        arrays[prefix] = node
        return {"__array__": prefix}
    if isinstance(node, dict):
        for key in node:
            if not isinstance(key, str) or "/" in key:
                raise ValueError(f"save: keys must be strings without '/', got {key!r} under {prefix or 'the root'}")
        return {key: _split(value, f"{prefix}/{key}" if prefix else key, arrays) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_split(value, f"{prefix}/{i}", arrays) for i, value in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"save: cannot store a {type(node).__name__} at {prefix or 'the root'}; "
                    "use arrays, Tensors, numbers, strings, lists and dicts")


def _join(node, arrays):
    if isinstance(node, dict):
        if set(node) == {"__array__"}:
            return arrays[node["__array__"]]
        return {key: _join(value, arrays) for key, value in node.items()}
    if isinstance(node, list):
        return [_join(value, arrays) for value in node]
    return node
