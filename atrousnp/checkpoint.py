"""Checkpoints: a nested dict of arrays and plain values in one .npz, written atomically.

Arrays (and Tensors) become the .npz's entries, named ``arrays/`` + their path in the dict
(``arrays/model/layer1.0.conv1.weight``); everything else (ints, floats, strings, bools, None,
lists, a numpy Generator's state) goes into one JSON entry, with null where an array was and
the list of array paths beside it. A path says where its array goes, and no value a user
stores can be mistaken for one (format 1 marked arrays with a ``{"__array__": path}`` dict,
which a user's own dict of that shape imitated). Nothing is pickled, so loading a file runs
no code from it, and what could not be loaded (object arrays) is refused before writing.

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the
target: a crash mid-save leaves the previous checkpoint as it was. The temporary's name holds
the target, host and process (``.checkpoint.npz.host-123.tmp-x1y2.npz``), so the next save of
the same target removes what a killed process left, and nothing a live one is writing.
"""

import json
import os
import socket
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .tensor import Tensor

_FORMAT = "atrousnp-checkpoint-2"
_FORMAT_1 = "atrousnp-checkpoint-1"  # still read
_META = "__meta__.json"
_ARRAYS = "arrays/"


def save(path, obj):
    """Write ``obj`` (a dict whose leaves are arrays, Tensors or JSON-able values) to ``path``."""
    if not isinstance(obj, dict):
        raise TypeError(f"save: expected a dict, got {type(obj).__name__}")
    arrays = {}
    tree = _split(obj, "", arrays)
    meta = json.dumps({"format": _FORMAT, "tree": tree, "arrays": list(arrays)}).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temporary_prefix(path)}{os.getpid()}.tmp-",
                                   suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **{_META: np.frombuffer(meta, np.uint8)},
                     **{_ARRAYS + name: array for name, array in arrays.items()})
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
    if header.get("format") == _FORMAT_1:
        return _join_format_1(header["tree"], entries)
    if header.get("format") != _FORMAT:
        raise ValueError(f"load: {path} has format {header.get('format')!r}, expected {_FORMAT!r}")
    return _join(header["tree"], "", set(header["arrays"]), entries)


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


def _temporary_prefix(path):
    """What every temporary of ``path`` written on this host begins with; the process id follows."""
    return f".{path.name}.{socket.gethostname()}-"


def _remove_stale_temporaries(path):
    """Delete temporaries of ``path`` left by processes of this host that no longer run."""
    if os.name != "posix":  # os.kill(pid, 0) probes a process only on POSIX; Windows would end it
        return
    prefix = _temporary_prefix(path)
    for leftover in path.parent.iterdir():
        pid = leftover.name[len(prefix):].split(".tmp-")[0]
        if leftover.name.startswith(prefix) and pid.isdigit() and not _running(int(pid)):
            leftover.unlink(missing_ok=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


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


def _join_format_1(node, entries):
    if isinstance(node, dict):
        if set(node) == {"__array__"}:
            return entries[node["__array__"]]
        return {key: _join_format_1(value, entries) for key, value in node.items()}
    if isinstance(node, list):
        return [_join_format_1(value, entries) for value in node]
    return node
