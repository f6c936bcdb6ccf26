"""The `atrousnp-train` command, run from a clone: see atrousnp/cli/train.py, or --help.

    python examples/train_voc_subset.py --help
"""

from atrousnp.cli.train import main

if __name__ == "__main__":
    main()
