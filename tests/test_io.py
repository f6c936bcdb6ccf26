"""Weights from PyTorch and safetensors files without PyTorch (atrousnp.io), ImageNet backbones,
and training on a dataset with its own classes."""

import collections
import io
import json
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
from atrousnp.io import UnsafeWeightsError, load_safetensors, load_torch_state_dict, load_weights

EXAMPLES = Path(__file__).parents[1] / "examples"


# -- a torch.save file written without torch ------------------------------------------------------

def write_torch_zip(path, arrays, monkeypatch):
    """Write ``arrays`` as ``torch.save(state_dict)`` does (PyTorch >= 1.6), with only the
    standard library: a zip holding ``archive/data.pkl``, whose tensors are calls
    ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` and
    whose storages are persistent ids ``("storage", torch.FloatStorage, key, "cpu", numel)``,
    and each storage's bytes as ``archive/data/<key>``. Pickle writes a global by its module
    and name, so stand-in ``torch`` modules hold them while the pickle is written."""
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

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage, shape):
            self.storage, self.shape = storage, shape

        def __reduce__(self):
            array = self.storage.array
            stride = tuple(s // array.itemsize for s in array.reshape(self.shape).strides)  # in elements
            return _rebuild_tensor_v2, (self.storage, 0, self.shape, stride, False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", storage_types[obj.array.dtype], obj.key, "cpu", obj.array.size)
            return None

    state = collections.OrderedDict()
    storages = {}
    for i, (name, array) in enumerate(arrays.items()):
        storages[str(i)] = Storage(str(i), np.ascontiguousarray(array))
        state[name] = Tensor(storages[str(i)], tuple(array.shape))
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(state)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, storage in storages.items():
            archive.writestr(f"archive/data/{key}", storage.array.astype(storage.array.dtype.newbyteorder("<")).tobytes())
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


def test_the_legend_names_the_classes_that_appear(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    labels = []
    monkeypatch.setattr(Figure, "legend", lambda self, handles, **kw: labels.extend(h.get_label() for h in handles))
    image, truth = np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8)
    truth[4:] = 2
    truth[0] = 255
    anp.viz.save_prediction_grid(tmp_path / "p.png", [(image, truth, np.ones((8, 8), np.uint8))],
                                 class_names=("sky", "grass", "road"))
    assert labels == ["sky", "grass", "road"]
