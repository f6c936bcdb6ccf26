"""Reading PyTorch and safetensors weight files without PyTorch: ``{name: np.ndarray}``.

A weight file often comes from a stranger, so nothing in it is trusted: every count, offset
and shape it declares is checked against the bytes it really holds before anything is read,
and anything else is refused with a ``WeightFileError`` naming the file and the tensor.

**PyTorch's format** (``torch.save`` since 1.6) is a zip archive, its records stored
uncompressed::

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
therefore resolves only the handful of globals a state dict needs, each to a stand-in of ours
made for this file alone (which a pickle's BUILD instruction cannot modify), and refuses every
other name before anything runs (``UnsafeWeightsError``).

**safetensors** is simpler: an 8-byte little-endian header length, a JSON header
``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then raw bytes. The format's own
reader (the ``safetensors`` package) checks that the offsets tile the body exactly, in order,
with ``end - begin = prod(shape) * itemsize``; we read through it.
"""

import collections
import math
import pickle
import reprlib
import zipfile
import zlib
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
# read-only view, never copied; this caps the elements it, or any axis of an empty one, may claim.
MAX_ELEMENTS = 2 ** 31
_echo = reprlib.Repr()
_echo.maxstring = _echo.maxother = 60
_short = _echo.repr  # a stranger's value in an error, its repr cut to about 60 characters


def _clip(text):
    """A stranger's name in an error, as it is but cut to 60 characters."""
    return text if len(text) <= 60 else text[:57] + "..."


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
    with open(path, "rb") as f:
        start = f.read(9)
    if start[:2] == b"PK" and _has_member(path, "__meta__.json.npy"):  # an atrousnp checkpoint: its model
        return _as_state_dict(load(path), path)
    if start[:2] == b"PK" or start[:1] == b"\x80":  # torch.save's zip archive, or its legacy bare pickle
        return load_torch_state_dict(path)
    if len(start) < 9 or start[8:9] != b"{":
        raise WeightFileError(f"{path} is neither a PyTorch nor a safetensors file")
    return load_safetensors(path)


