"""Training and evaluation of DeepLabv3 on VOC-format data, as the paper trains it (§4):
SGD with momentum 0.9 and weight decay, the poly learning rate, random scale/crop/flip.

``train(config)`` runs a whole experiment and writes into ``config.out``:

    checkpoint.npz    model, optimiser, iteration, Generator state, history (atomic writes)
    metrics.json      val mIoU, per-class IoU, pixel accuracy, time, settings
    curves.png        training loss and val mIoU against iteration
    predictions.png   image / ground truth / prediction overlays for a few val images

Every random choice (batch contents, augmentation, initialisation) comes from one numpy
Generator seeded by ``config.seed`` and saved in each checkpoint, so ``resume=True``
continues exactly where an interrupted run stopped.
"""

import contextlib
import dataclasses
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import cuda, distributed
from . import functional as F
from . import models
from .backends import set_backend
from .checkpoint import load, save
from .data import TrainTransform, VOCSegmentation, keyed_batch, make_synthetic_voc, random_batch
from .data.classes import VOC_CLASSES, check_class_names
from .data.palette import IGNORE_INDEX
from .files import save_json
from .inference import check_scales, predict
from .io import load_weights
from .metrics import confusion_matrix, mean_iou, per_class_iou, pixel_accuracy
from .models.resnet import STAGE_UNITS
from .optim import SGD, PolyLR
from .tensor import tensor
from .viz import save_prediction_grid, save_training_curves

BACKBONES = {"small": models.deeplabv3_small, "resnet18": models.deeplabv3_resnet18,
             "resnet50": models.deeplabv3_resnet50, "resnet101": models.deeplabv3_resnet101}


@dataclasses.dataclass
class TrainConfig:
    voc_root: str = None            # None: the built-in synthetic set under data_dir
    data_dir: str = "data"
    train_split: str = "train"
    val_split: str = "val"
    max_images: int = None
    use_aug: bool = False           # labels from SBD's SegmentationClassAug (train split only)
    synthetic_train: int = 300
    synthetic_val: int = 60
    synthetic_size: int = 96
    synthetic_kind: str = "shapes"  # or "ablation": see atrousnp.data.synthetic
    num_classes: int = 21
    class_names: tuple = None       # one per class; None: VOC's 21 names, or the class numbers
    backbone: str = "small"
    backbone_weights: str = None    # an ImageNet ResNet (.pth, .safetensors) or atrousnp .npz to start from
    backbone_lr_scale: float = 0.1  # the backbone's rate relative to the head's, with backbone_weights
    backbone_layers: tuple = None   # units per stage of the small backbone; None: (1, 1, 1, 1)
    head: str = "aspp"
    aspp_rates: tuple = (6, 12, 18)  # at output stride 16, doubled at 8
    image_pooling: bool = True
    cascade_blocks: int = 3         # head="cascade": how many of blocks 5..7 follow block4
    output_stride: int = 16
    eval_output_stride: int = None  # None: the training one
    multi_grid: tuple = None
    crop_size: int = 96
    batch_size: int = 8
    iterations: int = 1500
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    eval_scales: tuple = (1.0,)
    flip: bool = False
    eval_every: int = 300
    checkpoint_every: int = 250
    backend: str = "numba"
    seed: int = 0
    out: str = "runs/voc_subset"
    resume: bool = False
    overwrite: bool = False         # start afresh in an --out that holds a checkpoint
    progress: bool = True
    distributed: bool = False       # one rank of an MPI job (mpiexec -n K): see atrousnp.distributed
    cuda_graph: bool = True         # backend "cuda": replay each step as a CUDA graph (crops keep one size)
    dtype: str = "float32"          # the model's and the images' floating-point type


def build_model(config, rng):
    settings = dict(num_classes=config.num_classes, output_stride=config.output_stride, multi_grid=config.multi_grid,
                    head=config.head, aspp_rates=config.aspp_rates, image_pooling=config.image_pooling,
                    cascade_blocks=config.cascade_blocks, rng=rng)
    if config.backbone_layers is not None:
        settings["layers"] = config.backbone_layers
    return BACKBONES[config.backbone](**settings).astype(config.dtype)


