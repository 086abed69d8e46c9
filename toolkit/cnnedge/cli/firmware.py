"""`cnnedge firmware`: a run's TFLM bundle built, run and measured on microcontroller cores."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnedge.cli.app import IMAGES, TflmDir, app, checked, console, kib
from cnnedge.firmware import targets as fw_targets
from cnnedge.numbers import Range

_TARGETS = " | ".join(fw_targets.names())


@app.command("firmware")
def firmware_cmd(
    source: Optional[str] = typer.Argument(
        None,
        help="Run directory, export folder, TFLM "
        "bundle, .keras model or reference checkpoint name "
        "(exported to TFLM first).",
    ),
    target: str = typer.Option("cortex-m4", "--target", "-t", help=f"{_TARGETS} | all (comma list ok)."),
    tflm_dir: Optional[Path] = TflmDir,
    kernels: Optional[str] = typer.Option(None, "--kernels", help="cmsis_nn (Arm default) or reference."),
    out: Optional[Path] = typer.Option(
        None, "-o", "--out", help="Results folder (default <run>/firmware); <out>/<target>/ is replaced."
    ),
    parity_n: int = typer.Option(
        300,
        "--parity",
        help="Test images run on the firmware and compared with LiteRT (0 = none).",
        callback=checked(Range(0, 10**6, integer=True, note="0 = none")),
    ),
    data: Optional[str] = typer.Option(
        None, "--data", help="Dataset of the parity images when SOURCE is not a run."
    ),
    max_flash: Optional[str] = typer.Option(
        None, "--max-flash", help="Flash of your board (e.g. 1M): a bigger firmware is refused."
    ),
    max_ram: Optional[str] = typer.Option(
        None, "--max-ram", help="RAM of your board (e.g. 256K): a firmware needing more is refused."
    ),
    timeout: float = typer.Option(
        600, "--timeout", help="Seconds an emulated run may take.", callback=checked(Range(1, 86400))
    ),
    jobs: Optional[int] = typer.Option(
        None,
        "--jobs",
        "-j",
        help="Compile jobs of a TFLM library build (default: all cores).",
        callback=checked(IMAGES),
    ),
    prepare_only: bool = typer.Option(
        False,
        "--prepare",
        help="Only build (or find cached) TFLM's library for the targets: no SOURCE needed.",
    ),
):
    """Build the TFLite Micro firmware for a core, run it, measure it.

    Runs on QEMU's board model of the core (natively for host); the self-check must pass.
    Reports flash and RAM by owner, the arena TFLM allocated, instructions per inference and
    on-device parity with LiteRT; writes <out>/<target>/report.json.
    """
    from cnnedge.errors import CnnedgeError
    from cnnedge.firmware import build_firmwares, parse_bytes, prepare

    log = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    if prepare_only:
        for lib in prepare(target, tflm_dir=tflm_dir, kernels=kernels, jobs=jobs, log=log):
            console.print(f"TFLite Micro library: {lib}", markup=False, soft_wrap=True)
        return
    if source is None:
        raise CnnedgeError("give SOURCE (a run, bundle, model or checkpoint name), or --prepare")
    reports = build_firmwares(
        source,
        target,
        tflm_dir=tflm_dir,
        kernels=kernels,
        out=out,
        parity_images=parity_n,
        data=data,
        max_flash=parse_bytes(max_flash, "--max-flash"),
        max_ram=parse_bytes(max_ram, "--max-ram"),
        timeout=timeout,
        jobs=jobs,
        log=log,
    )
    _print(reports)


def _print(reports) -> None:
    from rich.table import Table

    t = Table(
        "target",
        "board",
        "flash",
        "RAM",
        "arena used",
        "instructions/inf",
        "est. ms @ MHz",
        "parity top-1",
        "max step",
    )
    for r in reports:
        p = r.parity or {}
        est = f"{r.estimate_ms:.1f} @ {r.clock_mhz}" if r.estimate_ms is not None else "-"
        t.add_row(
            r.target,
            r.board or "native",
            kib(r.flash["total"]) if r.flash else "-",
            kib(r.ram["total"]) if r.ram else "-",
            f"{r.arena_used:,} B" if r.arena_used else "-",
            f"{r.instructions / 1e6:.2f} M" if r.instructions else "-",
            est,
            f"{100 * p['top1_agreement']:.1f} % of {p['images']}" if p else "-",
            str(p["max_step_diff"]) if p else "-",
        )
    console.print(t)
    for r in reports:
        console.print(f"{r.folder}/report.json", markup=False, soft_wrap=True)
    if any(r.estimate_ms is not None for r in reports):
        console.print(
            "est. ms: instructions × calibrated cycles per instruction at the stated "
            "clock — an estimate, not a measurement (docs/microcontrollers.md)"
        )
