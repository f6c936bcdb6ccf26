"""The training loop: it learns, and an interrupted run resumes to the same weights."""

import json

import numpy as np
import pytest

import atrousnp as anp
from atrousnp.train import TrainConfig, loop, resolve, strategies, train
from helpers import tiny_train_config


def test_the_learning_rate_defaults_to_the_papers_when_fine_tuning_and_to_0_02_from_scratch():
    """Decided in resolve(), so that the library and the command line agree."""
    assert resolve(TrainConfig()).lr == 0.02
    assert resolve(TrainConfig(backbone_weights="resnet50.pth")).lr == 0.007   # §4.1
    assert resolve(TrainConfig(backbone_weights="resnet50.pth", lr=0.01)).lr == 0.01


def test_a_short_run_lowers_the_loss_and_writes_its_outputs(tmp_path):
    config = tiny_train_config(tmp_path, iterations=40, eval_every=20, checkpoint_every=20, backend="numba")
    metrics = train(config)
    run = tmp_path / "run"
    for name in ("metrics.json", "curves.png", "predictions.png", "checkpoint.npz"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["miou"] == pytest.approx(metrics["miou"])
    assert saved["val_history"]["iteration"] == [20, 40] and len(saved["val_history"]["miou"]) == 2
    losses = anp.load(run / "checkpoint.npz")["history"]["loss"]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = train(tiny_train_config(tmp_path / "a"))
    expected = anp.load(tmp_path / "a" / "run" / "checkpoint.npz")

    calls = {"n": 0}
    real_batch = strategies.random_batch

    def batch_then_crash(*args):
        calls["n"] += 1
        if calls["n"] == 5:  # after the checkpoint at iteration 3, during iteration 5
            raise KeyboardInterrupt
        return real_batch(*args)

    monkeypatch.setattr(strategies, "random_batch", batch_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_train_config(tmp_path / "b"))
    assert anp.load(tmp_path / "b" / "run" / "checkpoint.npz")["iteration"] == 3
    monkeypatch.setattr(strategies, "random_batch", real_batch)
    resumed = train(tiny_train_config(tmp_path / "b", resume=True))
    got = anp.load(tmp_path / "b" / "run" / "checkpoint.npz")
    for name, value in expected["model"].items():
        np.testing.assert_array_equal(got["model"][name], value, err_msg=name)
    assert got["history"]["loss"] == expected["history"]["loss"]
    assert resumed["miou"] == straight["miou"]


def test_a_batch_of_one_is_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="batch_size must be at least 2"):
        train(tiny_train_config(tmp_path, batch_size=1))


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:anp.cuda.graph. numba's CUDA simulator")
def test_on_cuda_a_graphed_run_equals_an_eager_one(tmp_path, monkeypatch):
    """The example replays each step as a CUDA graph on the cuda backend (its default there):
    the same losses and weights as launching every kernel, bit for bit, with an evaluation and
    a checkpoint between steps. A DeepLabv3 of a few channels, for the CUDA simulator's sake."""
    def tiny_model(config, rng):
        backbone = anp.models.ResNet(anp.models.resnet.BasicBlock, (1, 1, 1, 1), widths=(2, 2, 4, 4), stem_width=2,
                                     output_stride=16, rng=rng)
        return anp.models.DeepLabV3(backbone, anp.models.ASPPHead(backbone.out_channels, config.num_classes,
                                                                  channels=4, rng=rng))
    monkeypatch.setattr(loop, "build_model", tiny_model)
    runs = {}
    for graphed in (False, True):
        config = tiny_train_config(tmp_path / str(graphed), backend="cuda", cuda_graph=graphed, synthetic_train=4,
                                   synthetic_val=1, synthetic_size=24, crop_size=24, batch_size=2, iterations=4,
                                   eval_every=2, checkpoint_every=4)
        train(config)
        runs[graphed] = anp.load(tmp_path / str(graphed) / "run" / "checkpoint.npz")
    assert runs[True]["history"] == runs[False]["history"]
    for name, value in runs[False]["model"].items():
        np.testing.assert_array_equal(runs[True]["model"][name], value, err_msg=name)