def class_names(config):
    """The name of each class: the configured ones, VOC's for 21 classes, else the numbers."""
    if config.class_names is not None:
        return tuple(config.class_names)
    return VOC_CLASSES if config.num_classes == len(VOC_CLASSES) else tuple(str(c) for c in range(config.num_classes))


def build_optimizer(model, config):
    """SGD over the model; with ``backbone_weights``, the pretrained backbone in a group of its own
    at ``backbone_lr_scale`` times the head's rate (VainF's DeepLabV3Plus-Pytorch takes 0.1), so
    fine-tuning adapts ImageNet features without washing them out while the new head learns."""
    settings = dict(lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    if config.backbone_weights is None:
        return SGD(list(model.parameters()), **settings)
    return SGD([{"params": list(model.backbone.parameters()), "lr": config.lr * config.backbone_lr_scale},
                {"params": list(model.classifier.parameters())}], **settings)


def datasets(config):
    root = config.voc_root
    if root is None:
        folder = "synthetic_voc" if config.synthetic_kind == "shapes" else f"synthetic_voc_{config.synthetic_kind}"
        root = make_synthetic_voc(Path(config.data_dir) / folder, config.synthetic_train,
                                  config.synthetic_val, config.synthetic_size, seed=config.seed,
                                  kind=config.synthetic_kind)
    return (VOCSegmentation(root, config.train_split, max_images=config.max_images, use_aug=config.use_aug),
            VOCSegmentation(root, config.val_split, max_images=config.max_images))


def evaluate(model, dataset, num_classes, output_stride=None, scales=(1.0,), flip=False, keep=0, indices=None):
    """Confusion matrix over ``dataset`` (or its ``indices``), and the first ``keep`` (image, truth,
    prediction) triples."""
    cm = np.zeros((num_classes, num_classes), np.int64)
    examples = []
    for i in range(len(dataset)) if indices is None else indices:
        image, label = dataset[i]
        prediction = predict(model, image, output_stride, scales, flip).argmax(axis=0)
        cm += confusion_matrix(prediction, label, num_classes)
        if len(examples) < keep:
            examples.append((image, label, prediction.astype(np.uint8)))
    return cm, examples


def evaluate_shared(model, dataset, config, scales=(1.0,), flip=False, keep=0):
    """``evaluate`` with the images dealt out to the ranks of a distributed run (rank r takes
    r, r + K, ...) and the confusion matrices summed: the whole set's matrix on every rank."""
    share = range(distributed.rank(), len(dataset), distributed.world_size())
    cm, examples = evaluate(model, dataset, config.num_classes, config.eval_output_stride, scales, flip, keep, share)
    return distributed.allreduce_sum(cm), examples


HISTORY = ("iteration", "loss", "val_iteration", "val_miou")  # what a run records, one list each


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights. The run stops there, and the
    last checkpoint, written while everything was finite, is kept as it was."""


class FolderInUseError(RuntimeError):
    """Another training run holds the ``--out`` folder."""


def all_finite(model):
    """True when every parameter and buffer of ``model`` is finite (no nan, no inf)."""
    return all(np.isfinite(t.numpy()).all() for t in list(model.parameters()) + list(model.buffers()))


POSITIVE_INTEGERS = ("iterations", "crop_size", "eval_every", "checkpoint_every", "num_classes", "synthetic_train",
                     "synthetic_val", "synthetic_size")


def check_config(config):
    """Refuse, before any data is read or anything written, a setting that cannot work
    (``check_settings``) or an ``out`` folder that cannot take this run (``check_out``)."""
    check_settings(config)
    check_out(config)


def check_settings(config):
    """A ValueError naming the first setting of ``config`` that cannot work, and its value."""
    for name in POSITIVE_INTEGERS:
        _positive_integer(name, getattr(config, name))
    if config.batch_size is None or _positive_integer("batch_size", config.batch_size) < 2:
        raise ValueError(f"batch_size must be at least 2: batch norm needs more than one value per channel "
                         f"in training (the image-pooling branch has one per image); got {config.batch_size}")
    if config.max_images is not None:
        _positive_integer("max_images", config.max_images, " or None (every image)")
    check_scales(config.eval_scales, "eval_scales")
    for name in ("lr", "backbone_lr_scale", "momentum", "weight_decay"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if config.backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}, got {config.backbone!r}")
    if config.head not in ("aspp", "cascade"):
        raise ValueError(f"head must be 'aspp' or 'cascade', got {config.head!r}")
    if config.output_stride not in (8, 16, 32) or config.eval_output_stride not in (None, 8, 16, 32):
        raise ValueError(f"output_stride and eval_output_stride must be 8, 16 or 32, got {config.output_stride!r} "
                         f"and {config.eval_output_stride!r}")
    if config.dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {config.dtype!r}")
    _positive_integers("aspp_rates (--aspp-rates)", config.aspp_rates)
    if config.class_names is not None:
        names = check_class_names(config.class_names)
        if len(names) != config.num_classes:
            raise ValueError(f"class_names has {len(names)} names but num_classes is {config.num_classes}")
    _check_backbone_layers(config)
    if config.backbone_weights is not None and not Path(config.backbone_weights).is_file():
        raise ValueError(f"backbone_weights: no file at {config.backbone_weights}")
    if config.distributed:
        distributed.shard(config.batch_size)  # refuses a batch that the ranks cannot share evenly


def check_out(config):
    """Refuse an ``out`` folder that is a file or not writable, a run that would replace an
    earlier one's checkpoint unless told (FileExistsError), and --resume without a checkpoint."""
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder, but {out} is a file")
    for name in ("checkpoint.npz", "metrics.json"):
        if (out / name).is_dir():
            raise ValueError(f"{out / name} is a folder, where the run's {name} file would go")
    checkpoint = out / "checkpoint.npz"
    if config.resume and config.overwrite:
        raise ValueError("resume and overwrite contradict each other: --resume continues the run in --out, "
                         "--overwrite replaces it")
    if config.resume and not checkpoint.is_file():
        raise FileNotFoundError(f"resume: there is no checkpoint at {checkpoint} to continue; leave out --resume "
                                "to start a new run")
    if checkpoint.exists() and not config.resume and not config.overwrite:
        raise FileExistsError(f"{checkpoint} holds an earlier run: pass --resume to continue it, or --overwrite "
                              "to start a new run in its place")
    if out.exists() and not os.access(out, os.W_OK):
        raise ValueError(f"out folder {out} is not writable")


def _positive_integer(name, value, alternative=""):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{alternative}, got {value!r}")
    return value


def _positive_integers(name, values):
    if not isinstance(values, (tuple, list)) or not values or \
            any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive integers, got {values!r}")


def _check_backbone_layers(config):
    """The small backbone's units per stage (four counts), and a multi-grid of one factor per
    unit of layer4 (the paper's block4 has three)."""
    if config.backbone_layers is not None:
        if config.backbone != "small":
            raise ValueError(f"backbone_layers (--backbone-layers) sets the small backbone's units; "
                             f"{config.backbone} has its own")
        _positive_integers("backbone_layers (--backbone-layers)", config.backbone_layers)
        if len(config.backbone_layers) != 4:
            raise ValueError(f"backbone_layers (--backbone-layers) needs 4 counts (layer1 to layer4), got "
                             f"{','.join(map(str, config.backbone_layers))}")
    if config.multi_grid is None:
        return
    _positive_integers("multi_grid (--multi-grid)", config.multi_grid)
    units = (config.backbone_layers or STAGE_UNITS[config.backbone])[-1]
    if len(config.multi_grid) != units:
        fix = f"; --backbone-layers 1,1,1,{len(config.multi_grid)} gives it {len(config.multi_grid)}" \
            if config.backbone == "small" else ""
        raise ValueError(f"multi_grid (--multi-grid) {','.join(map(str, config.multi_grid))} has "
                         f"{len(config.multi_grid)} factors, but layer4 of the {config.backbone} backbone has {units} "
                         f"unit{'s' if units > 1 else ''}: give one factor per unit{fix}")


def train(config):
    """Run the experiment in ``config``; returns the metrics dict that metrics.json holds.

    A non-finite loss, or non-finite weights before an evaluation or a checkpoint, stops the run
    with a DivergenceError naming the iteration: argmax over nan picks class 0, so a diverged
    model would otherwise report the all-background mIoU as if it were a result."""
    if config.distributed:
        distributed.init()
    check_config(config)
    out = Path(config.out)
    if not distributed.is_main():  # rank 0 alone writes into out, and holds its lock
        return _train(config, out)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        check_config(config)  # again, now that no other run can write here
        return _train(config, out)


def _train(config, out):
    set_backend(config.backend)
    checkpoint_path = out / "checkpoint.npz"
    train_set, val_set = _checked_datasets(config)
    rng = np.random.default_rng(config.seed)
    model, optimizer, schedule, start, history = _prepare(config, checkpoint_path, rng)
    saved = start if start else None  # the iteration of the last checkpoint written (kept on divergence)
    transform = TrainTransform(config.crop_size)
    step = _training_step(model, optimizer, config)
    bar = _progress(start, config)
    began = time.perf_counter()
    for iteration in range(start, config.iterations):
        tick = time.perf_counter()
        images, labels = _batch(train_set, transform, config, rng, iteration)
        model.train()
        loss_value = _loss_value(step(images.astype(config.dtype, copy=False), labels), config)
        done = iteration + 1
        if not np.isfinite(loss_value):  # the weights took the step; the checkpoint on disk did not
            raise DivergenceError(_diverged(done, f"the loss is {loss_value}", saved, checkpoint_path, config))
        schedule.step()
        history["iteration"].append(done)
        history["loss"].append(loss_value)
        evaluating = done % config.eval_every == 0 or done == config.iterations
        saving = done % config.checkpoint_every == 0 or done == config.iterations
        if (evaluating or saving) and not all_finite(model):
            raise DivergenceError(_diverged(done, "the weights are no longer finite", saved, checkpoint_path, config))
        if saving or evaluating:  # before evaluating: an evaluation that fails loses no training
            _checkpoint(checkpoint_path, model, optimizer, rng, done, history, config)
            saved = done
        if evaluating:
            cm, _ = evaluate_shared(model, val_set, config)
            history["val_iteration"].append(done)
            history["val_miou"].append(mean_iou(cm))
            if config.progress and distributed.is_main():
                bar.write(f"iteration {done}: val mIoU {history['val_miou'][-1]:.3f}")
            _checkpoint(checkpoint_path, model, optimizer, rng, done, history, config)  # with the result
        bar.set_postfix(loss=f"{loss_value:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.4f}",
                        img_s=f"{config.batch_size / (time.perf_counter() - tick):.1f}")
        bar.update(1)
    bar.close()
    return _finish(model, val_set, history, config, out, time.perf_counter() - began)


def _prepare(config, checkpoint_path, rng):
    """(model, optimizer, schedule, start iteration, history): fresh (from ``backbone_weights``
    if given), or restored from the checkpoint with ``resume``; the same on every rank."""
    model = build_model(config, rng)
    resuming = config.resume and checkpoint_path.exists()
    if config.backbone_weights is not None and not resuming:
        try:
            model.backbone.load_torchvision_backbone(load_weights(config.backbone_weights))
        except ValueError as error:
            raise ValueError(f"backbone_weights {config.backbone_weights}: {error}") from None
    optimizer = build_optimizer(model, config)
    schedule = PolyLR(optimizer, config.iterations)
    start, history = 0, {key: [] for key in HISTORY}
    if resuming:
        state = load(checkpoint_path)
        _check_resumable(state, config, checkpoint_path)
        start, history = _restore(state, model, optimizer, rng, checkpoint_path)
        schedule.set_iteration(start)
        if distributed.is_main():
            print(f"resuming {checkpoint_path} at iteration {start} of {config.iterations}", flush=True)
    if config.distributed:
        distributed.broadcast_parameters(distributed.sync_batch_norm(model))
    return model, optimizer, schedule, start, history


# What a resumed run must share with the run it continues: the model, its data and its optimiser.
# The rest (iterations ahead, evaluation and checkpoint cadence, backend) may change.
RESUME_MUST_MATCH = ("backbone", "backbone_layers", "backbone_weights", "head", "aspp_rates", "image_pooling",
                     "cascade_blocks", "multi_grid", "output_stride", "num_classes", "class_names", "dtype", "lr",
                     "momentum", "weight_decay", "backbone_lr_scale", "batch_size", "crop_size", "seed", "voc_root",
                     "train_split", "use_aug", "max_images", "synthetic_kind", "synthetic_train", "synthetic_size")


def _check_resumable(state, config, checkpoint_path):
    """Refuse to continue a checkpoint under other settings, naming each that differs (a
    setting the checkpoint does not record counts as its default)."""
    saved_config(state, checkpoint_path)
    saved, now, default = state["config"], _plain(config), _plain(TrainConfig())
    differ = [f"{name} was {saved.get(name, default[name])!r}, now {now[name]!r}" for name in RESUME_MUST_MATCH
              if saved.get(name, default[name]) != now[name]]
    if differ:
        raise ValueError(f"resume: {checkpoint_path} was trained with other settings ({'; '.join(differ)}); "
                         "resume with the same ones, or start a new run with another --out")
    if isinstance(state.get("iteration"), int) and state["iteration"] > config.iterations:
        raise ValueError(f"resume: {checkpoint_path} is at iteration {state['iteration']}, past iterations "
                         f"({config.iterations}); pass --iterations {state['iteration']} or more")


def _training_step(model, optimizer, config):
    """step(images, labels) -> this rank's loss Tensor, after forward, backward (the gradients
    averaged over the ranks of a distributed run) and one SGD step. On the cuda backend it is a
    CUDA graph (``config.cuda_graph``): every batch has the same shape, so the step is captured
    once and replayed, one launch instead of hundreds (see ``atrousnp.cuda.graph``)."""
    def step(images, labels):
        loss = _loss(model, images, labels, config)
        optimizer.zero_grad()
        loss.backward()
        if config.distributed:
            distributed.allreduce_gradients(model.parameters())
        optimizer.step()
        return loss
    if config.backend == "cuda" and config.cuda_graph and not config.distributed:  # MPI's reductions run on the host
        return cuda.graph(step)
    return step


def load_trained(checkpoint_path):
    """(model, config) from a checkpoint that ``train`` wrote: the model rebuilt from the saved
    settings (checked as ``train`` checks them), on the current backend, with its weights. A
    ValueError names the checkpoint if it is not one of ``train``'s, if its settings cannot
    work, or if its weights are not finite: a diverged run's model predicts class 0 everywhere."""
    state = load(checkpoint_path)
    config = saved_config(state, checkpoint_path)
    if not isinstance(state.get("model"), dict):
        raise ValueError(f"{checkpoint_path} holds no model weights")
    model = build_model(config, np.random.default_rng(0))
    model.load_state_dict(state["model"])
    if not all_finite(model):
        raise ValueError(f"{checkpoint_path} holds weights that are not finite (nan or inf): it comes from a "
                         "diverged run, and its predictions would be class 0 everywhere")
    return model, config


def saved_config(state, checkpoint_path):
    """The TrainConfig saved in a checkpoint ``state``, its settings checked; unknown ones ignored."""
    saved = state.get("config") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        raise ValueError(f"{checkpoint_path} is not a checkpoint of atrousnp's training (it saves no settings)")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in fields})
    config.backbone_weights = None  # what the backbone started from is in the weights now
    try:
        check_settings(config)
    except ValueError as error:
        raise ValueError(f"{checkpoint_path}: its saved settings cannot work: {error}") from None
    return config


