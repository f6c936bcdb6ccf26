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


def test_any_nested_dict_of_str_keys_round_trips_even_one_shaped_like_the_array_marker(tmp_path):
    """Format 1 marked arrays with {"__array__": path}; a user's dict of that shape came back as an array."""
    state = {"marker": {"__array__": "weights"}, "weights": np.arange(3), "__meta__.json": np.ones(2),
             "nested": [{"__array__": None}, np.zeros((0, 2))], "none": None}
    anp.save(tmp_path / "ck.npz", state)
    loaded = anp.load(tmp_path / "ck.npz")
    assert loaded["marker"] == {"__array__": "weights"} and loaded["none"] is None
    assert loaded["nested"][0] == {"__array__": None} and loaded["nested"][1].shape == (0, 2)
    np.testing.assert_array_equal(loaded["weights"], np.arange(3))
    np.testing.assert_array_equal(loaded["__meta__.json"], np.ones(2))


@pytest.mark.parametrize("model,error,message", [
    ({"w": np.array([None, 1], dtype=object)}, TypeError, "the array at model/w holds Python objects"),
    ({"w": np.zeros(2, dtype=[("a", object)])}, TypeError, "the array at model/w holds Python objects"),
    ({"w": {1, 2}}, TypeError, "cannot store a set at model/w"),
    ({"w": object()}, TypeError, "cannot store a object at model/w"),
    ({"": np.zeros(1)}, ValueError, "keys must be non-empty strings without '/', got '' under model"),
    ({"a/b": np.zeros(1)}, ValueError, "keys must be non-empty strings without '/', got 'a/b' under model"),
    ({3: np.zeros(1)}, ValueError, "keys must be non-empty strings without '/', got 3 under model"),
])
def test_what_load_would_refuse_is_refused_before_anything_is_written(tmp_path, model, error, message):
    path = tmp_path / "ck.npz"
    anp.save(path, {"model": {"w": np.arange(2.0)}})
    before = path.read_bytes()
    with pytest.raises(error, match=message):
        anp.save(path, {"model": model})
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]


def test_a_save_removes_the_temporaries_that_killed_saves_of_the_same_target_left(tmp_path):
    import socket
    import subprocess
    import sys
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    host = socket.gethostname()
    stale = tmp_path / f".ck.npz.{host}-{dead}.tmp-abc.npz"            # its process is gone
    live = tmp_path / f".ck.npz.{host}-{os.getppid()}.tmp-def.npz"      # its process may still be writing
    other = tmp_path / f".other.npz.{host}-{dead}.tmp-ghi.npz"          # another target's
    for leftover in (stale, live, other):
        leftover.write_bytes(b"x" * 100)
    anp.save(tmp_path / "ck.npz", {"w": np.zeros(1)})
    assert not stale.exists() and live.exists() and other.exists()
