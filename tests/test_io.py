"""Weights from PyTorch and safetensors files without PyTorch (atrousnp.io), ImageNet backbones,
and training on a dataset with its own classes."""

import collections
import io
import json
import math
import pickle
import struct
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atrousnp as anp
from atrousnp.io import MAX_ELEMENTS, UnsafeWeightsError, WeightFileError, load_safetensors, load_torch_state_dict, \
    load_weights

EXAMPLES = Path(__file__).parents[1] / "examples"


# -- a torch.save file written without torch ------------------------------------------------------

def write_torch_zip(path, arrays, monkeypatch):
    """Write ``arrays`` as ``torch.save(state_dict)`` does (PyTorch >= 1.6): each array a
    contiguous view of a storage of its own."""
    storages = {str(i): np.ravel(array) for i, array in enumerate(arrays.values())}
    views = {name: (str(i), 0, array.shape, tuple(math.prod(array.shape[d + 1:]) for d in range(array.ndim)))
             for i, (name, array) in enumerate(arrays.items())}
    write_torch_archive(path, storages, views, monkeypatch)


def write_torch_archive(path, storages, views, monkeypatch, numels=None, byteorder="little"):
    """A ``torch.save`` archive written with only the standard library: a zip holding
    ``archive/data.pkl``, whose tensors are calls ``torch._utils._rebuild_tensor_v2(storage,
    offset, size, stride, requires_grad, hooks)`` and whose storages are persistent ids
    ``("storage", torch.FloatStorage, key, "cpu", numel)``, and each storage's bytes as
    ``archive/data/<key>``. ``storages``: key -> 1-d array; ``views``: name -> (key, offset,
    size, stride), written as given, however wrong; ``numels``: key -> the numel to declare
    (default: the array's). Pickle writes a global by its module and name, so stand-in
    ``torch`` modules hold them while the pickle is written."""
    torch_module, utils_module = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils_module._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage_types = {}
    for name, dtype in (("FloatStorage", np.float32), ("LongStorage", np.int64), ("DoubleStorage", np.float64)):
        storage_types[np.dtype(dtype)] = type(name, (), {"__module__": "torch"})
        setattr(torch_module, name, storage_types[np.dtype(dtype)])
    torch_module._utils = utils_module
    monkeypatch.setitem(sys.modules, "torch", torch_module)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_module)
    numels = {key: array.size for key, array in storages.items()} | (numels or {})

    class Storage:
        def __init__(self, key):
            self.key = key

    class Tensor:
        def __init__(self, key, offset, size, stride):
            self.view = (Storage(key), offset, size, stride)

        def __reduce__(self):
            return _rebuild_tensor_v2, self.view + (False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", storage_types[storages[obj.key].dtype], obj.key, "cpu", numels[obj.key])
            return None

    state = collections.OrderedDict((name, Tensor(*view)) for name, view in views.items())
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", byteorder)
        archive.writestr("archive/version", "3\n")
        for key, array in storages.items():
            order = "<" if byteorder == "little" else ">"
            archive.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder(order)).tobytes())
    monkeypatch.undo()