def _checked_datasets(config):
    """Both splits, checked file by file before training (by rank 0, while the others wait)."""
    if distributed.is_main():
        train_set, val_set = datasets(config)  # rank 0 writes the synthetic set, if it is the data
        for dataset in (train_set, val_set):
            dataset.check(config.num_classes, progress=config.progress)
    distributed.barrier()
    return (train_set, val_set) if distributed.is_main() else datasets(config)


def _batch(train_set, transform, config, rng, iteration):
    """This process's images and labels for ``iteration``: the next batch drawn from ``rng``,
    or, in a distributed run, this rank's share of the global batch (``keyed_batch``)."""
    if not config.distributed:
        return random_batch(train_set, transform, config.batch_size, rng)
    return keyed_batch(train_set, transform, config.batch_size, config.seed, iteration,
                       distributed.shard(config.batch_size))


def _loss(model, images, labels, config):
    """The loss to differentiate. In a distributed run each rank's mean is scaled to its share
    of the global mean (its pixels that are not ignored, over all ranks'), so the averaged
    gradients are the global batch's."""
    loss = F.cross_entropy(model(tensor(images)), labels)
    if not config.distributed:
        return loss
    factor, _ = distributed.share_of_mean(int((labels != IGNORE_INDEX).sum()))
    return loss * factor


