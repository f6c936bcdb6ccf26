"""Reading PyTorch and safetensors weight files without PyTorch: ``{name: np.ndarray}``.

A weight file often comes from a stranger, so nothing in it is trusted: every count, offset
and shape it declares is checked against the bytes it really holds before anything is read,
and anything else is refused with a ``WeightFileError`` naming the file and the tensor.

**PyTorch's format** (``torch.save`` since 1.6) is a zip archive::

    <archive>/data.pkl      the pickled object: a dict of name -> tensor
    <archive>/data/<key>    each storage's raw bytes (little-endian unless <archive>/byteorder says)
    <archive>/byteorder     "little" or "big"
    <archive>/version       ...and a few small records we do not need

Inside ``data.pkl`` a tensor is the call ``torch._utils._rebuild_tensor_v2(storage, offset,
size, stride, requires_grad, hooks)``, and ``storage`` is a *persistent id*,
``("storage", torch.FloatStorage, key, location, numel)``, naming the file ``data/<key>``.
The tensor is the view ``storage[offset + i0*stride0 + i1*stride1 + ...]`` for every index
``(i0, i1, ...) < size``, so its last element is ``offset + Σ (size_d - 1) * stride_d``: a view
is read only if that lies inside the storage, and the storage's ``numel`` only if its record
holds ``numel * itemsize`` bytes (as ``torch.load`` checks; an unchecked view would hand back
bytes of this process's own memory).

A pickle is a program: unpickling may call any global function it names, which is why
``torch.load`` without ``weights_only=True`` runs code from the file. ``_StateDictUnpickler``
therefore resolves only the handful of globals a state dict needs, each to a NumPy stand-in
of ours, and refuses every other name before anything runs (``UnsafeWeightsError``).

**safetensors** is simpler: an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then raw bytes. The format's own
reader (the ``safetensors`` package) checks that the offsets tile the body exactly, in order,
with ``end - begin = prod(shape) * itemsize``; we read through it.
"""

import collections
import math
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import safetensors

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
    "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
    "U8": np.uint8, "BOOL": np.bool_,
}
# A tensor that repeats its storage's elements (a stride-0 "expanded" view) is returned as a
# read-only view, never copied; this caps the elements it may claim.
MAX_ELEMENTS = 2 ** 40
# What an unpickler, a zip member or a stride trick raises on a malformed file.
_MALFORMED = (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, TypeError, ValueError, KeyError, IndexError,
              AttributeError, RecursionError, NotImplementedError, OverflowError, struct.error, UnicodeError)


class WeightFileError(ValueError):
    """A weight file that is not what it claims to be; the message names the file (and tensor)."""


class UnsafeWeightsError(WeightFileError):
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
        start = f.read(9)
    if start[:1] == b"\x80":  # a bare pickle: PyTorch's pre-1.6 format
        return load_torch_state_dict(path)
    if len(start) < 9 or start[8:9] != b"{":
        raise WeightFileError(f"{path} is neither a PyTorch nor a safetensors file")
    return load_safetensors(path)


def load_torch_state_dict(path) -> dict:
    """The state dict in a ``torch.save`` zip file, as NumPy arrays, without running its code.

    A training checkpoint that wraps the weights (``{"model": ...}``, ``{"state_dict": ...}``)
    is unwrapped; the ``module.`` prefix that DataParallel adds is removed."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise WeightFileError(f"{path} is in PyTorch's legacy (pre-1.6) format, which atrousnp does not read; "
                              "re-save it where PyTorch is installed: torch.save(torch.load(path), new_path)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
            if len(pickles) != 1:
                raise WeightFileError(f"{path} is a zip file but not a torch.save archive (no single data.pkl)")
            storages = _StorageReader(archive, pickles[0][: -len("data.pkl")], path)
            with archive.open(pickles[0]) as pickled:
                state = _as_state_dict(_StateDictUnpickler(pickled, path).load(), path)
            return {name: _materialise(view, storages, f"{path}: tensor {name!r}") for name, view in state.items()}
    except WeightFileError:
        raise
    except _MALFORMED as error:
        raise WeightFileError(f"{path} is a malformed torch.save file ({type(error).__name__}: {error})") from None


def load_safetensors(path) -> dict:
    """The tensors of a ``.safetensors`` file as NumPy arrays, read through the format's own reader."""
    path = Path(path)
    try:
        tensors = safetensors.deserialize(path.read_bytes())
    except safetensors.SafetensorError as error:
        raise WeightFileError(f"{path} is not a valid safetensors file: {error}") from None
    arrays = {}
    for name, entry in tensors:
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise WeightFileError(f"{path}: tensor {name!r} has dtype {entry['dtype']}, which atrousnp does not read")
        arrays[name] = _from_bytes(entry["data"], _SAFETENSORS_DTYPES[entry["dtype"]], "little").reshape(
            entry["shape"])
    return arrays


