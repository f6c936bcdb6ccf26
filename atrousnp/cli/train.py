"""Train and evaluate DeepLabv3 on a small PASCAL VOC subset, or on a built-in synthetic set.

  atrousnp-train                                       # synthetic VOC-format data under ./data
  atrousnp-train --voc-root ~/VOCdevkit --max-images 100 --iterations 2000
  atrousnp-train --voc-root ~/mydata --class-names classes.txt \\
      --backbone resnet50 --backbone-weights resnet50-11ad3fa6.pth   # your classes, from ImageNet

(from a clone: python examples/train_voc_subset.py, with the same flags). Shows a progress bar
(loss, learning rate, images/s, ETA) and each evaluation's mIoU, writes atomic checkpoints to
--out (resume with --resume), then evaluates on the val split and writes metrics.json,
curves.png and predictions.png there.
"""

import json
import sys
from pathlib import Path

from .. import parallel
from ..backends import backend_names
from ..data import read_class_names
from ..train import BACKBONES, DivergenceError, FolderInUseError, SettingsError, TrainConfig, train
from ..train.config import PRETRAINED_LR, SCRATCH_LR
from . import ArgumentParser, HelpFormatter, ints, scales


def parse_args(argv=None):
    d = TrainConfig()
    p = ArgumentParser(prog="atrousnp-train", description=__doc__, formatter_class=HelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--voc-root", help="VOCdevkit (or VOC2012) folder; omit for the synthetic set")
    data.add_argument("--data-dir", default=d.data_dir, help="where the synthetic set is written")
    data.add_argument("--synthetic-kind", choices=["shapes", "ablation"], default=d.synthetic_kind,
                      help="which synthetic set (atrousnp.data.synthetic); ablation is reproduce_paper.py's")
    data.add_argument("--train-split", default=d.train_split, help="ImageSets/Segmentation/<name>.txt to train on")
    data.add_argument("--val-split", default=d.val_split, help="ImageSets/Segmentation/<name>.txt to evaluate on")
    data.add_argument("--max-images", type=int, help="use the first N images of each split (default: all)")
    data.add_argument("--use-aug", action="store_true", help="train labels from SBD's SegmentationClassAug folder")
    data.add_argument("--num-classes", type=int, help="default: one per line of --class-names, else the data's "
                                                      "(its VOC2012/classes.txt; VOC's 21 without one)")
    data.add_argument("--class-names", type=Path, help="a text file, one class name per line, class 0 first")
    model = p.add_argument_group("model")
    model.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone, help="the ResNet")
    model.add_argument("--backbone-weights", help="start the backbone from these ImageNet ResNet weights "
                                                  "(.pth, .safetensors, or an atrousnp .npz); no PyTorch needed")
    model.add_argument("--backbone-lr-scale", type=float, default=d.backbone_lr_scale,
                       help="with --backbone-weights, the backbone's rate relative to --lr")
    model.add_argument("--backbone-layers", type=ints, help="the small backbone's units per stage, e.g. 1,1,1,3 "
                                                            "(default: 1,1,1,1)")
    model.add_argument("--head", choices=["aspp", "cascade"], default=d.head, help="the paper's §3.3 or §3.2")
    model.add_argument("--aspp-rates", type=ints, help="at output stride 16, doubled at 8 (default: the paper's 6,12,18 "
                                                       "scaled to the crop's feature map: 1,2,3 for 96 pixels)")
    model.add_argument("--no-image-pooling", dest="image_pooling", action="store_false", help="ASPP without it")
    model.add_argument("--cascade-blocks", type=int, choices=[0, 1, 2, 3], default=d.cascade_blocks,
                       help="--head cascade: how many of blocks 5..7 follow block4")
    model.add_argument("--output-stride", type=int, choices=[8, 16, 32], default=d.output_stride,
                       help="input size / feature-map size while training")
    model.add_argument("--eval-output-stride", type=int, choices=[8, 16, 32], help="default: the training one")
    model.add_argument("--multi-grid", type=ints, help="one rate factor per unit of layer4, e.g. 1,2,4 (the small "
                                                       "backbone's layer4 has one unit unless --backbone-layers says)")
    opt = p.add_argument_group("training")
    opt.add_argument("--crop-size", type=int, default=d.crop_size, help="the square crop each image is cut to")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (the global batch)")
    opt.add_argument("--iterations", type=int, default=d.iterations, help="SGD steps")
    opt.add_argument("--lr", type=float, help=f"initial learning rate of the poly schedule (default {SCRATCH_LR}; "
                                              f"{PRETRAINED_LR}, the paper's, with --backbone-weights)")
    opt.add_argument("--momentum", type=float, default=d.momentum, help="SGD's momentum")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay, help="SGD's weight decay")
    opt.add_argument("--seed", type=int, default=d.seed, help="of the initial weights and the batches")
    opt.add_argument("--data-seed", type=int, default=d.data_seed, help="of the synthetic set")
    opt.add_argument("--dtype", choices=["float32", "float64"], default=d.dtype,
                     help="float64: slower, for experiments that compare runs closely")
    run = p.add_argument_group("evaluation and output")
    run.add_argument("--eval-scales", type=scales("--eval-scales"), default=d.eval_scales, help="e.g. 0.75,1.0,1.25")
    run.add_argument("--flip", action="store_true", help="also evaluate on mirrored images")
    run.add_argument("--eval-every", type=int, default=d.eval_every, help="iterations between evaluations")
    run.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="iterations between checkpoints")
    run.add_argument("--out", default=d.out, help="folder for checkpoints, metrics and pictures")
    run.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.npz")
    run.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a checkpoint")
    run.add_argument("--quiet", dest="progress", action="store_false",
                     help="print only the results: no set-up lines, progress bar or evaluations on the way")
    engine = p.add_argument_group("engine")
    engine.add_argument("--backend", choices=backend_names(), default=d.backend, help="cuda needs an NVIDIA GPU")
    engine.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", default=None,
                        help="--backend cuda: launch each step's kernels one by one instead of replaying a graph")
    engine.add_argument("--distributed", action="store_true",
                        help="one rank of an MPI job (mpiexec -n K atrousnp-train --distributed): --batch-size stays "
                             "the global batch, split among the K ranks; batch norm synchronised")
    args = p.parse_args(argv)
    if args.voc_root is not None and not Path(args.voc_root).exists():
        p.error(f"--voc-root {args.voc_root} does not exist")
    if args.class_names is not None:
        if not args.class_names.is_file():
            p.error(f"--class-names {args.class_names} does not exist")
        try:
            args.class_names = read_class_names(args.class_names)
        except ValueError as error:
            p.error(f"--class-names: {error}")
    return TrainConfig(**{k: v for k, v in vars(args).items() if v is not None})


def main(argv=None):
    if "--distributed" in (sys.argv[1:] if argv is None else argv):
        parallel.init()  # first, so that rank 0 alone reports a flag argparse refuses
    config = parse_args(argv)
    try:
        metrics = train(config)
    except SettingsError as error:  # every rank finds it alike: rank 0 says it
        parallel.fail(f"error: {error}", on_every_rank=True)
    # What the user can fix (the data, the --out folder), or a diverged run: one line, exit
    # status 1. Anything else is a bug and keeps its traceback.
    except (DivergenceError, FileExistsError, FileNotFoundError, FolderInUseError, ValueError) as error:
        parallel.fail(f"error: {error}")
    if not parallel.is_main():
        return
    out = Path(config.out)
    print(f"val mIoU {metrics['miou']:.3f}, pixel accuracy {metrics['pixel_accuracy']:.3f}, "
          f"{metrics['train_seconds'] / 60:.1f} min of training")
    print(json.dumps(metrics["per_class_iou"], indent=2))
    print(f"wrote {out / 'metrics.json'}, {out / 'curves.png'}, {out / 'predictions.png'}, {out / 'checkpoint.npz'}")


if __name__ == "__main__":
    main()
