"""The training loop of DeepLabv3, as the paper trains it (§4): SGD with momentum 0.9 and weight
decay, the poly learning rate, random scale/crop/flip; evaluations and checkpoints on the way.

Every random choice comes from two numpy Generators spawned from ``config.seed``: one draws the
initial weights, the other the batches and their augmentation. Two architectures trained with
one seed therefore see the same batches, whatever their number of parameters. The batch
stream's state is saved in each checkpoint, so ``resume=True`` continues exactly where an
interrupted run stopped.
"""

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import functional as F
from ..backends import set_backend
from ..data import TrainTransform
from ..io import load_weights
from ..metrics import mean_iou
from ..optim import PolyLR
from ..tensor import tensor
from .build import atrous_geometry, build_model, build_optimizer
from .config import check_settings, resolve
from .evaluation import all_finite
from .outputs import CHECKPOINT, HISTORY, diverged, resume, save_checkpoint, write_results
from .strategies import strategy_for


def train(config):
    """Run the experiment in ``config``; returns the metrics dict that metrics.json holds.

    A non-finite loss, or non-finite weights before an evaluation or a checkpoint, stops the run
    with a DivergenceError naming the iteration: argmax over nan picks class 0, so a diverged
    model would otherwise report the all-background mIoU as if it were a result."""
    strategy = strategy_for(config)                  # one process, a CUDA graph, or one MPI rank
    check_settings(config)
    config = resolve(config)                         # the data's classes, ASPP's rates for the crop
    out = Path(config.out)
    with strategy.holding(out):                      # no other run writes into out meanwhile
        strategy.check_out(config)
        if config.progress and strategy.is_main:
            print(f"training on the {config.backend} backend into {out}", *atrous_geometry(config), sep="\n",
                  flush=True)
        set_backend(config.backend)
        train_set, val_set = strategy.datasets(config)
        init_rng, rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(2))
        model, optimizer, schedule, start, history = start_run(config, out / CHECKPOINT, init_rng, rng, strategy)
        step = strategy.wrap(training_step(model, optimizer, strategy))
        transform = TrainTransform(config.crop_size)
        saved = start or None                        # the last checkpoint's iteration (kept on divergence)
        bar = tqdm(total=config.iterations, initial=start, desc="train", unit="it",
                   disable=not config.progress or not strategy.is_main)
        began = time.perf_counter()
        for iteration in range(start, config.iterations):
            tick = time.perf_counter()
            images, labels = strategy.batch(train_set, transform, config, rng, iteration)
            model.train()
            loss = strategy.loss_value(step(images.astype(config.dtype, copy=False), labels))
            done = iteration + 1
            if not np.isfinite(loss):  # the weights took the step; the checkpoint did not
                raise diverged(done, f"the loss is {loss}", saved, out / CHECKPOINT, config)
            schedule.step()
            history["iteration"].append(done)
            history["loss"].append(loss)
            evaluating = done % config.eval_every == 0 or done == config.iterations
            if evaluating or done % config.checkpoint_every == 0:
                if not all_finite(model):
                    raise diverged(done, "the weights are no longer finite", saved, out / CHECKPOINT, config)
                # Saved before evaluating, so that a failing evaluation loses no training.
                checkpoint(strategy, out, model, optimizer, rng, done, history, config)
                saved = done
            if evaluating:
                history["val_iteration"].append(done)
                history["val_miou"].append(mean_iou(strategy.evaluate(model, val_set, config)[0]))
                if not bar.disable:
                    bar.write(f"iteration {done}: val mIoU {history['val_miou'][-1]:.3f}")
                checkpoint(strategy, out, model, optimizer, rng, done, history, config)  # with the result
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{optimizer.param_groups[-1]['lr']:.4f}",
                            img_s=f"{config.batch_size / (time.perf_counter() - tick):.1f}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - began
        cm, examples = strategy.evaluate(model, val_set, config, config.eval_scales, config.flip, keep=4)
        if not strategy.is_main:
            return {"miou": mean_iou(cm)}
        return write_results(out, cm, examples, history, seconds, config)


def training_step(model, optimizer, strategy):
    """step(images, labels) -> the batch's loss Tensor, after one step of SGD on it."""
    def step(images, labels):
        loss = strategy.scale_loss(F.cross_entropy(model(tensor(images)), labels), labels)  # forward
        optimizer.zero_grad()
        loss.backward()                                                                     # backward
        strategy.average_gradients(model)            # over the ranks of an MPI job; nothing in one process
        optimizer.step()                                                                    # SGD
        return loss
    return step


def start_run(config, checkpoint_path, init_rng, rng, strategy):
    """(model, optimizer, schedule, start iteration, history): fresh (from ``backbone_weights``
    if given), or restored from the checkpoint with ``resume``; the same on every rank. The
    schedule takes its base rates before a checkpoint puts the scheduled ones back. The weights
    are drawn from ``init_rng``; ``rng``, the batch stream, is what a checkpoint restores."""
    model = build_model(config, init_rng)
    if config.backbone_weights is not None and not config.resume:
        try:
            model.backbone.load_torchvision_backbone(load_weights(config.backbone_weights))
        except ValueError as error:
            raise ValueError(f"backbone_weights {config.backbone_weights}: {error}") from None
    optimizer = build_optimizer(model, config)
    schedule = PolyLR(optimizer, config.iterations)
    start, history = 0, {key: [] for key in HISTORY}
    if config.resume:
        start, history = resume(checkpoint_path, model, optimizer, rng, config)
        schedule.set_iteration(start)
        if strategy.is_main:
            print(f"resuming {checkpoint_path} at iteration {start} of {config.iterations}", flush=True)
    strategy.prepare(model)
    return model, optimizer, schedule, start, history


def checkpoint(strategy, out, model, optimizer, rng, iteration, history, config):
    """Save the run (rank 0 alone: every rank holds the same model)."""
    if strategy.is_main:
        save_checkpoint(out / CHECKPOINT, model, optimizer, rng, iteration, history, config)
