"""The paper's experiments in miniature: Tables 1-6 and 9 and Figure 4 of Chen et al. (2017).

    python examples/reproduce_paper.py                        # --quick: about 35 minutes on 2 cores
    python examples/reproduce_paper.py --only table1,table5   # some tables only
    python examples/reproduce_paper.py --full                 # 4x the training, larger images
    python examples/reproduce_paper.py --voc-root ~/VOCdevkit --backbone resnet50 --full

Every configuration the tables need is trained once, with the same seed, data and number of
iterations, and evaluated; a configuration that two tables share (the paper's Table 4 reuses a
Table 3 model) is trained once. The default data is the synthetic "ablation" set
(``atrousnp.data.synthetic``), drawn so that each effect has something to act on: thin and small
objects, objects larger than the image, and two classes that only the scene tells apart.

Writes into --out (default runs/paper):

    results.md      every row's mIoU beside the paper's, and whether each of the paper's
                    orderings holds in the miniature, with its margin
    tableN.png      one bar chart per table; figure4.png; predictions_os.png (Table 1's models)
    runs/           one training folder per configuration (checkpoint, metrics), and evals.json

Results are cached: run the command again after an interruption and it continues where it
stopped, retraining nothing that finished. The small backbone is given three units in layer4
(the paper's block4 has three), so that a multi-grid has three rates. ASPP's rates are the
paper's scaled to the feature map: the paper's 513-pixel crops give a 33x33 map at output
stride 16, where rates (6, 12, 18) cover a fifth to a half of it; on a 96-pixel crop's 6x6 map
the same shares are rates (1, 2, 3) (Figure 4 shows why rates near the map's size are useless).
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
from atrousnp.metrics import mean_iou
from atrousnp.train import BACKBONES, TrainConfig, datasets, evaluate, load_trained, resolve, train
from atrousnp.files import load_json, save_json
from atrousnp.viz import add_legend, paint, save_valid_taps

MULTI_SCALE = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of a table: its label as the paper prints it, the paper's val mIoU (%), the
    training settings that differ from the table's base, and how the model is evaluated."""

    label: str
    paper: float
    model: dict = dataclasses.field(default_factory=dict)
    output_stride: int = None          # evaluated at (None: the training one)
    scales: tuple = (1.0,)
    flip: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    title: str
    base: dict                   # training settings shared by its rows
    rows: tuple
    claims: tuple                # (the paper's finding, the row that should be higher, the lower one)
    not_run: tuple = ()          # (label, paper mIoU, why this miniature has no such row)
    paired: bool = False         # every row is one model evaluated another way: no seed spread applies


CASCADE = dict(head="cascade", multi_grid=(1, 1, 1))
ASPP_BEST = dict(head="aspp", multi_grid=(1, 2, 4), image_pooling=True)
NO_POOLING = dict(head="aspp", image_pooling=False)


def inference_rows(paper):
    """Table 4/6: one model, evaluated at output stride 16, then 8, then + multi-scale, + flip."""
    return (Row("OS 16", paper[0]), Row("OS 8", paper[1], output_stride=8),
            Row("OS 8 + MS", paper[2], output_stride=8, scales=MULTI_SCALE),
            Row("OS 8 + MS + flip", paper[3], output_stride=8, scales=MULTI_SCALE, flip=True))


INFERENCE_CLAIMS = (("evaluating at output stride 8 beats 16", "OS 8", "OS 16"),
                    ("multi-scale inputs help", "OS 8 + MS", "OS 8"),
                    ("adding flipped inputs helps", "OS 8 + MS + flip", "OS 8 + MS"))

