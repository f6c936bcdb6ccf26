"""What a run leaves in ``--out``: its lock, checkpoints, and at the end metrics and pictures.

    checkpoint.npz    model, optimiser, iteration, Generator state, history (atomic writes)
    metrics.json      val mIoU, per-class IoU, pixel accuracy, time, each evaluation's mIoU, settings
    curves.png        training loss and val mIoU against iteration
    predictions.png   image / truth / prediction / errors for a few val images
"""

import contextlib
import fcntl
import os
import socket
import stat

from ..checkpoint import load, save
from ..files import save_json
from ..metrics import mean_iou, pixel_accuracy
from ..viz import save_prediction_grid, save_training_curves
from .config import TrainConfig, plain
from .evaluation import named_iou, saved_config

CHECKPOINT = "checkpoint.npz"
HISTORY = ("iteration", "loss", "val_iteration", "val_miou")  # what a run records, one list each


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights. The run stops there, and the
    last checkpoint, written while everything was finite, is kept as it was."""


class FolderInUseError(RuntimeError):
    """Another training run holds the ``--out`` folder."""


@contextlib.contextmanager
def folder_lock(out):
    """Hold ``out/.lock`` for the run: a second run into the same folder is refused at once
    rather than both running and the last replacing the other's checkpoint. The lock is the
    kernel's (flock), so it ends with the process however that ends, and no stale lock stays.
    The file is opened without following a symbolic link, and must be a regular file with no
    other name (a hard link): a link planted there would otherwise have the run overwrite
    whatever it points to. Either is a ValueError."""
    path = out / ".lock"
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise ValueError(f"{path} cannot be the run's lock file ({error.strerror}: a symbolic link or another "
                         "program's file?); remove it, or give this run another --out") from None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(descriptor)
        raise ValueError(f"{path} is not a plain file of its own (a folder, a pipe, or a hard link to another "
                         "file); remove it, or give this run another --out")
    with os.fdopen(descriptor, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = handle.read().strip() or "another process"
            raise FolderInUseError(f"{out} is in use by another training run ({owner}); wait for it to "
                                   "finish, or give this run another --out") from None
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def save_checkpoint(path, model, optimizer, rng, iteration, history, config):
    save(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                "rng": rng.bit_generator.state, "history": history, "config": plain(config)})


# What a resumed run must share with the run it continues: the model, its data and its optimiser.
# The rest (iterations ahead, evaluation and checkpoint cadence, backend) may change.
RESUME_MUST_MATCH = ("backbone", "backbone_layers", "backbone_weights", "head", "aspp_rates", "image_pooling",
                     "cascade_blocks", "multi_grid", "output_stride", "num_classes", "class_names", "dtype", "lr",
                     "momentum", "weight_decay", "backbone_lr_scale", "batch_size", "crop_size", "seed", "voc_root",
                     "train_split", "use_aug", "max_images", "synthetic_kind", "synthetic_train", "synthetic_size")


def resume(path, model, optimizer, rng, config):
    """Put the checkpoint's weights, optimiser state and random stream back; returns
    (iteration, history). A checkpoint trained with other settings, past ``iterations``, or
    missing any of these (or holding them in another form) is refused, naming it."""
    state = load(path)
    _check_resumable(state, config, path)
    history, iteration = state.get("history"), state.get("iteration")
    if not (isinstance(history, dict) and all(isinstance(history.get(k), list) for k in HISTORY)
            and isinstance(iteration, int) and not isinstance(iteration, bool) and iteration >= 0
            and isinstance(state.get("model"), dict) and isinstance(state.get("optimizer"), dict)):
        raise ValueError(f"resume: {path} is not a training checkpoint (it lacks its iteration, history, "
                         "model or optimizer, or holds them in another form)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    try:
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"resume: {path} holds no usable random-stream state ({error})") from None
    return iteration, history


def _check_resumable(state, config, path):
    """Refuse to continue a checkpoint under other settings, naming each that differs (a
    setting the checkpoint does not record counts as its default)."""
    saved_config(state, path)
    saved, now, default = state["config"], plain(config), plain(TrainConfig())
    differ = [f"{name} was {saved.get(name, default[name])!r}, now {now[name]!r}" for name in RESUME_MUST_MATCH
              if saved.get(name, default[name]) != now[name]]
    if differ:
        raise ValueError(f"resume: {path} was trained with other settings ({'; '.join(differ)}); "
                         "resume with the same ones, or start a new run with another --out")
    if isinstance(state.get("iteration"), int) and state["iteration"] > config.iterations:
        raise ValueError(f"resume: {path} is at iteration {state['iteration']}, past iterations "
                         f"({config.iterations}); pass --iterations {state['iteration']} or more")


def diverged(iteration, what, saved, checkpoint_path, config):
    """The DivergenceError to raise: where, why, and which checkpoint is kept."""
    kept = f"the checkpoint of iteration {saved} in {checkpoint_path} is kept" if saved is not None else \
        "no checkpoint had been written"
    return DivergenceError(f"training diverged at iteration {iteration}: {what}; {kept}. "
                           f"Try a lower learning rate (it was {config.lr})")


def write_results(out, cm, examples, history, seconds, config):
    """metrics.json, curves.png and predictions.png; returns the metrics."""
    metrics = {"miou": mean_iou(cm), "pixel_accuracy": pixel_accuracy(cm),
               "per_class_iou": named_iou(cm, config.class_names), "train_seconds": seconds,
               "val_history": {"iteration": history["val_iteration"], "miou": history["val_miou"]},
               "settings": plain(config)}
    save_json(out / "metrics.json", metrics)
    save_training_curves(out / "curves.png", history)
    save_prediction_grid(out / "predictions.png", examples, config.class_names)
    return metrics
