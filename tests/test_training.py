"""The training loop: it learns, and an interrupted run resumes to the same weights."""

import json

import numpy as np
import pytest

import atrousnp.training as training
from atrousnp.training import train
from helpers import tiny_train_config


def test_a_short_run_lowers_the_loss_and_writes_its_outputs(tmp_path):
    config = tiny_train_config(tmp_path, iterations=40, eval_every=20, checkpoint_every=20, backend="numba")
    metrics = train(config)
    run = tmp_path / "run"
    for name in ("metrics.json", "curves.png", "predictions.png", "checkpoint.npz"):
        assert (run / name).is_file(), name
    assert json.loads((run / "metrics.json").read_text())["miou"] == pytest.approx(metrics["miou"])
    losses = training.load(run / "checkpoint.npz")["history"]["loss"]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = train(tiny_train_config(tmp_path / "a"))
    expected = training.load(tmp_path / "a" / "run" / "checkpoint.npz")

    calls = {"n": 0}
    real_batch = training.random_batch

    def batch_then_crash(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at iteration 3, during iteration 5
            raise KeyboardInterrupt
        return real_batch(*args)

    monkeypatch.setattr(training, "random_batch", batch_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tmp_path / "b"))
    assert training.load(tmp_path / "b" / "run" / "checkpoint.npz")["iteration"] == 3
    monkeypatch.setattr(training, "random_batch", real_batch)
    resumed = train(tiny_train_config(tmp_path / "b", resume=True))
    got = training.load(tmp_path / "b" / "run" / "checkpoint.npz")
    for name, value in expected["model"].items():
        np.testing.assert_array_equal(got["model"][name], value, err_msg=name)
    assert got["history"]["loss"] == expected["history"]["loss"]
    assert resumed["miou"] == straight["miou"]


def test_a_batch_of_one_is_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        train(tiny_train_config(tmp_path, batch_size=1))
