"""Training and evaluating DeepLabv3 on VOC-format data: the engine behind ``atrousnp-train``.

Read ``loop.py`` first: the loop itself, in one screen. What it calls is one file away:

    config.py       TrainConfig, the settings of a run, and their one validation
    build.py        the model, the optimiser and the data the settings describe
    strategies.py   one process, a CUDA graph, or one rank of an MPI job
    evaluation.py   evaluate on a split; load a trained model back
    outputs.py      the folder lock, checkpoints and resuming, metrics and pictures
"""

from .build import atrous_filters, atrous_geometry, build_model, build_optimizer, datasets
from .config import BACKBONES, SettingsError, TrainConfig, check_out, check_settings, resolve
from .evaluation import all_finite, evaluate, load_trained, named_iou, saved_config
from .loop import train
from .outputs import DivergenceError, FolderInUseError, folder_lock

__all__ = ["BACKBONES", "DivergenceError", "FolderInUseError", "SettingsError", "TrainConfig", "all_finite",
           "atrous_filters", "atrous_geometry", "build_model",
           "build_optimizer", "check_out", "check_settings", "datasets", "evaluate", "folder_lock",
           "load_trained", "named_iou", "resolve", "saved_config", "train"]
