"""`cnnedge export`, `verify`: from a run to deployable files, checked against the model.

Help texts that list formats, file names or runtimes are read from the artifact table and the
runtime registry, so they cannot drift from what the commands accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnedge import artifacts
from cnnedge.cli.app import (
    IMAGES,
    PERCENT,
    THREADS,
    app,
    checked,
    console,
    err_console,
    kib,
)
from cnnedge.numbers import Range

_FORMATS = " | ".join(artifacts.formats())
_PRECISIONS = " | ".join(dict.fromkeys(a.precision for a in artifacts.exported()))


_EXPORT_RUN = typer.Argument(..., help="Run directory (its best and QAT models) or a .keras/.h5 model.")
_EXPORT_FORMAT = typer.Option(
    "all",
    "--format",
    "-f",
    help=f"{_FORMATS} | all (comma list ok; "
    "all = every format but tflm: the fixed-size int8 model and C/C++ "
    "bundle for TFLite Micro, written on request).",
)
_EXPORT_PRECISION = typer.Option("all", "--precision", "-p", help=f"{_PRECISIONS} | all.")
_EXPORT_OUT = typer.Option(None, "-o", "--out", help="Output folder (default <run>/export).")
_EXPORT_DATA = typer.Option(None, "--data", help="Calibration dataset for a bare model file.")
_EXPORT_INT8_METHOD = typer.Option(
    "tflite",
    help="int8 ONNX route: tflite (from the int8 .tflite, "
    "bit-exact with it) or qdq (onnxruntime quantize_static).",
)
_EXPORT_ONNX_WEIGHTS = typer.Option(
    None,
    "--onnx-weights",
    help="int8 ONNX weights: "
    "int8 (default; symmetric, zero point 0: standard "
    "QDQ for TensorRT and OpenVINO, fast on VNNI and "
    "ARM) or uint8 (+128: exact in onnxruntime on x86 "
    "CPUs without VNNI too).",
)
_EXPORT_OPSET = typer.Option(17, help="ONNX opset.", callback=checked(Range(7, 21, integer=True)))
_EXPORT_IMAGE_SIZE = typer.Option(
    None, "--image-size", help="HxW input of --format tflm (default: the training size)."
)
_EXPORT_VERIFY_N = typer.Option(
    512,
    "--verify",
    help="Quick parity check on N test images after export (0 = skip; runs only for run directories).",
    callback=checked(Range(0, 10**9, integer=True, note="0 = skip")),
)


@app.command("export")
def export_cmd(
    run: Path = _EXPORT_RUN,
    format_: str = _EXPORT_FORMAT,
    precision: str = _EXPORT_PRECISION,
    out: Optional[Path] = _EXPORT_OUT,
    data: Optional[str] = _EXPORT_DATA,
    int8_method: str = _EXPORT_INT8_METHOD,
    onnx_weights: Optional[str] = _EXPORT_ONNX_WEIGHTS,
    opset: int = _EXPORT_OPSET,
    image_size: Optional[str] = _EXPORT_IMAGE_SIZE,
    verify_n: int = _EXPORT_VERIFY_N,
):
    """Export a run to TFLite and ONNX (fp32/fp16/int8), or TFLite Micro (--format tflm).

    Metadata is embedded in every artifact; a quick parity check follows.
    """
    from rich.table import Table

    from cnnedge.export import export

    res = export(
        run,
        formats=format_,
        precisions=precision,
        out_dir=out,
        calibration=data,
        opset=opset,
        int8_method=int8_method,
        verify=verify_n,
        onnx_weights=onnx_weights,
        image_size=image_size,
    )
    t = Table("file", "format", "precision", "from", "size")
    for r in res:
        t.add_row(str(r["path"]), r["format"], r["precision"], r["source"], kib(r["bytes"]))
    console.print(t)
    for line in res.notes:
        err_console.print(f"note: {line}", markup=False, soft_wrap=True)
    for r in res:
        if r.get("arena_bytes"):
            console.print(
                f"{r['path']}: TFLite Micro arena {r['arena_bytes']:,} bytes measured "
                f"(kTensorArenaSize in tflm/model_settings.h adds a margin)",
                soft_wrap=True,
                markup=False,
            )
    if res.verify_error:
        err_console.print(f"warning: no quick parity check: {res.verify_error}", markup=False, soft_wrap=True)
    if res.verify is not None:
        _print_verify(res.verify)
        if not res.passed:
            err_console.print(
                "warning: an artifact agrees less than its threshold; see the table "
                f"and run: cnnedge verify {run}",
                markup=False,
                soft_wrap=True,
            )
    is_run = Path(run).is_dir()
    target = run if is_run else " ".join(str(r["path"]) for r in res if not Path(r["path"]).is_dir())
    console.print(
        f"next: cnnedge verify {run}  |  cnnedge bench {target}"
        if is_run
        else f"next: cnnedge bench {target}",
        soft_wrap=True,
    )


_VERIFY_RUN = typer.Argument(..., help="Run directory with exported models in export/.")
_VERIFY_N = typer.Option(
    None,
    "-n",
    help="N test images, a seeded sample stratified by class (default: all, in file order).",
    callback=checked(IMAGES),
)
_VERIFY_MIN_INT8 = typer.Option(
    99.5, help="Minimum int8 top-1 agreement (%) with QAT Keras.", callback=checked(PERCENT)
)
_VERIFY_MIN_FP32 = typer.Option(
    99.9, help="Minimum fp32 top-1 agreement (%) with Keras.", callback=checked(PERCENT)
)
_VERIFY_MIN_FP16 = typer.Option(
    99.5, help="Minimum fp16 top-1 agreement (%) with Keras.", callback=checked(PERCENT)
)
_VERIFY_MIN_INT8_PTQ = typer.Option(
    98.0,
    help="Bar (%) for the PTQ int8 model's agreement "
    "with Keras float (reported, gated only with --gate-ptq).",
    callback=checked(PERCENT),
)
_VERIFY_GATE_PTQ = typer.Option(
    False, "--gate-ptq", help="Let the PTQ int8 model (a comparison point for QAT) decide the exit code too."
)
_VERIFY_THREADS = typer.Option(0, help="Runtime threads (0: all cores).", callback=checked(THREADS))
_VERIFY_RUNTIMES = typer.Option(
    None,
    "--runtime",
    "-r",
    help="More runtimes to run "
    "each artifact on beside its default, comma list "
    "(e.g. openvino,openvino-bf16).",
)


@app.command("verify")
def verify_cmd(
    run: Path = _VERIFY_RUN,
    n: Optional[int] = _VERIFY_N,
    min_int8: float = _VERIFY_MIN_INT8,
    min_fp32: float = _VERIFY_MIN_FP32,
    min_fp16: float = _VERIFY_MIN_FP16,
    min_int8_ptq: float = _VERIFY_MIN_INT8_PTQ,
    gate_ptq: bool = _VERIFY_GATE_PTQ,
    threads: int = _VERIFY_THREADS,
    runtimes: Optional[str] = _VERIFY_RUNTIMES,
):
    """Parity report: every artifact against Keras.

    Writes verify.json and verify.md; exit 1 when a gated agreement fails its threshold. On fewer
    than 1,000 images an agreement under its threshold whose 95 % interval still reaches it is
    inconclusive (exit 0, rerun with more images), not a failure.
    """
    from cnnedge.run import Run
    from cnnedge.utils import split_list
    from cnnedge.verify import verify

    extra = split_list(runtimes) if runtimes else []
    rep = verify(
        run,
        n=n,
        threads=threads,
        gate_ptq=gate_ptq,
        runtimes=extra,
        thresholds={
            "int8": min_int8 / 100,
            "fp32": min_fp32 / 100,
            "fp16": min_fp16 / 100,
            "int8-ptq": min_int8_ptq / 100,
        },
    )
    _print_verify(rep)
    r = Run(run)
    console.print(f"wrote {r.report(Run.VERIFY_JSON)} and {r.report(Run.VERIFY_MD)}", soft_wrap=True)
    if not rep.passed:
        bad = [r["artifact"] for r in rep.rows if r["gate"] == "fail"]
        err_console.print(
            f"error: agreement under threshold for {', '.join(bad)}", markup=False, soft_wrap=True
        )
        raise typer.Exit(1)


def _print_verify(rep):
    from rich.table import Table

    from cnnedge.verify import agreement_lines, gate_lines, row_cells, title

    t = Table(
        "artifact",
        "runtime",
        "accuracy",
        "reference",
        "agreement",
        "95 % CI",
        "max |Δlogit|",
        "mean |Δlogit|",
        "flips",
        "gate",
        title=title(rep),
    )
    for r in rep.rows:
        t.add_row(*row_cells(r))
    console.print(t)
    for line in agreement_lines(rep):
        console.print(line)
    for line in gate_lines(rep) + rep.notes:  # stdout: these are not errors
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    from cnnedge.verify.report import firmware_lines

    for line in firmware_lines(getattr(rep, "firmware", [])):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