def load_torch_state_dict(path) -> dict:
    """The state dict in a ``torch.save`` zip file, as NumPy arrays, without running its code.

    A training checkpoint that wraps the weights (``{"model": ...}``, ``{"state_dict": ...}``)
    is unwrapped; the ``module.`` prefix that DataParallel adds is removed."""
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(1) == b"\x80":
            raise WeightFileError(f"{path} is in PyTorch's legacy (pre-1.6) format, which atrousnp does not read; "
                                  "re-save it where PyTorch is installed: torch.save(torch.load(path), new_path)")
    with _open_zip(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") or name == "data.pkl"]
        if len(pickles) != 1:
            raise WeightFileError(f"{path} is a zip file but not a torch.save archive (no single data.pkl)")
        storages = _StorageReader(archive, pickles[0][: -len("data.pkl")], path)
        state = _as_state_dict(_unpickle(archive, pickles[0], path), path)
        return {name: _materialise(view, storages, f"{path}: tensor {_short(name)}") for name, view in state.items()}


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
            raise WeightFileError(f"{path}: tensor {_short(name)} has dtype {entry['dtype']}, which atrousnp does "
                                  "not read")
        arrays[name] = _from_bytes(entry["data"], _SAFETENSORS_DTYPES[entry["dtype"]], "little").reshape(
            entry["shape"])
    return arrays


# -- torch.save's zip archive and pickle -----------------------------------------------------------

def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise WeightFileError(f"{path} starts as a zip file (torch.save's format) but is truncated or corrupt "
                              f"({error})") from None


def _has_member(path, name):
    with _open_zip(path) as archive:
        return name in archive.namelist()


def _unpickle(archive, member, path):
    """The object in ``member``, unpickled by ``_StateDictUnpickler``. Whatever else goes wrong
    while a stranger's pickle runs (a truncated stream, an unknown opcode, a call with the wrong
    arguments, a declared size of exabytes) is one error naming the file."""
    try:
        with archive.open(member) as pickled:
            return _StateDictUnpickler(pickled, path).load()
    except WeightFileError:
        raise
    except Exception as error:
        detail = f": {_short(str(error))}" if str(error) else ""
        raise WeightFileError(f"{path} is a malformed torch.save file ({type(error).__name__}{detail})") from None


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
            return _StandIn(_View, self.path)
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _StandIn(lambda data, *_: data, self.path)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name.endswith("Storage"):
            raise WeightFileError(f"{self.path} holds tensors of torch.{_clip(name)}, which atrousnp does not read")
        raise UnsafeWeightsError(f"{self.path} names {_clip(module)}.{_clip(name)}, which a state dict of tensors "
                                 "never needs; refused before running anything from the file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and _is_count(pid[4])):
            raise UnsafeWeightsError(f"{self.path}: a storage reference that is not (\"storage\", type, key, "
                                     f"location, numel): {_short(pid)}")
        _, storage_type, key, _location, numel = pid
        return _Storage(key, storage_type.dtype, numel)


class _StandIn:
    """What an allowed global resolves to: it calls ``function``. A pickle's BUILD instruction
    sets attributes on the object before it (``__defaults__`` of a function, say), so a stand-in
    refuses it; a fresh one is made for each file, so one file can never change how the next loads."""

    __slots__ = ("function", "path")

    def __init__(self, function, path):
        self.function, self.path = function, path

    def __call__(self, *args):
        return self.function(*args)

    def __setstate__(self, state):
        raise UnsafeWeightsError(f"{self.path}: its pickle tries to modify a function it calls; refused")


_StorageType = collections.namedtuple("_StorageType", "dtype")
_Storage = collections.namedtuple("_Storage", "key dtype numel")


class _View(collections.namedtuple("_View", "storage offset size stride")):
    """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata)``, recorded."""

    __slots__ = ()

    def __new__(cls, storage, offset, size, stride, *_):
        return super().__new__(cls, storage, offset, size, stride)


class _StorageReader:
    """Each storage's elements, read once from ``data/<key>`` after checking the record's size."""

    def __init__(self, archive, prefix, path):
        self.archive, self.prefix, self.path = archive, prefix, path
        self.byteorder = _byteorder(archive, prefix, path)
        self.read_already = {}

    def read(self, storage, where):
        if storage.key not in self.read_already:
            self.read_already[storage.key] = (storage.dtype, self._read_record(storage, where))
        dtype, elements = self.read_already[storage.key]
        if dtype != storage.dtype or len(elements) < storage.numel:
            raise WeightFileError(f"{where}: its storage {_short(storage.key)} is declared twice, differently")
        return elements

    def _read_record(self, storage, where):
        record = f"{self.prefix}data/{storage.key}"
        try:
            info = self.archive.getinfo(record)
        except KeyError:
            raise WeightFileError(f"{where}: its storage record {_clip(record)} is missing") from None
        if info.compress_type != zipfile.ZIP_STORED:  # a small file that inflates to gigabytes
            raise WeightFileError(f"{where}: its storage record {_clip(record)} is compressed, which torch.save "
                                  "never does")
        needed = storage.numel * _itemsize(storage.dtype)
        if needed > info.file_size:
            raise WeightFileError(f"{where}: its storage declares {storage.numel} elements ({needed} bytes) but its "
                                  f"record {_clip(record)} holds {info.file_size} bytes")
        try:
            with self.archive.open(info) as f:
                raw = f.read(needed)
        except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as error:
            raise WeightFileError(f"{where}: its storage record {_clip(record)} cannot be read "
                                  f"({type(error).__name__}: {error})") from None
        if len(raw) != needed:
            raise WeightFileError(f"{where}: its storage record {_clip(record)} ends after {len(raw)} bytes")
        return _from_bytes(raw, storage.dtype, self.byteorder)


def _materialise(view, storages, where):
    """The array that ``view`` describes, after checking it lies inside its storage.

    A view that holds no more elements than its storage is copied into a contiguous array; one
    that repeats elements (a stride of 0: torch's ``expand``) stays a read-only view, so that
    no file can make us allocate more than it holds."""
    if isinstance(view, np.ndarray):
        return view
    storage, offset, size, stride = view
    size, stride = _counts(size, where, "size"), _counts(stride, where, "stride")
    if not isinstance(storage, _Storage):
        raise WeightFileError(f"{where}: its storage is not a storage reference")
    if not _is_count(offset):
        raise WeightFileError(f"{where}: its offset {_short(offset)} is not an integer >= 0")
    if len(size) != len(stride):
        raise WeightFileError(f"{where}: its size {_short(size)} and stride {_short(stride)} differ in length")
    elements = math.prod(size)
    if elements > MAX_ELEMENTS or max(size, default=0) > MAX_ELEMENTS:
        what = f"more elements ({elements})" if elements > MAX_ELEMENTS else "an axis longer"
        raise WeightFileError(f"{where}: its shape {_short(size)} has {what} than atrousnp reads ({MAX_ELEMENTS})")
    dtype = np.float32 if storage.dtype == "bfloat16" else np.dtype(storage.dtype)
    if elements == 0:
        return np.empty(size, dtype)
    stride = tuple(s if n > 1 else 0 for n, s in zip(size, stride))  # an axis of one element never steps
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.numel:
        raise WeightFileError(f"{where}: its view (offset {offset}, size {_short(size)}, stride {_short(stride)}) "
                              f"reaches element {last} of a storage of {storage.numel} elements")
    flat = storages.read(storage, where)
    array = np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride),
                                            writeable=False)
    return array.copy() if elements <= storage.numel else array


def _counts(values, where, what):
    if not isinstance(values, (tuple, list)) or not all(_is_count(v) for v in values):
        raise WeightFileError(f"{where}: its {what} {_short(values)} is not a tuple of integers >= 0")
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
    """The dict of name -> tensor in ``obj``, unwrapped from a training checkpoint's dict, with
    DataParallel's ``module.`` prefix removed (refusing names that it would make collide)."""
    for wrapper in ("model", "state_dict", "model_state_dict", "model_state"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, (np.ndarray, _View))
                                            for k, v in obj.items()):
        raise WeightFileError(f"{path} does not hold a state dict (a dict of name -> tensor)")
    state = {name.removeprefix("module."): value for name, value in obj.items()}
    if len(state) < len(obj):
        raise WeightFileError(f"{path} holds both a name and its 'module.' form (DataParallel's prefix)")
    return state
