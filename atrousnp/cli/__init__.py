"""The command-line programs, installed as console scripts with the package:

    atrousnp-train      train.py     train and evaluate DeepLabv3 (examples/train_voc_subset.py)
    atrousnp-evaluate   evaluate.py  evaluate a checkpoint at any output stride, scales and flips
    atrousnp-segment    segment.py   segment an image with a checkpoint

Each ``main(argv=None)`` turns what the user can fix (a setting, the data, a file) into one line
on stderr and exit status 1 (2 for a flag argparse refuses); anything else is a bug and keeps
its traceback.
"""

import argparse
import sys

from .. import parallel
from ..backends import backend_names
from ..inference import check_scales


class ArgumentParser(argparse.ArgumentParser):
    """argparse's, but in an MPI job (every rank parses the same flags) rank 0 alone prints the
    help or a usage error; every rank exits alike."""

    def _print_message(self, message, file=None):
        if parallel.is_main():
            super()._print_message(message, file)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The description's own line breaks kept, and after each flag's help its default, when it
    has one worth saying: not for a switch (``--flip``), nor a help that names its own default."""

    def _get_help_string(self, action):
        text = action.help or ""
        switch = action.nargs == 0
        if switch or action.default in (None, argparse.SUPPRESS) or "default" in text:
            return text
        default = ",".join(map(str, action.default)) if isinstance(action.default, tuple) else action.default
        return f"{text} (default: {default})"


def scales(flag):
    """The argparse type of ``flag``: its text "0.5,1,1.5" as positive finite floats
    (``inference.check_scales``), or argparse's error naming the flag, with exit status 2."""
    def parse(text):
        try:
            return check_scales(text, flag)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    parse.__name__ = "scales"
    return parse


def ints(text):
    return tuple(int(v) for v in text.split(","))


def add_inference_flags(parser, scales_example, flip_help):
    """The flags that evaluate.py and segment.py share: output stride, scales, flip, backend."""
    parser.add_argument("--output-stride", type=int, choices=[8, 16, 32], help="default: the training one")
    parser.add_argument("--scales", type=scales("--scales"), default="1.0", help=f"e.g. {scales_example}")
    parser.add_argument("--flip", action="store_true", help=flip_help)
    parser.add_argument("--backend", choices=backend_names(), default="numba", help="cuda needs an NVIDIA GPU")


def announce(doing, args):
    """Say on stderr (stdout keeps the results alone) what runs, once its inputs are checked, so
    that a refused input is one line of error and nothing else."""
    print(f"{doing} on the {args.backend} backend", file=sys.stderr, flush=True)