TABLES = {
    "table1": Table(
        "Table 1: output stride, cascade + block7", CASCADE,
        (Row("OS 8", 75.18, dict(output_stride=8)), Row("OS 16", 73.88), Row("OS 32", 70.06, dict(output_stride=32))),
        (("output stride 8 beats 16", "OS 8", "OS 16"), ("output stride 16 beats 32", "OS 16", "OS 32")),
        tuple((f"OS {s}", m, "atrousnp's backbones stop at output stride 32") for s, m in
              ((64, 59.99), (128, 42.34), (256, 20.29)))),
    "table2": Table(
        "Table 2: cascade depth at output stride 16 (the paper's ResNet-50 column)", CASCADE,
        tuple(Row(f"block{4 + n}", paper, dict(cascade_blocks=n)) for n, paper in
              enumerate((64.81, 72.14, 74.29, 73.88))),
        (("block5 beats block4", "block5", "block4"), ("block6 beats block5", "block6", "block5"),
         ("block7 beats block4", "block7", "block4"))),
    "table3": Table(
        "Table 3: multi-grid in block4-7 at output stride 16 (the paper's ResNet-101)", CASCADE,
        tuple(Row(f"({a}, {b}, {c})", paper, dict(multi_grid=(a, b, c))) for (a, b, c), paper in
              (((1, 1, 1), 75.76), ((1, 2, 1), 76.66), ((1, 2, 3), 76.11), ((1, 2, 4), 76.02), ((2, 2, 2), 74.62))),
        (("multi-grid (1, 2, 1) beats (1, 1, 1)", "(1, 2, 1)", "(1, 1, 1)"),
         ("(2, 2, 2) is worse than (1, 1, 1)", "(1, 1, 1)", "(2, 2, 2)"))),
    "table4": Table("Table 4: cascade inference (block7, multi-grid (1, 2, 1))", dict(CASCADE, multi_grid=(1, 2, 1)),
                    inference_rows((76.66, 78.05, 78.93, 79.35)), INFERENCE_CLAIMS, paired=True),
    "table5": Table(
        "Table 5: ASPP at output stride 16 (multi-grid + rates, image pooling)", NO_POOLING,
        (Row("(1, 1, 1) + (6, 12, 18)", 75.36, dict(multi_grid=(1, 1, 1))),
         Row("(1, 2, 1) + (6, 12, 18)", 75.93, dict(multi_grid=(1, 2, 1))),
         Row("(1, 2, 4) + (6, 12, 18)", 76.58, dict(multi_grid=(1, 2, 4))),
         Row("(1, 2, 4) + (6, 12, 18, 24)", 76.46, dict(multi_grid=(1, 2, 4), aspp_rates=(6, 12, 18, 24))),
         Row("(1, 2, 4) + (6, 12, 18) + image pooling", 77.21, ASPP_BEST)),
        (("multi-grid (1, 2, 4) beats (1, 1, 1)", "(1, 2, 4) + (6, 12, 18)", "(1, 1, 1) + (6, 12, 18)"),
         ("image pooling helps", "(1, 2, 4) + (6, 12, 18) + image pooling", "(1, 2, 4) + (6, 12, 18)"),
         ("a fourth rate (24) does not help", "(1, 2, 4) + (6, 12, 18)", "(1, 2, 4) + (6, 12, 18, 24)"))),
    "table6": Table("Table 6: ASPP inference ((1, 2, 4) + (6, 12, 18) + image pooling)", ASPP_BEST,
                    inference_rows((77.21, 78.51, 79.45, 79.77)), INFERENCE_CLAIMS, paired=True),
    "table9": Table(
        "Table 9: batch size (ASPP, (1, 2, 4) + image pooling)", ASPP_BEST,
        tuple(Row(f"batch {b}", paper, dict(batch_size=b)) for b, paper in
              ((4, 64.43), (8, 75.76), (12, 76.49), (16, 77.21))),
        (("batch 8 beats 4", "batch 8", "batch 4"), ("batch 16 beats 8", "batch 16", "batch 8"))),
}

MODES = {  # the training every configuration gets, and the synthetic set's size
    "quick": dict(iterations=600, synthetic_train=300, synthetic_val=60, synthetic_size=96, crop_size=96),
    "full": dict(iterations=2400, synthetic_train=1000, synthetic_val=150, synthetic_size=128, crop_size=128),
}