# -- torch.save's pickle ---------------------------------------------------------------------------

class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict with stand-ins for torch's rebuild functions, and nothing else.
    Tensors come out as ``_View`` records; nothing is read until ``_materialise`` checks them."""

    def __init__(self, file, path):
        super().__init__(file)
        self.path = path

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
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _is_count(pid[4])):
            raise UnsafeWeightsError(f"{self.path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        return _Storage(key, storage_type.dtype, numel)


_StorageType = collections.namedtuple("_StorageType", "dtype")
_Storage = collections.namedtuple("_Storage", "key dtype numel")
_View = collections.namedtuple("_View", "storage offset size stride")


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _View(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=True, hooks=None):
    return data


class _StorageReader:
    """Each storage's elements, read once from ``data/<key>`` after checking the record's size."""

    def __init__(self, archive, prefix, path):
        self.archive, self.prefix, self.path = archive, prefix, path
        self.byteorder = _byteorder(archive, prefix, path)
        self.read_already = {}

    def read(self, storage, where):
        if storage.key not in self.read_already:
            record = f"{self.prefix}data/{storage.key}"
            if record not in self.archive.namelist():
                raise WeightFileError(f"{where}: its storage record {record} is missing")
            needed = storage.numel * _itemsize(storage.dtype)
            held = self.archive.getinfo(record).file_size
            if needed > held:
                raise WeightFileError(f"{where}: its storage declares {storage.numel} elements ({needed} bytes) "
                                      f"but its record {record} holds {held} bytes")
            with self.archive.open(record) as f:
                raw = f.read(needed)
            if len(raw) != needed:
                raise WeightFileError(f"{where}: its storage record {record} ends after {len(raw)} bytes")
            self.read_already[storage.key] = (storage.dtype, _from_bytes(raw, storage.dtype, self.byteorder))
        dtype, elements = self.read_already[storage.key]
        if dtype != storage.dtype or len(elements) < storage.numel:
            raise WeightFileError(f"{where}: its storage {storage.key} is declared twice, differently")
        return elements


def _materialise(view, storages, where):
    """The array that ``view`` describes, after checking it lies inside its storage.

    A view that holds no more elements than its storage is copied into a contiguous array; one
    that repeats elements (a stride of 0: torch's ``expand``) stays a read-only view, so that
    no file can make us allocate more than it holds."""
    if isinstance(view, np.ndarray):
        return view
    storage, offset, size, stride = view
    size, stride = _counts(size, where, "size"), _counts(stride, where, "stride")
    if not isinstance(storage, _Storage) or not _is_count(offset) or len(size) != len(stride):
        raise WeightFileError(f"{where}: not a tensor view (storage {storage!r}, offset {offset!r}, size {size}, "
                              f"stride {stride}); offsets and strides must be integers >= 0")
    elements = math.prod(size)
    if elements > MAX_ELEMENTS:
        raise WeightFileError(f"{where}: its shape {size} has {elements} elements, more than atrousnp reads "
                              f"({MAX_ELEMENTS})")
    dtype = np.float32 if storage.dtype == "bfloat16" else np.dtype(storage.dtype)
    if elements == 0:
        return np.empty(size, dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.numel:
        raise WeightFileError(f"{where}: its view (offset {offset}, size {size}, stride {stride}) reaches element "
                              f"{last} of a storage of {storage.numel} elements")
    flat = storages.read(storage, where)
    array = np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride),
                                            writeable=False)
    return array.copy() if elements <= storage.numel else array


def _counts(values, where, what):
    if not isinstance(values, (tuple, list)) or not all(_is_count(v) for v in values):
        raise WeightFileError(f"{where}: its {what} {values!r} is not a tuple of integers >= 0")
    return tuple(values)


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _byteorder(archive, prefix, path):
    """The storages' byte order: the ``byteorder`` record's, little-endian if there is none."""
    if prefix + "byteorder" not in archive.namelist():
        return "little"
    with archive.open(prefix + "byteorder") as f:
        order = f.read(16).decode("ascii", errors="replace")
    if order not in ("little", "big"):
        raise WeightFileError(f"{path}: its byteorder record says {order!r}; expected 'little' or 'big'")
    return order


def _itemsize(dtype):
    return 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize


def _from_bytes(raw, dtype, byteorder):
    if dtype == "bfloat16":  # widen: the 16 stored bits are the high half of a float32
        halves = np.frombuffer(raw, "<u2" if byteorder == "little" else ">u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    array = np.frombuffer(raw, np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">"))
    return array.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def _as_state_dict(obj, path):
    """The dict of name -> tensor in ``obj``, unwrapped from a training checkpoint's dict."""
    for wrapper in ("model", "state_dict", "model_state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, (np.ndarray, _View))
                                            for k, v in obj.items()):
        raise WeightFileError(f"{path} does not hold a state dict (a dict of name -> tensor)")
    return {name.removeprefix("module."): value for name, value in obj.items()}
