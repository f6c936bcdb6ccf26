"""The paper's experiments in miniature, done as an experiment: seeds, intervals, and verdicts
decided by a rule fixed before the runs (Chen et al., 2017, arXiv 1706.05587).

    python examples/reproduce_paper.py                        # --quick: 29 trainings, about 60 minutes of training on 2 cores
    python examples/reproduce_paper.py --only claims          # the claims alone: 15 of those trainings
    python examples/reproduce_paper.py --full                 # 4x the training, larger images (hours)

**Claims.** Seven of the paper's findings are tested (``CLAIMS``): output stride (Table 1),
evaluating at output stride 8, multi-scale inputs and flips (Table 6), image pooling
(Table 5), and batch size at an equal number of images seen (Table 9). Each configuration they
need is trained with three seeds; seed s draws the initial weights and the batches from two
streams of its own, so two configurations trained with one seed see the same batches. The
data is fixed once. Each comparison is paired by seed and by val image, and its 95% interval
holds both the seed-to-seed and the image-to-image noise (``atrousnp.stats``): a finding
**holds** or is **contradicted** only when its interval excludes 0, and is otherwise **not
resolved at this scale**, with the smallest effect the design would find.

**Illustrations.** The rest of Tables 1, 2, 3, 5 and 9 are trained once (seed 0) and shown
beside the paper's numbers, labelled as single runs: a difference between two of them may be
noise.

Writes into --out (default runs/paper): ``results.md`` (the protocol, the claims with their
intervals and verdicts, the valid-tap audit of every configuration, the illustrations),
``claims.png``, ``predictions_os.png``, ``figure4.png``, and ``runs/`` (one folder per
configuration and seed, with the per-image confusion matrices of each evaluation). An
interrupted run continues where it stopped.
"""

import argparse
import dataclasses
import datetime
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from atrousnp import backend_names, set_backend
from atrousnp.analysis import feature_map_size, scaled_rates
from atrousnp.files import load_json, save_json
from atrousnp.stats import compare, estimate
from atrousnp.train import BACKBONES, TrainConfig, atrous_filters, datasets, evaluate, load_trained, resolve, train
from atrousnp.viz import add_legend, paint, paint_errors, save_valid_taps

