"""The `atrousnp-evaluate` command, run from a clone: see atrousnp/cli/evaluate.py, or --help.

    python examples/evaluate.py --help
"""

from atrousnp.cli.evaluate import main

if __name__ == "__main__":
    main()
