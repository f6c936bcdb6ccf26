"""Checkpoints round-trip bit-exactly, are written atomically and fail clearly."""

import os
import zipfile

import numpy as np
import pytest

import atrousnp as anp
from atrousnp import nn


def test_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(0)
    conv = nn.Conv2d(3, 4, 3, rng=rng)
    state = {"model": conv.state_dict(), "optimizer": {"lr": 0.01, "momentum_buffer.0": rng.standard_normal(3)},
             "iteration": 7, "rng": np.random.default_rng(3).bit_generator.state, "note": None,
             "scales": [0.5, 1.0], "half": np.float16(1.5) * np.ones(2, np.float16)}
    anp.save(tmp_path / "ck.npz", state)
    loaded = anp.load(tmp_path / "ck.npz")
    for name, value in state["model"].items():
        assert loaded["model"][name].dtype == value.dtype
        np.testing.assert_array_equal(loaded["model"][name], value)
    assert loaded["iteration"] == 7 and loaded["note"] is None and loaded["scales"] == [0.5, 1.0]
    assert loaded["rng"] == state["rng"]
    np.testing.assert_array_equal(loaded["half"], state["half"])


def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    anp.save(path, {"weights": np.arange(5.0)})

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        anp.save(path, {"weights": np.zeros(5)})
    monkeypatch.undo()
    np.testing.assert_array_equal(anp.load(path)["weights"], np.arange(5.0))
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind


def test_truncated_and_foreign_files_raise_clearly(tmp_path):
    path = tmp_path / "ck.npz"
    anp.save(path, {"weights": np.arange(1000.0)})
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz is not a readable checkpoint"):
        anp.load(tmp_path / "cut.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="other.npz is an .npz but not an atrousnp checkpoint"):
        anp.load(tmp_path / "other.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="text.npz is not a readable checkpoint"):
        anp.load(tmp_path / "text.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", tmp_path / "array.npz")
    with pytest.raises(ValueError, match="array.npz is not a readable checkpoint"):
        anp.load(tmp_path / "array.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        anp.load(tmp_path / "missing.npz")


def test_loading_never_unpickles(tmp_path):
    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("__meta__.json.npy", "w") as f:
            np.lib.format.write_array(f, np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        anp.load(path)


def test_unsupported_values_are_named(tmp_path):
    with pytest.raises(TypeError, match="cannot store a set at model/x"):
        anp.save(tmp_path / "ck.npz", {"model": {"x": {1, 2}}})
