"""`cnnedge tune`: the most accurate model that fits a board's RAM, flash and latency."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnedge.cli.app import TflmDir, app, checked, console
from cnnedge.numbers import Range

_TUNE_DATA = typer.Option(
    None, "--data", help="Folder of class folders (an automatic recipe), or the dataset for --recipe."
)
_TUNE_RECIPE = typer.Option(None, "--recipe", help="Base recipe: a name or a .py/.yaml file.")
_TUNE_TARGET = typer.Option(
    None, "--target", "-t", help="Core (cnnedge firmware targets); default the board's, else cortex-m4."
)
_TUNE_BOARD = typer.Option(
    None,
    "--board",
    help="A board (sets core, clock, RAM, flash): nano33ble, stm32h747-disco, … or --boards.",
)
_TUNE_BOARDS_FILE = typer.Option(
    None, "--boards", help="More boards: a JSON or YAML file {name: {core, clock_mhz, ram, flash}}."
)
_TUNE_MAX_RAM = typer.Option(None, "--max-ram", help="RAM budget: 64K, 0.5M, bytes.")
_TUNE_MAX_FLASH = typer.Option(None, "--max-flash", help="Flash budget.")
_TUNE_MAX_MS = typer.Option(
    None, "--max-ms", help="Latency budget (estimated at --clock; calibrated cores only)."
)
_TUNE_CLOCK = typer.Option(
    None, "--clock", help="MHz the latency budget is at.", callback=checked(Range(1, 10000, integer=True))
)
_TUNE_MINUTES = typer.Option(
    30.0, "--minutes", help="Time budget of the search.", callback=checked(Range(0.1, 100000))
)
_TUNE_STEPS = typer.Option(
    200,
    "--steps",
    help="Training steps of rung 0 (later rungs: 3×).",
    callback=checked(Range(1, 10**7, integer=True)),
)
_TUNE_MODELS = typer.Option(None, "--models", help="GMP members, comma list.")
_TUNE_WIDTHS = typer.Option(None, "--widths", help="Width multipliers, e.g. 0.5,1.")
_TUNE_SIZES = typer.Option(None, "--sizes", help="Input sides, e.g. 32,48.")
_TUNE_POOLS = typer.Option(None, "--pools", help="Heads: max, avg, concat (both; the gmp_dw members).")
_TUNE_COLORS = typer.Option(
    None, "--colors", help="rgb, grey: colour data as it is and/or as one grey channel (default rgb)."
)
_TUNE_KERNELS = typer.Option(
    None, "--kernels", help="Depthwise kernels of the gmp_dw members, e.g. 3,5 (default 3)."
)
_TUNE_JOBS = typer.Option(
    1,
    "--jobs",
    "-j",
    help="Trials trained at once, each in its own process with its share of the cores.",
    callback=checked(Range(1, 256, integer=True)),
)
_TUNE_OUT = typer.Option(None, "-o", "--out", help="Search folder (default runs/tune/<recipe>).")
_TUNE_RESUME = typer.Option(False, "--resume", help="Continue the search in --out.")
_TUNE_TRAIN_BEST = typer.Option(
    False, "--train-best", help="Then train the winner in full, export, verify and build its firmware."
)


@app.command("tune")
def tune_cmd(
    data: Optional[str] = _TUNE_DATA,
    recipe: Optional[str] = _TUNE_RECIPE,
    target: Optional[str] = _TUNE_TARGET,
    board: Optional[str] = _TUNE_BOARD,
    boards_file: Optional[Path] = _TUNE_BOARDS_FILE,
    max_ram: Optional[str] = _TUNE_MAX_RAM,
    max_flash: Optional[str] = _TUNE_MAX_FLASH,
    max_ms: Optional[float] = _TUNE_MAX_MS,
    clock: Optional[int] = _TUNE_CLOCK,
    minutes: float = _TUNE_MINUTES,
    steps: int = _TUNE_STEPS,
    models: Optional[str] = _TUNE_MODELS,
    widths: Optional[str] = _TUNE_WIDTHS,
    sizes: Optional[str] = _TUNE_SIZES,
    pools: Optional[str] = _TUNE_POOLS,
    colors: Optional[str] = _TUNE_COLORS,
    kernels: Optional[str] = _TUNE_KERNELS,
    jobs: int = _TUNE_JOBS,
    out: Optional[Path] = _TUNE_OUT,
    resume: bool = _TUNE_RESUME,
    train_best: bool = _TUNE_TRAIN_BEST,
    tflm_dir: Optional[Path] = TflmDir,
):
    """Search the most accurate model that fits a board.

    Every candidate's RAM, flash and instructions are measured on its int8 firmware before any
    training; those that fit are ranked by successive halving of short trainings. Writes
    tune.json, tune.csv, tune.png and winner.yaml into the search folder.
    """
    from cnnedge.tune import tune

    res = tune(
        data=data,
        recipe=recipe,
        target=target,
        board=board,
        boards_file=boards_file,
        max_ram=max_ram,
        max_flash=max_flash,
        max_ms=max_ms,
        clock_mhz=clock,
        minutes=minutes,
        steps=steps,
        models=models,
        widths=widths,
        sizes=sizes,
        pools=pools,
        colors=colors,
        kernels=kernels,
        jobs=jobs,
        out=out,
        resume=resume,
        train_best=train_best,
        tflm_dir=tflm_dir,
        log=lambda s: console.print(s, markup=False, highlight=False),
    )
    _print(res)


def _print(res) -> None:
    from rich.table import Table

    t = Table(
        "candidate", "params", "MACs", "RAM KiB", "flash KiB", "instr. M", "est. ms", "val acc.", "status"
    )

    def kib(v):
        return "-" if v is None else f"{v / 1024:.1f}"

    for r in res.table:
        t.add_row(
            r["id"],
            f"{r['params']:,}",
            f"{r['macs'] / 1e6:.2f} M",
            kib(r["ram"]),
            kib(r["flash"]),
            f"{r['instructions'] / 1e6:.2f}" if r["instructions"] else "-",
            f"{r['estimate_ms']:.1f}" if r["estimate_ms"] is not None else "-",
            f"{r['val_accuracy']:.4f}" if r["val_accuracy"] is not None else "-",
            r["status"] + (f": {r['reason']}" if r["reason"] else ""),
        )
    console.print(t)
    console.print(
        f"winner {res.winner}; {res.minutes:.1f} min; retrain in full: cnnedge train "
        f"--recipe {res.recipe_path}",
        markup=False,
        soft_wrap=True,
    )
    if res.trained:
        fw = res.trained["firmware"]
        console.print(
            f"trained: {res.trained['run']} (test accuracy "
            f"{res.trained['test_accuracy']}); firmware {fw['target']}: RAM "
            f"{fw['ram'].get('total', 0) / 1024:.1f} KiB, flash "
            f"{fw['flash'].get('total', 0) / 1024:.1f} KiB",
            markup=False,
            soft_wrap=True,
        )
    console.print(f"{res.folder}/tune.csv, tune.png, tune.json", markup=False, soft_wrap=True)
