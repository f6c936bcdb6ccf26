"""Reading PyTorch and safetensors weight files without PyTorch: ``{name: np.ndarray}``.

**PyTorch's format** (``torch.save`` since 1.6) is a zip archive::

    <archive>/data.pkl      the pickled object: a dict of name -> tensor
    <archive>/data/<key>    each storage's raw bytes (little-endian unless <archive>/byteorder says)
    <archive>/version       ...and a few small records we do not need

Inside ``data.pkl`` a tensor is the call ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)``, and ``storage`` is a *persistent id*,
``("storage", torch.FloatStorage, key, location, numel)``, naming the file ``data/<key>``.

A pickle is a program: unpickling may call any global function it names, which is why
``torch.load`` without ``weights_only=True`` runs code from the file. ``_StateDictUnpickler``
therefore resolves only the handful of globals a state dict needs, each to a NumPy stand-in
of ours, and refuses every other name before anything runs (``UnsafeWeightsError``).

**safetensors** is simpler and safe by construction: an 8-byte little-endian header length,
a JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then raw bytes.
"""

import collections
import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from .checkpoint import load

# torch.<X>Storage -> the NumPy dtype of its elements. bfloat16 has no NumPy dtype: its
# 16 bits are the top half of a float32's, and are widened to float32 on reading.
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": "bfloat16", "I64": np.int64,
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


class UnsafeWeightsError(ValueError):
    """A weight file's pickle names something other than tensors and dicts; nothing from it ran."""


def load_weights(path) -> dict:
    """``{name: np.ndarray}`` from a PyTorch (``.pth``/``.pt``), ``.safetensors`` or atrousnp
    checkpoint (``.npz``: its ``model``) file, told apart by content."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "__meta__.json.npy" in archive.namelist():  # an atrousnp checkpoint: its model
                return _as_state_dict(load(path), path)
        return load_torch_state_dict(path)
    with open(path, "rb") as f:
        start = f.read(2)
    if start[:1] == b"\x80":  # a bare pickle: PyTorch's pre-1.6 format
        return load_torch_state_dict(path)
    return load_safetensors(path)


def load_torch_state_dict(path) -> dict:
    """The state dict in a ``torch.save`` zip file, as NumPy arrays, without running its code.

    A training checkpoint that wraps the weights (``{"model": ...}``, ``{"state_dict": ...}``)
    is unwrapped; the ``module.`` prefix that DataParallel adds is removed."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is in PyTorch's legacy (pre-1.6) format, which atrousnp does not read; "
                         "re-save it where PyTorch is installed: torch.save(torch.load(path), new_path)")
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path} is a zip file but not a torch.save archive (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(prefix + "byteorder").decode() if prefix + "byteorder" in archive.namelist() \
            else "little"
        unpickler = _StateDictUnpickler(archive.open(pickles[0]), archive, prefix, byteorder, path)
        return _as_state_dict(unpickler.load(), path)


def load_safetensors(path) -> dict:
    """The tensors of a ``.safetensors`` file as NumPy arrays."""
    path = Path(path)
    data = path.read_bytes()
    try:
        (header_size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8: 8 + header_size])
    except (struct.error, ValueError):  # too short, or no JSON header where one belongs
        raise ValueError(f"{path} is neither a PyTorch nor a safetensors file") from None
    body = memoryview(data)[8 + header_size:]
    arrays = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(f"{path}: {name} has dtype {entry['dtype']}, which atrousnp does not read")
        begin, end = entry["data_offsets"]
        arrays[name] = _from_bytes(body[begin:end], _SAFETENSORS_DTYPES[entry["dtype"]], "little").reshape(
            entry["shape"])
    return arrays


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict with NumPy stand-ins for torch's rebuild functions, and nothing else."""

    def __init__(self, file, archive, prefix, byteorder, path):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder, self.path = archive, prefix, byteorder, path

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise UnsafeWeightsError(f"{self.path} names {module}.{name}, which a state dict of tensors never "
                                 "needs; refused before running anything from the file")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, numel = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise UnsafeWeightsError(f"{self.path}: unexpected persistent id {pid!r}")
        raw = self.archive.read(f"{self.prefix}data/{key}")
        return _from_bytes(raw, storage_type.dtype, self.byteorder)[:numel]


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    """A contiguous copy of the view (offset, size, stride) of ``storage``: torch's strides count elements."""
    if not size:
        return np.array(storage[offset])
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size),
                                           tuple(s * storage.itemsize for s in stride))
    return np.ascontiguousarray(view)


def _rebuild_parameter(data, requires_grad=True, hooks=None):
    return data


def _from_bytes(raw, dtype, byteorder):
    if dtype == "bfloat16":  # widen: the 16 stored bits are the high half of a float32
        halves = np.frombuffer(raw, "<u2" if byteorder == "little" else ">u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">"))
    return array.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def _as_state_dict(obj, path):
    for wrapper in ("model", "state_dict", "model_state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict (a dict of name -> tensor)")
    return {name.removeprefix("module."): value for name, value in obj.items()}