MULTI_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
SEEDS = (0, 1, 2)


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to get per-image confusion matrices: a configuration (settings that differ from
    the base) trained, and evaluated at an output stride, scales and flip."""

    model: tuple = ()               # (name, value) pairs: the settings that differ from BASE
    output_stride: int = None       # evaluated at (None: the training one)
    scales: tuple = (1.0,)
    flip: bool = False

    @property
    def settings(self):
        return dict(self.model)


@dataclasses.dataclass(frozen=True)
class Claim:
    """One of the paper's findings: ``higher`` beats ``lower``, by the paper's Δ (points)."""

    finding: str
    source: str
    paper: tuple                    # (the paper's mIoU of higher, of lower)
    higher: Arm
    lower: Arm


BASE = dict(head="aspp", multi_grid=(1, 2, 4), image_pooling=True)   # Table 5's best: the claims' model
ASPP = Arm()
CLAIMS = (
    Claim("output stride 16 beats 32", "Table 1 (cascade model)", (73.88, 70.06),
          ASPP, Arm((("output_stride", 32),))),
    Claim("output stride 8 beats 16", "Table 1 (cascade model)", (75.18, 73.88),
          Arm((("output_stride", 8),)), ASPP),
    Claim("evaluating at output stride 8 beats 16", "Table 6", (78.51, 77.21), Arm(output_stride=8), ASPP),
    Claim("multi-scale inputs help", "Table 6", (79.45, 78.51),
          Arm(output_stride=8, scales=MULTI_SCALE), Arm(output_stride=8)),
    Claim("adding flipped inputs helps", "Table 6", (79.77, 79.45),
          Arm(output_stride=8, scales=MULTI_SCALE, flip=True), Arm(output_stride=8, scales=MULTI_SCALE)),
    Claim("image pooling helps", "Table 5", (77.21, 76.58), ASPP, Arm((("image_pooling", False),))),
    Claim("batch 8 beats batch 4, at equal images seen", "Table 9", (75.76, 64.43),
          ASPP, Arm((("batch_size", 4), ("iterations", 2)))),   # iterations: a factor on the mode's
)


@dataclasses.dataclass(frozen=True)
class Illustration:
    title: str
    base: dict
    rows: tuple                     # (label, the paper's mIoU, settings)
    not_run: tuple = ()             # (label, the paper's mIoU, why)


CASCADE = dict(head="cascade", multi_grid=(1, 1, 1))
ILLUSTRATIONS = (
    Illustration("Table 1: output stride (cascade, block7)", CASCADE,
                 (("OS 8", 75.18, dict(output_stride=8)), ("OS 16", 73.88, {}),
                  ("OS 32", 70.06, dict(output_stride=32))),
                 tuple((f"OS {s}", m, "atrousnp's backbones stop at output stride 32")
                       for s, m in ((64, 59.99), (128, 42.34), (256, 20.29)))),
    Illustration("Table 2: cascade depth at output stride 16 (the paper's ResNet-50 column)", CASCADE,
                 tuple((f"block{4 + n}", paper, dict(cascade_blocks=n))
                       for n, paper in enumerate((64.81, 72.14, 74.29, 73.88)))),
    Illustration("Table 3: multi-grid in blocks 4-7 at output stride 16 (the paper's ResNet-101)", CASCADE,
                 tuple((f"({a}, {b}, {c})", paper, dict(multi_grid=(a, b, c))) for (a, b, c), paper in
                       (((1, 1, 1), 75.76), ((1, 2, 1), 76.66), ((1, 2, 3), 76.11), ((1, 2, 4), 76.02),
                        ((2, 2, 2), 74.62)))),
    Illustration("Table 5: ASPP at output stride 16", dict(head="aspp", image_pooling=False),
                 (("(1, 1, 1) + (6, 12, 18)", 75.36, dict(multi_grid=(1, 1, 1))),
                  ("(1, 2, 1) + (6, 12, 18)", 75.93, dict(multi_grid=(1, 2, 1))),
                  ("(1, 2, 4) + (6, 12, 18)", 76.58, dict(multi_grid=(1, 2, 4))),
                  ("(1, 2, 4) + (6, 12, 18, 24)", 76.46, dict(multi_grid=(1, 2, 4), aspp_rates=(6, 12, 18, 24))),
                  ("(1, 2, 4) + (6, 12, 18) + image pooling", 77.21, dict(multi_grid=(1, 2, 4), image_pooling=True)))),
    Illustration("Table 9: batch size (ASPP, (1, 2, 4) + image pooling; equal images seen)", BASE,
                 tuple((f"batch {b}", paper, dict(batch_size=b, iterations=8 / b))
                       for b, paper in ((4, 64.43), (8, 75.76), (16, 77.21)))),
)

MODES = {  # the training each configuration gets, and the synthetic set's size
    "quick": dict(iterations=600, synthetic_train=300, synthetic_val=300, synthetic_size=96, crop_size=96),
    "full": dict(iterations=2400, synthetic_train=1000, synthetic_val=300, synthetic_size=128, crop_size=128),
}


def configure(args, settings, seed):
    """The TrainConfig of a configuration: the mode, the command line, BASE or an illustration's
    base, then ``settings`` (``iterations`` there is a factor on the mode's)."""
    config = dict(MODES[args.mode], backbone=args.backbone, voc_root=args.voc_root, synthetic_kind="ablation",
                  data_dir=str(args.out / "data"), backend=args.backend, lr=args.lr, batch_size=8,
                  progress=not args.quiet, seed=seed, data_seed=0)
    if args.backbone == "small":
        config["backbone_layers"] = (1, 1, 1, 3)  # the paper's block4 has three units: a multi-grid has three rates
    config.update({k: v for k, v in (("iterations", args.iterations), ("synthetic_train", args.train_images),
                                     ("synthetic_val", args.val_images), ("synthetic_size", args.image_size),
                                     ("crop_size", args.image_size)) if v is not None})
    factor = settings.get("iterations", 1)
    config.update({k: v for k, v in settings.items() if k != "iterations"})
    config["iterations"] = max(1, round(config["iterations"] * factor))
    if "aspp_rates" in config:  # the paper's rates of a table row, scaled to our map as resolve() scales the default
        config["aspp_rates"] = scaled_rates(config["aspp_rates"], feature_map_size(config["crop_size"], 16))
    config["eval_every"] = config["iterations"]
    config["checkpoint_every"] = max(1, config["iterations"] // 6)
    return resolve(TrainConfig(**config))


def run_folder(args, config):
    """runs/<a hash of every setting that shapes the run>: identical configurations share one folder."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("progress", "out", "resume")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return args.out / "runs" / f"{config.head}-os{config.output_stride}-seed{config.seed}-{digest}"


def trained(args, config):
    """The folder of a trained model for ``config``: trained now, resumed, or found done."""
    folder = run_folder(args, config)
    if not (folder / "metrics.json").is_file():
        print(f"training {folder.name}", flush=True)
        train(dataclasses.replace(config, out=str(folder), resume=(folder / "checkpoint.npz").is_file(),
                                  eval_scales=(1.0,), flip=False))
    args.trained.add(folder)
    return folder


def matrices(args, arm, seeds, base=BASE):
    """Per-image confusion matrices (seeds, images, C, C) of ``arm``, each seed's trained (if
    need be) and evaluated (if need be: cached in its folder)."""
    stacked = []
    for seed in seeds:
        config = configure(args, {**base, **arm.settings}, seed)
        folder = trained(args, config)
        key = f"os{arm.output_stride or config.output_stride}-scales{','.join(map(str, arm.scales))}-flip{arm.flip}"
        path = folder / f"confusion-{key}.npy"
        if not path.is_file():
            model, _ = load_trained(folder / "checkpoint.npz")
            _, val_set = datasets(config)
            cms, _ = evaluate(model, val_set, config.num_classes, arm.output_stride, arm.scales, arm.flip,
                              per_image=True)
            np.save(path, cms)
        stacked.append(np.load(path))
    return np.array(stacked)


def run_claims(args):
    """[(claim, Estimate of higher - lower, Estimate of higher, Estimate of lower)]."""
    results = []
    for claim in CLAIMS:
        higher, lower = matrices(args, claim.higher, SEEDS), matrices(args, claim.lower, SEEDS)
        results.append((claim, compare(higher, lower), estimate(higher), estimate(lower)))
    return results


def run_illustrations(args):
    """{title: [(label, paper mIoU, ours mIoU %)]}, one seed each."""
    return {table.title: [(label, paper, estimate(matrices(args, Arm(tuple(settings.items())), (0,),
                                                          table.base)).value)
                          for label, paper, settings in table.rows]
            for table in ILLUSTRATIONS}


# -- results.md ---------------------------------------------------------------------------------

PROTOCOL = """## Protocol (fixed before the runs)

- **Data**: the synthetic ablation set (`make_synthetic_voc(kind="ablation")`), drawn once with its
  own seed: {train} training and {val} val images of {size} pixels, six classes (mIoU is a mean
  over those six).
- **Training**: the small ResNet (three units in layer4), {iterations} iterations of batch 8 (SGD,
  momentum 0.9, the poly schedule from {lr}), {size}-pixel crops; ASPP's rates are the paper's
  (6, 12, 18) scaled to the {map}x{map} feature map at output stride 16: {rates}.
- **Seeds**: each configuration that a claim needs is trained with seeds {seeds}. Seed s draws
  the initial weights and the batches from two streams of its own, so two configurations
  trained with one seed see the same images in the same order.
- **Estimator**: mIoU of the confusion matrix summed over the val images; for a claim, the
  mean over seeds of each seed's difference, A - B, on the same images.
- **Interval**: 95%, with the seed-to-seed and the image-to-image variance (a bootstrap of the
  images, one draw for all seeds, the part they share counted once) and Student's t at the
  Welch-Satterthwaite degrees of freedom (`atrousnp/stats.py`; `tests/test_stats.py` checks
  that a null effect is declared at about the nominal 5% on simulated experiments).
- **Decision**: **holds** if the interval lies above 0, **contradicted** if below, otherwise
  **not resolved at this scale**, given with the minimum detectable effect (80% power).
- **Illustrations**: the other rows of the paper's tables, trained once (seed 0): no verdict.
"""


def write_results(args, claims, illustrations, minutes):
    config = configure(args, BASE, 0)
    lines = ["# DeepLabv3 in miniature: atrousnp beside the paper", "",
             f"Run on {datetime.date.today()} with `{args.command}` ({cpu_name()}; "
             f"{len(args.trained)} trainings, {training_minutes(args.trained):.0f} min of training; this run "
             f"took {minutes:.0f} min, cached work excluded). The paper's numbers are PASCAL VOC 2012 val mIoU "
             "of ResNet-50/101 on 513-pixel crops (arXiv 1706.05587v3); ours are val mIoU (%) of the small "
             "ResNet on " + ("the synthetic ablation set" if args.voc_root is None else f"the VOC data at "
                             f"{args.voc_root}") + ". Compare directions and sizes of effects, not values.", "",
             PROTOCOL.format(train=config.synthetic_train, val=config.synthetic_val, size=config.crop_size,
                             iterations=config.iterations, lr=config.lr, map=feature_map_size(config.crop_size, 16),
                             rates=config.aspp_rates, seeds=", ".join(map(str, SEEDS))),
             "## Claims", "",
             "| finding | source | paper Δ | ours Δ [95% interval] | A | B | verdict | detectable |",
             "|---|---|---|---|---|---|---|---|"]
    for claim, delta, higher, lower in claims:
        lines.append(f"| {claim.finding} | {claim.source} | {claim.paper[0] - claim.paper[1]:+.2f} | "
                     f"{delta.value:+.1f} [{delta.low:+.1f}, {delta.high:+.1f}] | {higher.value:.1f} | "
                     f"{lower.value:.1f} | **{delta.verdict}** | {delta.detectable:.1f} |")
    lines += ["", "A and B are each side's mIoU, averaged over seeds. *detectable*: the difference this "
              "design finds 80% of the time.", "", "![claims](claims.png)", "",
              "## Which atrous filters see the image", "",
              "For each configuration, the share of each atrous 3x3 filter's taps that fall on the feature map "
              "of a training crop rather than on padding; *1x1 in effect* marks a filter whose every output "
              "reads only its centre tap (the paper's Figure 4). An effect of a rate can only appear where "
              "its filter reads the image.", ""]
    lines += tap_audit_lines(args)
    lines += ["", "## Illustrations (one seed each: no verdict)", ""]
    for table in ILLUSTRATIONS:
        lines += [f"### {table.title}", "", "| row | paper mIoU | ours (seed 0) |", "|---|---|---|"]
        lines += [f"| {label} | {paper:.2f} | {ours:.1f} |" for label, paper, ours in illustrations[table.title]]
        lines += [f"| {label} | {paper:.2f} | not run: {why} |" for label, paper, why in table.not_run]
        lines.append("")
    lines += ["Models trained at output stride 32, 16 and 8 (the claims' model, seed 0) on val images:", "",
              "![predictions](predictions_os.png)", ""]
    (args.out / "results.md").write_text("\n".join(lines))


def tap_audit_lines(args):
    """A table row per configuration: each atrous filter, its map, rate and share of taps on the image."""
    configurations = {"claims' model": BASE, "claims' model, OS 8": {**BASE, "output_stride": 8},
                      "claims' model, OS 32": {**BASE, "output_stride": 32},
                      "cascade (block7)": CASCADE, "cascade, multi-grid (1, 2, 4)": {**CASCADE, "multi_grid": (1, 2, 4)}}
    lines = ["| configuration | filter | map | rate | taps on the image |", "|---|---|---|---|---|"]
    for name, settings in configurations.items():
        for path, size, rate, share, centre_only in atrous_filters(configure(args, settings, 0)):
            note = " (1x1 in effect)" if centre_only == 1 else ""
            lines.append(f"| {name} | `{path}` | {size}x{size} | {rate} | {share:.0%}{note} |")
    return lines


def plot_claims(path, claims):
    """Each claim's difference with its 95% interval, and the paper's as a hollow marker, on one axis."""
    fig = Figure(figsize=(8, 0.55 * len(claims) + 1.6))
    axis = fig.subplots()
    for y, (claim, delta, _, _) in enumerate(reversed(claims)):
        axis.errorbar(delta.value, y, xerr=[[delta.value - delta.low], [delta.high - delta.value]], fmt="o",
                      color="tab:orange", capsize=3, label="atrousnp (3 seeds, 95% interval)" if y == 0 else None)
        axis.plot(claim.paper[0] - claim.paper[1], y, "o", mfc="none", color="tab:blue",
                  label="the paper (reported without an interval)" if y == 0 else None)
    axis.axvline(0, color="grey", linewidth=1)
    axis.set_yticks(range(len(claims)), [claim.finding for claim, *_ in reversed(claims)], fontsize=8)
    axis.set_xlabel("difference in mIoU (points): A - B")
    axis.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)  # above: no marker hidden
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_output_strides(args, path, images=3):
    """The first ``images`` val images, their truth, and the predictions (with errors) of the
    claims' model trained at output stride 32, 16 and 8 (seed 0), one image per row."""
    strides = (32, 16, 8)
    rows = []
    for stride in strides:
        config = configure(args, {**BASE, "output_stride": stride}, 0)
        model, _ = load_trained(run_folder(args, config) / "checkpoint.npz")
        _, val_set = datasets(config)
        shown = range(min(images, len(val_set)))
        _, examples = evaluate(model, val_set, config.num_classes, keep=len(shown), indices=shown)
        rows.append(examples)
    names = config.class_names
    titles = ["image", "ground truth"] + [f"trained at OS {s}" for s in strides] + ["errors at OS 8"]
    fig = Figure(figsize=(2.1 * len(titles), 2.2 * len(rows[0]) + 0.9))
    axes = fig.subplots(len(rows[0]), len(titles), squeeze=False)
    for r, (image, truth, _) in enumerate(rows[0]):
        pictures = [image, paint(truth, len(names))] + [paint(examples[r][2], len(names)) for examples in rows]
        pictures.append(paint_errors(image, truth, rows[-1][r][2]))
        for c, picture in enumerate(pictures):
            axes[r, c].imshow(picture, interpolation="nearest")
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
    add_legend(fig, [label for examples in rows for _, *pair in examples for label in pair], names, errors=True)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=90)


