"""docs/cli.md from the typer app itself: ``python -m cnnedge.cli.docs > docs/cli.md``.

A test compares the file with this output, so the reference cannot fall behind the commands.
"""

from __future__ import annotations

import sys

import typer

from cnnedge.cli import app

HEADER = (
    "# Command reference\n\nGenerated from the command line itself "
    "(`python -m cnnedge.cli.docs > docs/cli.md`); `cnnedge COMMAND --help` prints the same.\n"
)


def _param(p) -> str:
    if p.param_type_name == "argument":
        name = f"`{p.name.upper()}`"
    else:
        name = ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
        name += "" if p.is_flag else " VALUE"
    default = p.default if not callable(p.default) else None
    show = "" if default in (None, False, [], ()) else f" (default: `{default}`)"
    return f"| {name} | {' '.join((p.help or '').split())}{show} |"


def _command(path: str, cmd) -> list[str]:
    doc = (cmd.help or "").strip()
    lines = [f"## `{path}`", "", doc, ""]
    params = [p for p in cmd.params if p.name != "help" and not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument / option | meaning |", "|---|---|"]
        lines += [_param(p) for p in params] + [""]
    return lines


def markdown() -> str:
    root = typer.main.get_command(app)  # a click group (typer vendors click)
    lines = [HEADER]
    for name, cmd in sorted(root.commands.items()):
        subs = getattr(cmd, "commands", None)  # a command group: `cnnedge data ...`
        for sub, c in sorted(subs.items()) if subs else [(None, cmd)]:
            lines += _command(f"cnnedge {name}" + (f" {sub}" if sub else ""), c)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
