"""``python -m edge_demo ARGS`` is ``cnnedge demo ARGS``: the same command, options and errors
(one ``error: ...`` line and exit code 2 for bad input)."""

import sys

from cnnedge.cli import main


def run() -> None:
    argv = sys.argv[1:]
    root = [a for a in argv if a == "--debug"]  # a root option of the cnnedge CLI
    sys.exit(main([*root, "demo", *[a for a in argv if a != "--debug"]]))


if __name__ == "__main__":
    run()
