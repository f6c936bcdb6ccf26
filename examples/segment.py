"""The `atrousnp-segment` command, run from a clone: see atrousnp/cli/segment.py, or --help.

    python examples/segment.py --help
"""

from atrousnp.cli.segment import main

if __name__ == "__main__":
    main()