def test_a_torch_save_file_loads_without_torch(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {"conv1.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
              "bn1.num_batches_tracked": np.array(7, np.int64), "fc.bias": rng.standard_normal(5)}
    write_torch_zip(tmp_path / "w.pth", arrays, monkeypatch)
    loaded = load_torch_state_dict(tmp_path / "w.pth")
    assert list(loaded) == list(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    witness = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return subprocess.call, (["touch", str(witness)],)

    with zipfile.ZipFile(tmp_path / "evil.pth", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": Exploit()}, protocol=2))
    with pytest.raises(UnsafeWeightsError, match=r"evil.pth names [\w.]+, which a state dict of tensors never needs"):
        load_weights(tmp_path / "evil.pth")
    assert not witness.exists()


def test_files_that_are_not_weights_are_named(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is neither a PyTorch nor a safetensors file"):
        load_weights(tmp_path / "notes.txt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("readme.txt", "x")
    with pytest.raises(ValueError, match="other.zip is a zip file but not a torch.save archive"):
        load_weights(tmp_path / "other.zip")
    with pytest.raises(FileNotFoundError, match="no weight file at"):
        load_weights(tmp_path / "missing.pth")


# -- views that a stranger's file may declare ------------------------------------------------------

TWO_FLOATS = {"s": np.array([1.5, -2.0], np.float32)}


@pytest.mark.parametrize("view,numel,message", [
    (("s", 0, (4096,), (1,)), None, r"reaches element 4095 of a storage of 2 elements"),
    (("s", 0, (2,), (10 ** 9,)), None, r"reaches element 1000000000 of a storage of 2 elements"),
    (("s", 5, (1,), (1,)), None, r"reaches element 5 of a storage of 2"),
    (("s", 0, (2,), (-1,)), None, r"stride \(-1,\) is not a tuple of integers >= 0"),
    (("s", 0, (-2,), (1,)), None, r"size \(-2,\) is not a tuple of integers >= 0"),
    (("s", -1, (1,), (1,)), None, r"its offset -1 is not an integer >= 0"),
    (("s", 0, (2, 2), (1,)), None, r"its size \(2, 2\) and stride \(1,\) differ in length"),
    (("s", 0, (4096,), (1,)), {"s": 4096}, r"declares 4096 elements \(16384 bytes\) but its record "
                                            r"archive/data/s holds 8 bytes"),
    (("s", 0, (2 ** 30, 2 ** 30), (0, 0)), None, rf"has more elements \({2 ** 60}\) than atrousnp reads"),
    (("s", 0, (MAX_ELEMENTS + 1,), (0,)), None, rf"has more elements \({MAX_ELEMENTS + 1}\) than atrousnp reads"),
    (("s", 0, (0, 2 ** 62), (1, 1)), None, r"has an axis longer than atrousnp reads"),
])
def test_a_view_outside_its_storage_is_refused_naming_the_file_and_tensor(tmp_path, monkeypatch, view, numel,
                                                                          message):
    """Each of these once returned bytes of this process's heap as weights, or crashed it."""
    write_torch_archive(tmp_path / "bad.pth", TWO_FLOATS, {"conv1.weight": view}, monkeypatch, numels=numel)
    with pytest.raises(WeightFileError, match=r"bad.pth: tensor 'conv1.weight': .*" + message):
        load_weights(tmp_path / "bad.pth")


def test_a_byteorder_that_is_neither_little_nor_big_is_refused(tmp_path, monkeypatch):
    write_torch_archive(tmp_path / "w.pth", TWO_FLOATS, {"w": ("s", 0, (2,), (1,))}, monkeypatch, byteorder="middle")
    with pytest.raises(WeightFileError, match=r"w.pth: its byteorder record says 'middle'"):
        load_weights(tmp_path / "w.pth")


def test_big_endian_storages_and_views_into_a_shared_storage_load(tmp_path, monkeypatch):
    storage = {"s": np.arange(12, dtype=np.float64)}
    views = {"whole": ("s", 0, (3, 4), (4, 1)), "transposed": ("s", 0, (4, 3), (1, 4)), "tail": ("s", 10, (2,), (1,))}
    write_torch_archive(tmp_path / "w.pth", storage, views, monkeypatch, byteorder="big")
    loaded = load_weights(tmp_path / "w.pth")
    np.testing.assert_array_equal(loaded["whole"], np.arange(12.0).reshape(3, 4))
    np.testing.assert_array_equal(loaded["transposed"], np.arange(12.0).reshape(3, 4).T)
    np.testing.assert_array_equal(loaded["tail"], [10.0, 11.0])
    assert loaded["whole"].dtype == np.float64 and loaded["whole"].flags.writeable


def test_an_expanded_view_loads_as_a_read_only_broadcast_without_copying(tmp_path, monkeypatch):
    write_torch_archive(tmp_path / "w.pth", {"s": np.array([3.0], np.float32)}, {"b": ("s", 0, (1000, 1000), (0, 0))},
                        monkeypatch)
    loaded = load_weights(tmp_path / "w.pth")["b"]
    assert loaded.shape == (1000, 1000) and loaded.strides == (0, 0) and not loaded.flags.writeable
    assert (loaded == 3.0).all()


def test_a_storage_record_that_is_missing_is_named(tmp_path, monkeypatch):
    write_torch_archive(tmp_path / "w.pth", TWO_FLOATS, {"w": ("s", 0, (2,), (1,))}, monkeypatch)
    with zipfile.ZipFile(tmp_path / "w.pth") as archive, zipfile.ZipFile(tmp_path / "cut.pth", "w") as cut:
        for name in archive.namelist():
            if name != "archive/data/s":
                cut.writestr(name, archive.read(name))
    with pytest.raises(WeightFileError, match=r"cut.pth: tensor 'w': its storage record archive/data/s is missing"):
        load_weights(tmp_path / "cut.pth")


def malformed_pickles():
    """data.pkl bodies that are not state dicts: truncated, of the wrong types, nested deeply."""
    truncated = pickle.dumps({"w": list(range(100))}, protocol=2)[:-20]
    deep = b"\x80\x02" + b"]" * 200_000 + b"." # 200,000 nested empty lists: a deep structure
    return {"truncated": truncated, "a list": pickle.dumps([1, 2], protocol=2),
            "ints as tensors": pickle.dumps({"w": 3}, protocol=2), "deep": deep,
            "not a pickle": b"hello world",
            "4 EiB of bytes": b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 62) + b".",
            "a memo slot 2^32": b"\x80\x02}r\xff\xff\xff\xff."}


@pytest.mark.parametrize("kind", list(malformed_pickles()))
def test_a_malformed_pickle_is_one_error_naming_the_file(tmp_path, kind):
    with zipfile.ZipFile(tmp_path / "bad.pth", "w") as archive:
        archive.writestr("archive/data.pkl", malformed_pickles()[kind])
    with pytest.raises(WeightFileError, match=r"bad.pth (is a malformed torch.save file|does not hold a state dict)"):
        load_weights(tmp_path / "bad.pth")


def test_a_pickle_cannot_change_how_the_next_file_loads(tmp_path, monkeypatch):
    """BUILD on a global sets its attributes: here the rebuild function's __defaults__."""
    poison = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(N}X\x0c\x00\x00\x00__defaults__)stb0}."
    with zipfile.ZipFile(tmp_path / "poison.pth", "w") as archive:
        archive.writestr("archive/data.pkl", poison)
    with pytest.raises(UnsafeWeightsError, match=r"poison.pth: its pickle tries to modify a function it calls"):
        load_weights(tmp_path / "poison.pth")
    write_torch_zip(tmp_path / "w.pth", {"w": np.arange(3.0)}, monkeypatch)
    np.testing.assert_array_equal(load_weights(tmp_path / "w.pth")["w"], np.arange(3.0))


def test_an_axis_of_one_element_may_have_any_stride(tmp_path, monkeypatch):
    """torch.load takes it: an axis of length 1 never steps."""
    write_torch_archive(tmp_path / "w.pth", TWO_FLOATS, {"w": ("s", 0, (1, 2), (2 ** 62, 1))}, monkeypatch)
    np.testing.assert_array_equal(load_weights(tmp_path / "w.pth")["w"], [[1.5, -2.0]])


def test_a_compressed_storage_record_and_a_broken_zip_are_refused(tmp_path, monkeypatch):
    write_torch_archive(tmp_path / "w.pth", {"s": np.zeros(1000, np.float32)}, {"w": ("s", 0, (1,), (1,))},
                        monkeypatch)
    with zipfile.ZipFile(tmp_path / "w.pth") as archive, \
            zipfile.ZipFile(tmp_path / "deflated.pth", "w", zipfile.ZIP_DEFLATED) as deflated:
        for name in archive.namelist():
            deflated.writestr(name, archive.read(name))
    with pytest.raises(WeightFileError, match=r"deflated.pth: tensor 'w': its storage record archive/data/s is "
                                              r"compressed, which torch.save never does"):
        load_weights(tmp_path / "deflated.pth")
    (tmp_path / "broken.pth").write_bytes(b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, 46, 0, 0))
    with pytest.raises(WeightFileError, match=r"broken.pth starts as a zip file .* but is truncated or corrupt"):
        load_weights(tmp_path / "broken.pth")


def test_a_corrupted_storage_record_is_one_error_naming_the_file(tmp_path, monkeypatch):
    write_torch_archive(tmp_path / "w.pth", TWO_FLOATS, {"w": ("s", 0, (2,), (1,))}, monkeypatch)
    raw = bytearray((tmp_path / "w.pth").read_bytes())
    at = raw.index(TWO_FLOATS["s"].tobytes())
    raw[at] ^= 0xFF  # the bytes no longer match the record's CRC
    (tmp_path / "w.pth").write_bytes(bytes(raw))
    with pytest.raises(WeightFileError, match=r"w.pth: tensor 'w': its storage record archive/data/s cannot be read "
                                              r"\(BadZipFile: Bad CRC"):
        load_weights(tmp_path / "w.pth")


def test_the_backbone_flag_refuses_a_hostile_file_in_one_line(tmp_path, monkeypatch):
    """Through the training example a stride of 1e9 once ended the process with a segfault."""
    write_torch_archive(tmp_path / "evil.pth", TWO_FLOATS, {"conv1.weight": ("s", 0, (2,), (10 ** 9,))}, monkeypatch)
    root = anp.data.make_synthetic_voc(tmp_path / "voc", 2, 2, 40, seed=0)
    result = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--backbone-weights",
                             str(tmp_path / "evil.pth"), "--voc-root", str(root), "--crop-size", "40", "--batch-size",
                             "2", "--backend", "numpy", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "evil.pth: tensor 'conv1.weight'" in result.stderr and "Traceback" not in result.stderr


# -- safetensors ----------------------------------------------------------------------------------

def write_safetensors(path, arrays, dtypes):
    """The format: u64 little-endian header length, a JSON header of dtype/shape/offsets, raw bytes."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, array in arrays.items():
        blob = array.tobytes()
        header[name] = {"dtype": dtypes[name], "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def test_safetensors_load_with_every_dtype_we_read(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.standard_normal((2, 3)).astype(np.float32)
    bfloat16 = (values.view(np.uint32) >> 16).astype(np.uint16)  # truncated: exactly representable back
    arrays = {"w": values, "h": values.astype(np.float16), "b": bfloat16, "i": np.arange(6, dtype=np.int64),
              "m": np.array([True, False])}
    write_safetensors(tmp_path / "w.safetensors", arrays, {"w": "F32", "h": "F16", "b": "BF16", "i": "I64", "m": "BOOL"})
    loaded = load_weights(tmp_path / "w.safetensors")
    np.testing.assert_array_equal(loaded["w"], values)
    np.testing.assert_array_equal(loaded["h"], values.astype(np.float16))
    np.testing.assert_array_equal(loaded["b"], (bfloat16.astype(np.uint32) << 16).view(np.float32))
    np.testing.assert_array_equal(loaded["i"], np.arange(6))
    assert loaded["m"].tolist() == [True, False]


def test_safetensors_written_by_the_safetensors_package_load_bit_exactly(tmp_path):
    numpy_api = pytest.importorskip("safetensors.numpy")
    arrays = {"a": np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32), "n": np.arange(5)}
    numpy_api.save_file(arrays, str(tmp_path / "w.safetensors"))
    loaded = load_safetensors(tmp_path / "w.safetensors")
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype
        np.testing.assert_array_equal(loaded[name], array)


def write_raw_safetensors(path, header, body):
    encoded = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + body)


@pytest.mark.parametrize("header,body", [
    pytest.param({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8), id="past the body"),
    pytest.param({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, bytes(8), id="reversed"),
    pytest.param({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, bytes(8), id="negative"),
    pytest.param({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8), id="a hole"),
    pytest.param({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), id="overlapping"),
    pytest.param({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), id="negative shape"),
    pytest.param({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, bytes(8), id="shape vs bytes"),
    pytest.param({"a": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}, bytes(8), id="wrong JSON type"),
    pytest.param({"a": {"dtype": "F32", "data_offsets": [0, 8]}}, bytes(8), id="missing field"),
    pytest.param({"a": json.loads("[" * 200 + "]" * 200)}, bytes(8), id="nesting"),
])
def test_a_safetensors_header_that_does_not_tile_its_body_is_refused_naming_the_file(tmp_path, header, body):
    write_raw_safetensors(tmp_path / "bad.safetensors", header, body)
    with pytest.raises(WeightFileError, match=r"bad.safetensors is not a valid safetensors file"):
        load_weights(tmp_path / "bad.safetensors")


def test_a_safetensors_header_longer_than_the_file_is_refused(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(struct.pack("<Q", 10 ** 12) + b'{"a": 1}')
    with pytest.raises(WeightFileError, match=r"bad.safetensors is not a valid safetensors file"):
        load_weights(tmp_path / "bad.safetensors")


def test_a_safetensors_dtype_we_do_not_read_is_named(tmp_path):
    write_raw_safetensors(tmp_path / "c.safetensors", {"z": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}},
                          bytes(8))
    with pytest.raises(WeightFileError, match=r"c.safetensors: tensor 'z' has dtype C64, which atrousnp does not"):
        load_weights(tmp_path / "c.safetensors")


# -- against PyTorch, where it is installed -------------------------------------------------------

@pytest.mark.parametrize("name", ["resnet18", "resnet50", "deeplabv3_resnet50"])
def test_torch_save_files_of_torchvision_models_load_bit_exactly(tmp_path, name):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    builder = getattr(torchvision.models.segmentation if name.startswith("deeplab") else torchvision.models, name)
    kwargs = dict(weights=None, weights_backbone=None) if name.startswith("deeplab") else dict(weights=None)
    state = builder(**kwargs).state_dict()
    state["extra.bfloat16"] = torch.randn(3).to(torch.bfloat16)
    state["extra.transposed"] = torch.arange(6.0).reshape(2, 3).t()  # a non-contiguous view
    torch.save(state, tmp_path / "w.pth")
    loaded = load_weights(tmp_path / "w.pth")
    assert list(loaded) == list(state)
    for key, tensor in state.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert loaded[key].dtype == expected.dtype and loaded[key].shape == expected.shape, key
        np.testing.assert_array_equal(loaded[key], expected)


def test_the_legacy_torch_format_is_refused_with_what_to_do(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match=r"legacy \(pre-1.6\) format.*torch.save\(torch.load\(path\), new_path\)"):
        load_weights(tmp_path / "old.pth")


@pytest.mark.full_model
@pytest.mark.parametrize("output_stride,dilate", [(32, [False, False, False]), (16, [False, False, True]),
                                                  (8, [False, True, True])])
def test_an_imagenet_resnet50_gives_torchvisions_features_at_every_output_stride(tmp_path, backend, output_stride,
                                                                                   dilate):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=dilate).eval()
    for module in reference.modules():  # non-trivial statistics, so that BN's import is checked too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")
    model = anp.models.deeplabv3_resnet50(num_classes=3, output_stride=output_stride,
                                          backbone_weights=tmp_path / "resnet50.pth", rng=np.random.default_rng(0))
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    features = torch.nn.Sequential(*list(reference.children())[:-2])
    with torch.no_grad():
        expected = features(torch.from_numpy(x)).numpy()
    with anp.no_grad():
        got = model.backbone.eval()(anp.tensor(x)).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())


def test_a_backbone_file_that_does_not_fit_is_refused_naming_what(tmp_path):
    small = anp.models.deeplabv3_resnet18(num_classes=3, rng=np.random.default_rng(0)).state_dict()
    anp.save(tmp_path / "r18.npz", {"model": small})
    backbone = anp.models.resnet.resnet50(rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"load_state_dict: shape mismatch for layer1.0.conv1.weight"):
        backbone.load_torchvision_backbone(load_weights(tmp_path / "r18.npz"))
    same = anp.models.resnet.resnet18(rng=np.random.default_rng(1)).load_torchvision_backbone(
        load_weights(tmp_path / "r18.npz"))  # an atrousnp checkpoint's backbone.* entries, fc ignored
    np.testing.assert_array_equal(same.conv1.weight.numpy(), small["backbone.conv1.weight"])


# -- your own classes -----------------------------------------------------------------------------

def write_three_class_voc(root, count=6, size=40):
    """A VOC-layout set with 3 classes (sky, grass, road) in a palette of its own, 255 = ignore."""
    folder = Path(root) / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    palette = [90, 160, 230, 40, 160, 40, 110, 110, 110] + [0, 0, 0] * 253
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        ids = [f"{split}_{i}" for i in range(count)]
        for image_id in ids:
            horizon, road = rng.integers(size // 4, size // 2), rng.integers(size // 2 + 4, size - 4)
            label = np.zeros((size, size), np.uint8)
            label[horizon:] = 1
            label[road:] = 2
            label[horizon, :] = 255
            colours = np.array(palette[:9], np.uint8).reshape(3, 3)
            image = colours[np.minimum(label, 2)] + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / "JPEGImages" / f"{image_id}.jpg")
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(folder / "SegmentationClass" / f"{image_id}.png")
        (folder / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def test_a_dataset_with_its_own_classes_trains_evaluates_and_is_named(tmp_path):
    root = write_three_class_voc(tmp_path / "mydata")
    (tmp_path / "classes.txt").write_text("sky\ngrass\nroad\n")
    run = subprocess.run([sys.executable, str(EXAMPLES / "train_voc_subset.py"), "--voc-root", str(root),
                          "--class-names", str(tmp_path / "classes.txt"), "--crop-size", "40", "--batch-size", "2",
                          "--iterations", "2", "--eval-every", "2", "--backend", "numpy",
                          "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["per_class_iou"]) <= {"sky", "grass", "road"} and metrics["per_class_iou"]
    assert metrics["settings"]["num_classes"] == 3 and metrics["settings"]["class_names"] == ["sky", "grass", "road"]
    assert (tmp_path / "run" / "predictions.png").stat().st_size > 0
    evaluated = subprocess.run([sys.executable, str(EXAMPLES / "evaluate.py"), str(tmp_path / "run" / "checkpoint.npz"),
                                "--backend", "numpy"], capture_output=True, text=True, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert set(json.loads(evaluated.stdout)["per_class_iou"]) <= {"sky", "grass", "road"}
    image = next((root / "VOC2012" / "JPEGImages").glob("val_*.jpg"))
    segmented = subprocess.run([sys.executable, str(EXAMPLES / "segment.py"), str(image), "--checkpoint",
                                str(tmp_path / "run" / "checkpoint.npz"), "--backend", "numpy", "--flip",
                                "--out", str(tmp_path / "segmented.png")], capture_output=True, text=True, timeout=600)
    assert segmented.returncode == 0, segmented.stderr[-2000:]
    found = segmented.stdout.split(": ", 1)[1].strip().split(", ")
    assert found and set(found) <= {"sky", "grass", "road"}
    assert Image.open(tmp_path / "segmented.png").size[0] > 0


def test_the_legend_names_every_colour_drawn(tmp_path, monkeypatch):
    """The classes in truth or prediction (background too), the ignore label, and the errors."""
    from matplotlib.figure import Figure
    labels = []
    monkeypatch.setattr(Figure, "legend", lambda self, handles, **kw: labels.extend(h.get_label() for h in handles))
    image, truth = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    truth[4:] = 2
    truth[0] = 255
    anp.viz.save_prediction_grid(tmp_path / "p.png", [(image, truth, np.ones((8, 8), np.uint8))],
                                 ("sky", "grass", "road", "car"))
    assert labels == ["sky", "grass", "road", "ignored (255)", "wrong"]


def test_label_maps_are_solid_colours_that_differ_and_errors_are_marked():
    colours = anp.viz.class_colours(21)
    distances = np.linalg.norm(colours[:, None] - colours[None], axis=2)
    assert distances[~np.eye(21, dtype=bool)].min() > 0.25  # no two classes look alike
    assert np.linalg.norm(colours - np.array(anp.viz.WRONG), axis=1).min() > 0.25  # nor like an error
    truth = np.array([[0, 1], [2, 255]], np.uint8)
    painted = anp.viz.paint(truth, 21)
    assert (painted[1, 1] == 255).all() and len({tuple(p) for p in painted.reshape(-1, 3)}) == 4
    errors = anp.viz.paint_errors(np.zeros((2, 2, 3), np.uint8), truth, np.array([[0, 2], [2, 0]]))
    assert (errors[0, 1] == np.round(np.array(anp.viz.WRONG) * 255)).all() and (errors[1, 1] == 255).all()
    assert anp.viz.image_miou(truth, np.array([[0, 2], [2, 0]]), 21) == pytest.approx((1 + 0 + 0.5) / 3)