def configure(args, table, row):
    """The TrainConfig of one row: mode, command line, the table's base and the row's settings."""
    settings = dict(MODES[args.mode], backbone=args.backbone, voc_root=args.voc_root, synthetic_kind="ablation",
                    data_dir=str(args.out / "data"), backend=args.backend, seed=args.seed, lr=args.lr,
                    batch_size=8, progress=not args.quiet)
    if args.backbone == "small":
        settings["backbone_layers"] = (1, 1, 1, 3)
    settings.update({k: v for k, v in (("iterations", args.iterations), ("synthetic_train", args.train_images),
                                       ("synthetic_val", args.val_images), ("synthetic_size", args.image_size),
                                       ("crop_size", args.image_size)) if v is not None})
    settings.update(table.base)
    settings.update(row.model)
    settings["aspp_rates"] = scaled_rates(settings.get("aspp_rates", (6, 12, 18)),
                                          feature_map_size(settings["crop_size"], 16))
    settings["eval_every"] = settings["iterations"]
    settings["checkpoint_every"] = max(1, settings["iterations"] // 6)
    return resolve(TrainConfig(**settings))


def run_folder(args, config):
    """runs/<a hash of every setting that shapes the model>: two tables' identical rows share
    one folder, and changed settings never resume a different run."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("progress", "out", "resume")}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return args.out / "runs" / f"{config.head}-os{config.output_stride}-{digest}"


def trained(args, config):
    """The folder of a trained model for ``config``: trained now, resumed, or found done."""
    folder = run_folder(args, config)
    if not (folder / "metrics.json").is_file():
        print(f"training {folder.name}: {describe(config)}", flush=True)
        train(dataclasses.replace(config, out=str(folder), resume=(folder / "checkpoint.npz").is_file()))
    args.trained.add(folder)
    return folder


def describe(config):
    parts = [f"{config.head}", f"OS {config.output_stride}", f"multi-grid {config.multi_grid}",
             f"batch {config.batch_size}", f"{config.iterations} its"]
    if config.head == "cascade":
        parts.append(f"{config.cascade_blocks} cascade blocks")
    else:
        parts.append(f"rates {config.aspp_rates}" + (" + image pooling" if config.image_pooling else ""))
    return ", ".join(parts)


def evaluated(folder, config, row):
    """val mIoU of the model in ``folder`` evaluated as ``row`` says; cached in evals.json."""
    cache_path = folder / "evals.json"
    cache = load_json(cache_path) if cache_path.is_file() else {}
    key = f"os{row.output_stride or config.output_stride} scales{','.join(map(str, row.scales))} flip{row.flip}"
    if key not in cache:
        model, _ = load_trained(folder / "checkpoint.npz")
        _, val_set = datasets(config)
        cm, _ = evaluate(model, val_set, config.num_classes, row.output_stride, row.scales, row.flip)
        cache[key] = mean_iou(cm)
        save_json(cache_path, cache)
    return cache[key]


def run_table(args, name):
    """{row label: (paper mIoU %, atrousnp mIoU %)} of one table, training what is missing."""
    table, results = TABLES[name], {}
    for row in table.rows:
        config = configure(args, table, row)
        results[row.label] = (row.paper, 100 * evaluated(trained(args, config), config, row))
    return results


def seed_spread(args):
    """How far apart two runs of one configuration land (points of mIoU): Table 6's model trained
    again with the next seed, which changes the initialisation, the batches and (for the
    synthetic set) the images. A margin smaller than this is not a finding either way."""
    table = TABLES["table6"]
    row = table.rows[0]
    first = configure(args, table, row)
    second = dataclasses.replace(first, seed=args.seed + 1, data_dir=f"{first.data_dir}-seed{args.seed + 1}")
    runs = [100 * evaluated(trained(args, config), config, row) for config in (first, second)]
    return abs(runs[1] - runs[0])


def claim_lines(table, results, spread):
    """One line per finding of the paper: holds, does not hold at this scale, or too close to
    call (within the seed-to-seed spread), with the margin. Rows of one model evaluated in
    different ways (Tables 4, 6) differ by the evaluation alone, so the spread between two
    trainings does not apply to them."""
    lines = []
    for finding, higher, lower in table.claims:
        margin = results[higher][1] - results[lower][1]
        verdict = "within the seed spread" if abs(margin) <= spread and not table.paired else \
            "holds" if margin > 0 else "does not hold at this scale"
        lines.append(f"- {finding}: **{verdict}** (Δ {margin:+.2f} points; the paper's "
                     f"Δ {results[higher][0] - results[lower][0]:+.2f})")
    return lines


def table_markdown(name, results, spread):
    table = TABLES[name]
    lines = [f"## {table.title}", "", "| row | paper mIoU (%) | atrousnp mIoU (%) |", "|---|---|---|"]
    lines += [f"| {label} | {paper:.2f} | {ours:.2f} |" for label, (paper, ours) in results.items()]
    lines += [f"| {label} | {paper:.2f} | not run: {why} |" for label, paper, why in table.not_run]
    if table.paired:
        lines += ["", "Every row is the same trained model, evaluated another way: its margins do not depend on "
                  "training, so the seed spread does not apply to them."]
    return lines + [""] + claim_lines(table, results, spread) + ["", f"![{name}]({name}.png)", ""]


def plot_table(path, name, results):
    """Two bar charts side by side, the paper's mIoU and atrousnp's, each zoomed to its own
    range: what is compared is the ordering of the rows, not the values."""
    labels = list(results)
    fig = Figure(figsize=(max(7, 2.2 * len(labels)), 3.4))
    for axis, (source, column) in zip(fig.subplots(1, 2), (("paper (VOC 2012 val)", 0), ("atrousnp miniature", 1))):
        values = [results[label][column] for label in labels]
        axis.bar(range(len(labels)), values, color="tab:blue" if column == 0 else "tab:orange")
        low, high = min(values), max(values)
        axis.set_ylim(max(0, low - 0.5 * (high - low) - 1), min(100, high + 0.2 * (high - low) + 1))
        axis.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 3 else 0, fontsize=7, ha="right"
                        if len(labels) > 3 else "center")
        axis.set_ylabel("mIoU (%)")
        axis.set_title(source, fontsize=9)
    fig.suptitle(TABLES[name].title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def plot_output_strides(args, path, images=3):
    """The first ``images`` val images, their truth, and the predictions of Table 1's models
    trained at output stride 32, 16 and 8, one image per row."""
    table = TABLES["table1"]
    rows = sorted(table.rows, key=lambda row: -row.model.get("output_stride", 16))
    predictions = []
    for row in rows:
        config = configure(args, table, row)
        model, _ = load_trained(run_folder(args, config) / "checkpoint.npz")
        _, val_set = datasets(config)
        _, examples = evaluate(model, val_set, config.num_classes, keep=images, indices=range(min(images, len(val_set))))
        predictions.append(examples)
    titles = ["image", "ground truth"] + [f"trained at {row.label}" for row in rows]
    fig = Figure(figsize=(2.2 * len(titles), 2.3 * len(predictions[0]) + 0.6))
    axes = fig.subplots(len(predictions[0]), len(titles), squeeze=False)
    names = configure(args, table, rows[0]).class_names
    n = len(names)
    for r, (image, truth, _) in enumerate(predictions[0]):
        pictures = [image, paint(truth, n)] + [paint(examples[r][2], n) for examples in predictions]
        for c, picture in enumerate(pictures):
            axes[r, c].imshow(picture, interpolation="nearest")
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
    add_legend(fig, [label for examples in predictions for _, *pair in examples for label in pair], names)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
    fig.savefig(path, dpi=90)


def training_minutes(folders):
    """The training time of every configuration in ``folders``, summed (from their metrics.json)."""
    return sum(load_json(folder / "metrics.json")["train_seconds"] for folder in folders) / 60


def write_results(args, results, spread, minutes):
    lines = ["# DeepLabv3 in miniature: atrousnp beside the paper", "",
             f"Run on {datetime.date.today()} with `{args.command}` "
             f"({cpu_name()}; {len(args.trained)} configurations, {training_minutes(args.trained):.0f} min of "
             f"training in all; this run took {minutes:.0f} min, cached work excluded). "
             "The paper's numbers are PASCAL VOC 2012 val mIoU of ResNet-50/101 at 513-pixel crops "
             "(arXiv 1706.05587v3); ours are val mIoU of the small ResNet on "
             + ("the synthetic ablation set" if args.voc_root is None else f"the VOC data at {args.voc_root}")
             + ". Compare orderings, not values.", "",
             f"Seed-to-seed spread: **{spread:.2f} points** (Table 6's model trained again with the next seed); "
             "a margin within it is reported as such, not as a finding.", "",
             "![Figure 4](figure4.png)", ""]
    for name, table_results in results.items():
        lines += table_markdown(name, table_results, spread)
    if "table1" in results:
        lines += ["Table 1's models on three val images:", "", "![predictions](predictions_os.png)", ""]
    (args.out / "results.md").write_text("\n".join(lines))


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
    p.add_argument("--only", type=lambda text: text.split(","), default=list(TABLES),
                   help=f"some of {','.join(TABLES)}")
    p.add_argument("--voc-root", help="VOCdevkit (or VOC2012) folder; omit for the synthetic ablation set")
    p.add_argument("--backbone", choices=list(BACKBONES), default="small")
    p.add_argument("--backend", choices=backend_names(), default="numba")
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/paper"))
    p.add_argument("--iterations", type=int, help="override the mode's iterations per configuration")
    p.add_argument("--train-images", type=int, help="override the mode's synthetic training images")
    p.add_argument("--val-images", type=int, help="override the mode's synthetic val images")
    p.add_argument("--image-size", type=int, help="override the mode's synthetic image and crop size")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.mode = args.mode or "quick"
    args.command = " ".join(["python examples/reproduce_paper.py"] + (sys.argv[1:] if argv is None else list(argv)))
    unknown = [name for name in args.only if name not in TABLES]
    if unknown:
        p.error(f"--only: unknown table {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    if args.voc_root is not None and not Path(args.voc_root).exists():
        p.error(f"--voc-root {args.voc_root} does not exist")
    return args


def main(argv=None):
    args = parse_args(argv)
    set_backend(args.backend)  # for evaluating models that were trained in an earlier run
    args.out.mkdir(parents=True, exist_ok=True)
    began, args.trained = time.perf_counter(), set()
    results = {name: run_table(args, name) for name in TABLES if name in args.only}
    save_valid_taps(args.out / "figure4.png", sizes=(65, 33))
    for name, table_results in results.items():
        plot_table(args.out / f"{name}.png", name, table_results)
    if "table1" in results:
        plot_output_strides(args, args.out / "predictions_os.png")
    spread = seed_spread(args)
    write_results(args, results, spread, (time.perf_counter() - began) / 60)
    print(f"wrote {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
