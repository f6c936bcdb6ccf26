"""Checkpoints: a nested dict of arrays and plain values in one .npz, written atomically.

Arrays (and Tensors) become the .npz's entries, named ``arrays/`` + their path in the dict
(``arrays/model/layer1.0.conv1.weight``); everything else (ints, floats, strings, bools, None,
lists, a numpy Generator's state) goes into one JSON entry, with null where an array was and
the list of array paths beside it. A path says where its array goes, and no value a user
stores can be mistaken for one. Nothing is pickled, so loading a file runs
no code from it, and what could not be loaded (object arrays) is refused before writing.

Writing is atomic (``files.write_atomically``): a crash mid-save leaves the previous
checkpoint as it was. Reading trusts nothing in the file: each member's declared shape is
checked against the bytes it holds before any is read, so a small file cannot make us
allocate terabytes.
"""

import json
import math
import os
import zipfile

import numpy as np

from .files import write_atomically
from .tensor import Tensor

_FORMAT = "atrousnp-checkpoint-2"
_META = "__meta__.json"
_ARRAYS = "arrays/"


def save(path, obj):
    """Write ``obj`` (a dict whose leaves are arrays, Tensors or JSON-able values) to ``path``.
    PyTorch's order, ``save(obj, path)``, is taken too."""
    if isinstance(path, dict) and not isinstance(obj, dict):
        path, obj = obj, path
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected save(path, obj) or save(obj, path) with obj a dict, got "
                        f"{type(path).__name__} and {type(obj).__name__}")
    arrays = {}
    tree = _split(obj, "", arrays)
    meta = json.dumps({"format": _FORMAT, "tree": tree, "arrays": list(arrays)}).encode()
    write_atomically(path, lambda f: np.savez(f, **{_META: np.frombuffer(meta, np.uint8)},
                                              **{_ARRAYS + name: array for name, array in arrays.items()}),
                     suffix=".npz")


def load(path):
    """Read a checkpoint written by ``save``; arrays come back as NumPy arrays."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no checkpoint at {path}")
    try:
        _check_members(path)
        with np.load(path, allow_pickle=False) as npz:
            entries = {name: npz[name] for name in npz.files}
        header = json.loads(entries.pop(_META).tobytes().decode()) if _META in entries else None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError, RecursionError) as error:
        raise ValueError(f"load: {path} is not a readable checkpoint (truncated or foreign file: "
                         f"{type(error).__name__}: {error})") from None
    if not isinstance(header, dict) or "tree" not in header:
        raise ValueError(f"load: {path} is an .npz but not an atrousnp checkpoint (no {_META} with a tree)")
    if header.get("format") != _FORMAT:
        raise ValueError(f"load: {path} has format {header.get('format')!r}, expected {_FORMAT!r}")
    try:
        return _join(header["tree"], "", set(header["arrays"]), entries)
    except (KeyError, TypeError, RecursionError) as error:
        raise ValueError(f"load: {path}: its {_META} does not match its arrays ({type(error).__name__}: "
                         f"{str(error)[:200]})") from None


def _check_members(path):
    """Refuse an archive whose members are not plain, uncompressed .npy arrays of numbers that
    hold the bytes their headers declare (numpy would allocate a declared 3.6 TiB before reading
    a byte, and a small compressed member can inflate to gigabytes)."""
    if not zipfile.is_zipfile(path):
        raise ValueError("not an .npz archive")
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ValueError(f"member {info.filename} is compressed, which anp.save never does")
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"member {info.filename} is an .npy of version {version}")
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, _fortran, dtype = read_header(f)
                declared = math.prod(shape) * dtype.itemsize
                if dtype.kind not in "biuf" or declared > info.file_size - f.tell():
                    kind = f"{declared} bytes" if dtype.kind in "biuf" else "values that are not numbers"
                    raise ValueError(f"member {info.filename} declares {kind} (shape {shape}, dtype {dtype}) "
                                     f"in a record of {info.file_size} bytes")


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


def check_finite(state, where):
    """Refuse a state dict with a floating-point value that is nan or inf, naming ``where`` and
    the first such entries: weights from a file that a model would turn into nan everywhere."""
    bad = [name for name, value in state.items()
           if np.asarray(value).dtype.kind == "f" and not np.isfinite(np.asarray(value)).all()]
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(f"{where}: {', '.join(bad[:3])}{more} hold values that are not finite (nan or inf)")


def _split(node, prefix, arrays):
    """Move the arrays of ``node`` into ``arrays`` by path; return the JSON-able rest, null where each array was."""
    if isinstance(node, Tensor):
        node = node.numpy()
    if isinstance(node, np.ndarray):
        if node.dtype.hasobject:
            raise TypeError(f"save: the array at {prefix or 'the root'} holds Python objects (dtype {node.dtype}), "
                            "which a checkpoint cannot store without pickling; convert it to a numeric array")
        arrays[prefix] = node
        return None
    if isinstance(node, dict):
        for key in node:
            if not isinstance(key, str) or not key or "/" in key:
                raise ValueError(f"save: keys must be non-empty strings without '/', got {key!r} "
                                 f"under {prefix or 'the root'}")
        return {key: _split(value, f"{prefix}/{key}" if prefix else key, arrays) for key, value in node.items()}
    if isinstance(node, (list, tuple)):
        return [_split(value, f"{prefix}/{i}", arrays) for i, value in enumerate(node)]
    if isinstance(node, np.generic):
        return node.item()
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise TypeError(f"save: cannot store a {type(node).__name__} at {prefix or 'the root'}; "
                    "use arrays, Tensors, numbers, strings, lists and dicts")


def _join(node, prefix, array_paths, entries):
    if prefix in array_paths:
        return entries[_ARRAYS + prefix]
    if isinstance(node, dict):
        return {key: _join(value, f"{prefix}/{key}" if prefix else key, array_paths, entries)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_join(value, f"{prefix}/{i}", array_paths, entries) for i, value in enumerate(node)]
    return node