def training_minutes(folders):
    """The training time of every configuration in ``folders``, summed (from their metrics.json)."""
    return sum(load_json(folder / "metrics.json")["train_seconds"] for folder in folders) / 60


def cpu_name():
    """The CPU's model name (Linux), else what platform knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="the default")
    mode.add_argument("--full", dest="mode", action="store_const", const="full")
    p.add_argument("--only", choices=["claims", "illustrations", "all"], default="all")
    p.add_argument("--voc-root", help="VOCdevkit (or VOC2012) folder; omit for the synthetic ablation set")
    p.add_argument("--backbone", choices=list(BACKBONES), default="small")
    p.add_argument("--backend", choices=backend_names(), default="numba")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--out", type=Path, default=Path("runs/paper"))
    p.add_argument("--iterations", type=int, help="override the mode's iterations per configuration")
    p.add_argument("--train-images", type=int, help="override the mode's synthetic training images")
    p.add_argument("--val-images", type=int, help="override the mode's synthetic val images")
    p.add_argument("--image-size", type=int, help="override the mode's synthetic image and crop size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.mode = args.mode or "quick"
    args.command = " ".join(["python examples/reproduce_paper.py"] + (sys.argv[1:] if argv is None else list(argv)))
    if args.voc_root is not None and not Path(args.voc_root).exists():
        p.error(f"--voc-root {args.voc_root} does not exist")
    return args


def main(argv=None):
    args = parse_args(argv)
    set_backend(args.backend)  # for evaluating models that were trained in an earlier run
    args.out.mkdir(parents=True, exist_ok=True)
    began, args.trained = time.perf_counter(), set()
    claims = run_claims(args) if args.only in ("claims", "all") else []
    illustrations = run_illustrations(args) if args.only in ("illustrations", "all") else \
        {table.title: [] for table in ILLUSTRATIONS}
    save_valid_taps(args.out / "figure4.png")
    if claims:
        plot_claims(args.out / "claims.png", claims)
        plot_output_strides(args, args.out / "predictions_os.png")
    save_json(args.out / "claims.json", [dict(finding=c.finding, source=c.source, paper=c.paper,
                                              delta=dataclasses.asdict(d), higher=h.value, lower=lo.value,
                                              verdict=d.verdict) for c, d, h, lo in claims])
    write_results(args, claims, illustrations, (time.perf_counter() - began) / 60)
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
