"""The command-line programs, installed as console scripts with the package:

    atrousnp-train      train.py     train and evaluate DeepLabv3 (examples/train_voc_subset.py)
    atrousnp-evaluate   evaluate.py  evaluate a checkpoint at any output stride, scales and flips
    atrousnp-segment    segment.py   segment an image with a checkpoint

Each ``main(argv=None)`` turns what the user can fix (a setting, the data, a file) into one line
on stderr and exit status 1 (2 for a flag argparse refuses); anything else is a bug and keeps
its traceback.
"""

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default shown after its help; the description's own line breaks kept."""


def floats(text):
    return tuple(float(v) for v in text.split(","))


def ints(text):
    return tuple(int(v) for v in text.split(","))
