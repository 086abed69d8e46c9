"""The `cnnedge` command line: a thin typer layer over library functions.

Every command calls one public function (``cnnedge.data.describe``, ``cnnedge.train.train``,
``cnnedge.export.export`` ...) that users can call from Python too. Errors: a
:class:`CnnedgeError` prints one ``error:`` line and exits 2; anything unexpected prints one line
and exits 1; ``--debug`` shows tracebacks. ``python -m cnnedge.cli.docs`` writes docs/cli.md.
"""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from cnnedge.cli import bench, data, deploy, firmware, predict, training, tune  # noqa: F401  (register)
from cnnedge.cli.app import app, err_console
from cnnedge.errors import CnnedgeError

__all__ = ["app", "main", "run"]


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from cnnedge.utils import debug_enabled

    debug = "--debug" in argv or debug_enabled()
    try:
        rv = app(args=argv, prog_name="cnnedge", standalone_mode=False)
        return rv if isinstance(rv, int) else 0  # click returns typer.Exit's code here
    except CnnedgeError as e:
        if debug:
            raise
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return e.exit_code
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", None)
        if code is None:
            code = e.code if isinstance(e, SystemExit) else 0
        return int(code or 0)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI never shows a traceback without --debug
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # click's usage errors (typer vendors click)
            e.show()
            return int(e.exit_code)
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        err_console.print(
            f"error: {type(e).__name__}: {msg} (run with --debug for details)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1


def run() -> None:
    import signal

    def terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary outputs are removed
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    sys.exit(main())


if __name__ == "__main__":
    run()