def _loss_value(loss, config):
    """The global batch's loss as a number, from this rank's ``_loss``."""
    if not config.distributed:
        return loss.item()
    return float(distributed.allreduce_sum(np.array([loss.item()]))[0]) / distributed.world_size()


@contextlib.contextmanager
def _lock(out):
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


def _diverged(iteration, what, saved, checkpoint_path, config):
    kept = f"the checkpoint of iteration {saved} in {checkpoint_path} is kept" if saved is not None else \
        "no checkpoint had been written"
    return (f"training diverged at iteration {iteration}: {what}; {kept}. "
            f"Try a lower learning rate (it was {config.lr})")


def _progress(start, config):
    return tqdm(total=config.iterations, initial=start, desc="train", unit="it",
                disable=not config.progress or not distributed.is_main())


def _checkpoint(path, model, optimizer, rng, iteration, history, config):
    if not distributed.is_main():  # every rank holds the same model; one writes it
        return
    save(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
                "rng": rng.bit_generator.state, "history": history, "config": _plain(config)})


def _restore(state, model, optimizer, rng, checkpoint_path):
    """Put the checkpoint's weights, optimiser state and random stream back; returns
    (iteration, history). A checkpoint missing any of them, or holding them in another form,
    is refused, naming it."""
    history = state.get("history")
    iteration = state.get("iteration")
    if not (isinstance(history, dict) and all(isinstance(history.get(k), list) for k in HISTORY)
            and isinstance(iteration, int) and not isinstance(iteration, bool) and iteration >= 0
            and isinstance(state.get("model"), dict) and isinstance(state.get("optimizer"), dict)):
        raise ValueError(f"resume: {checkpoint_path} is not a training checkpoint (it lacks its iteration, history, "
                         "model or optimizer, or holds them in another form)")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    try:
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"resume: {checkpoint_path} holds no usable random-stream state ({error})") from None
    return iteration, history


def _finish(model, val_set, history, config, out, seconds):
    cm, examples = evaluate_shared(model, val_set, config, config.eval_scales, config.flip, keep=4)
    names = class_names(config)
    metrics = {"miou": mean_iou(cm), "pixel_accuracy": pixel_accuracy(cm),
               "per_class_iou": named_iou(cm, names), "train_seconds": seconds,
               "val_history": {"iteration": history["val_iteration"], "miou": history["val_miou"]},
               "settings": _plain(config)}
    if not distributed.is_main():
        return metrics
    save_json(out / "metrics.json", metrics)
    save_training_curves(out / "curves.png", history)
    save_prediction_grid(out / "predictions.png", examples, names)
    return metrics


def named_iou(cm, names):
    """{class name: IoU} for every class that occurs in the truth or the predictions."""
    iou = per_class_iou(cm)
    return {name: float(value) for name, value in zip(names, iou) if not np.isnan(value)}


def _plain(config):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()}
