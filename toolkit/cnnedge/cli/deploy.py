"""`cnnedge export`, `verify`, `bench`, `demo`, `formats`, `runtimes`: from a run to a device.

Help texts that list formats, file names or runtimes are read from the artifact table and the
runtime registry, so they cannot drift from what the commands accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cnnedge import artifacts, runtime
from cnnedge.cli.app import (
    IMAGES,
    PERCENT,
    THREADS,
    TflmDir,
    app,
    checked,
    console,
    err_console,
    kib,
)
from cnnedge.numbers import Range

_FORMATS = " | ".join(artifacts.formats())
_PRECISIONS = " | ".join(dict.fromkeys(a.precision for a in artifacts.exported()))
_EDGE_FILES = ", ".join(artifacts.get(k).filename for k in artifacts.EDGE_PREFERENCE)
_BENCH_ROWS = ", ".join(row for name in runtime.list_runtimes() for row in runtime.modes(name))
FRAMES = Range(1, 10**12, integer=True)
_EDGE_RUNTIMES = " | ".join(dict.fromkeys(r for k in artifacts.EDGE_PREFERENCE
                                          for r in artifacts.get(k).runtimes))


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory (its best and QAT models) or a .keras/.h5 "
                               "model."),
    format_: str = typer.Option("all", "--format", "-f", help=f"{_FORMATS} | all (comma list ok; "
                                "all = every format but tflm: the fixed-size int8 model and C/C++ "
                                "bundle for TFLite Micro, written on request)."),
    precision: str = typer.Option("all", "--precision", "-p", help=f"{_PRECISIONS} | all."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default <run>/export)."),
    data: Optional[str] = typer.Option(None, "--data", help="Calibration dataset for a bare model file."),
    int8_method: str = typer.Option("tflite", help="int8 ONNX route: tflite (from the int8 .tflite, "
                                    "bit-exact with it) or qdq (onnxruntime quantize_static)."),
    onnx_weights: Optional[str] = typer.Option(None, "--onnx-weights", help="int8 ONNX weights: "
                                               "int8 (default; symmetric, zero point 0: standard "
                                               "QDQ for TensorRT and OpenVINO, fast on VNNI and "
                                               "ARM) or uint8 (+128: exact in onnxruntime on x86 "
                                               "CPUs without VNNI too)."),
    opset: int = typer.Option(17, help="ONNX opset.", callback=checked(Range(7, 21, integer=True))),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="HxW input of --format "
                                             "tflm (default: the training size)."),
    verify_n: int = typer.Option(512, "--verify", help="Quick parity check on N test images after "
                                 "export (0 = skip; runs only for run directories).",
                                 callback=checked(Range(0, 10**9, integer=True, note="0 = skip"))),
):
    """Export a run to TFLite and ONNX (fp32/fp16/int8), or TFLite Micro (--format tflm).

    Metadata is embedded in every artifact; a quick parity check follows.
    """
    from rich.table import Table

    from cnnedge.export import export

    res = export(run, formats=format_, precisions=precision, out_dir=out, calibration=data,
                 opset=opset, int8_method=int8_method, verify=verify_n,
                 onnx_weights=onnx_weights, image_size=image_size)
    t = Table("file", "format", "precision", "from", "size")
    for r in res:
        t.add_row(str(r["path"]), r["format"], r["precision"], r["source"], kib(r["bytes"]))
    console.print(t)
    for line in res.notes:
        err_console.print(f"note: {line}", markup=False, soft_wrap=True)
    for r in res:
        if r.get("arena_bytes"):
            console.print(f"{r['path']}: TFLite Micro arena {r['arena_bytes']:,} bytes measured "
                          f"(kTensorArenaSize in tflm/model_settings.h adds a margin)",
                          soft_wrap=True, markup=False)
    if res.verify_error:
        err_console.print(f"warning: no quick parity check: {res.verify_error}", markup=False,
                          soft_wrap=True)
    if res.verify is not None:
        _print_verify(res.verify)
        if not res.passed:
            err_console.print("warning: an artifact agrees less than its threshold; see the table "
                              f"and run: cnnedge verify {run}", markup=False, soft_wrap=True)
    is_run = Path(run).is_dir()
    target = run if is_run else " ".join(str(r["path"]) for r in res
                                         if not Path(r["path"]).is_dir())
    console.print(f"next: cnnedge verify {run}  |  cnnedge bench {target}" if is_run
                  else f"next: cnnedge bench {target}", soft_wrap=True)


@app.command("verify")
def verify_cmd(
    run: Path = typer.Argument(..., help="Run directory with exported models in export/."),
    n: Optional[int] = typer.Option(None, "-n", help="N test images, a seeded sample stratified "
                                   "by class (default: all, in file order).",
                                   callback=checked(IMAGES)),
    min_int8: float = typer.Option(99.5, help="Minimum int8 top-1 agreement (%) with QAT Keras.",
                                   callback=checked(PERCENT)),
    min_fp32: float = typer.Option(99.9, help="Minimum fp32 top-1 agreement (%) with Keras.",
                                   callback=checked(PERCENT)),
    min_fp16: float = typer.Option(99.5, help="Minimum fp16 top-1 agreement (%) with Keras.",
                                   callback=checked(PERCENT)),
    min_int8_ptq: float = typer.Option(98.0, help="Bar (%) for the PTQ int8 model's agreement "
                                       "with Keras float (reported, gated only with --gate-ptq).",
                                       callback=checked(PERCENT)),
    gate_ptq: bool = typer.Option(False, "--gate-ptq", help="Let the PTQ int8 model (a comparison "
                                  "point for QAT) decide the exit code too."),
    threads: int = typer.Option(0, help="Runtime threads (0: all cores).", callback=checked(THREADS)),
    runtimes: Optional[str] = typer.Option(None, "--runtime", "-r", help="More runtimes to run "
                                           "each artifact on beside its default, comma list "
                                           "(e.g. openvino,openvino-bf16)."),
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
    rep = verify(run, n=n, threads=threads, gate_ptq=gate_ptq, runtimes=extra, thresholds={
        "int8": min_int8 / 100, "fp32": min_fp32 / 100, "fp16": min_fp16 / 100,
        "int8-ptq": min_int8_ptq / 100})
    _print_verify(rep)
    r = Run(run)
    console.print(f"wrote {r.report(Run.VERIFY_JSON)} and {r.report(Run.VERIFY_MD)}",
                  soft_wrap=True)
    if not rep.passed:
        bad = [r["artifact"] for r in rep.rows if r["gate"] == "fail"]
        err_console.print(f"error: agreement under threshold for {', '.join(bad)}", markup=False,
                          soft_wrap=True)
        raise typer.Exit(1)


def _print_verify(rep):
    from rich.table import Table

    from cnnedge.verify import agreement_lines, gate_lines, row_cells, title

    t = Table("artifact", "runtime", "accuracy", "reference", "agreement", "95 % CI",
              "max |Δlogit|", "mean |Δlogit|", "flips", "gate", title=title(rep))
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


@app.command("demo")
def demo_cmd(
    source: str = typer.Argument(..., help="Camera index (0), video file, image file, folder "
                                 "(recursive) or glob of images ('shots/*.jpg'), /dev/videoN, "
                                 "or an rtsp:// / http:// URL."),
    model: Optional[Path] = typer.Option(None, "--model", "-m",
                                         help="Exported .tflite/.onnx, or a run directory (the "
                                         f"first of {_EDGE_FILES} in its export folder). Default "
                                         "runs/fashion_mnist/exp; with --collect, none "
                                         "(collect only)."),
    runtime: Optional[str] = typer.Option(None, help=f"{_EDGE_RUNTIMES} (default: by file "
                                          "type)."),
    threads: int = typer.Option(1, help="Inference threads (1 leaves the other cores to "
                                "decoding and encoding).", callback=checked(Range(1, 4096, integer=True))),
    roi: Optional[float] = typer.Option(None, help="Centred square ROI, fraction of the short "
                                        "side (default 0.6; images: the whole image).",
                                        callback=checked(Range(0, 1, lo_open=True))),
    invert: str = typer.Option("model", help="model, auto, on or off: invert light-background "
                               "ROIs; model: auto for models trained on a dark background "
                               "(Fashion-MNIST), else off."),
    native_size: Optional[bool] = typer.Option(None, "--native-size/--no-native-size",
                                               help="Feed the ROI at its own size to a "
                                               "dynamic-H×W (GMP) model instead of resizing "
                                               "(default: as the model was trained)."),
    smooth: float = typer.Option(0.6, help="EMA weight of past frames' probabilities (0: off; "
                                 "videos and cameras only, never across images).",
                                 callback=checked(Range(0, 1, hi_open=True))),
    top_k: int = typer.Option(3, "--top-k", help="Classes shown and logged.",
                              callback=checked(Range(1, 1000, integer=True))),
    headless: bool = typer.Option(False, "--headless", help="No window: write an annotated "
                                  "video and a JSON-lines log."),
    out: Path = typer.Option(Path("demo.mp4"), "--out", "-o", help="Annotated video (.mp4 "
                             "mp4v, or .avi MJPG) in --headless mode."),
    no_video: bool = typer.Option(False, "--no-video", help="Headless: write the log only."),
    log: Optional[Path] = typer.Option(None, help="JSON-lines log (default with --headless: "
                                       "<out>.jsonl)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames.",
                                             callback=checked(FRAMES)),
    snapshot_dir: Path = typer.Option(Path("."), help="Folder for snapshots (key s, "
                                      "--snapshot-at)."),
    snapshot_at: List[int] = typer.Option([], "--snapshot-at", help="Also save annotated "
                                          "frame N as a PNG (repeatable).",
                                          callback=checked(Range(0, 10**12, integer=True))),
    reconnect: int = typer.Option(3, help="Reopen a lost camera/stream this many times.",
                                  callback=checked(Range(0, 10**6, integer=True))),
    collect: Optional[Path] = typer.Option(None, "--collect", help="Save ROI crops as a "
                                           "dataset: DIR/<label>/NNNN.png (full frames in "
                                           "DIR/.full/<label>/)."),
    label: Optional[str] = typer.Option(None, "--label", help="Collect labels, e.g. cat,dog: "
                                        "keys 1, 2 save under them (default: the model's "
                                        "classes); headless: one label."),
    collect_every: Optional[int] = typer.Option(None, "--collect-every", help="Also save every "
                                                "Nth frame under the one --label (headless "
                                                "default 10).", callback=checked(FRAMES)),
):
    """Live classification from a camera, video or images.

    Uses an exported model (TFLite or ONNX) and its embedded preprocessing metadata; --collect
    turns a camera or video into an image-folder dataset.
    """
    from edge_demo import DemoConfig, format_summary, run_demo

    summary = run_demo(DemoConfig(
        source=source, model=str(model) if model else None, runtime=runtime, threads=threads,
        roi=roi, invert=invert, native_size=native_size, smooth=smooth, top_k=top_k,
        headless=headless, out=str(out), no_video=no_video, log=str(log) if log else None,
        max_frames=max_frames, snapshot_dir=str(snapshot_dir), snapshot_at=list(snapshot_at),
        reconnect=reconnect, collect=str(collect) if collect else None, label=label,
        collect_every=collect_every),
        echo=lambda s: console.print(s, markup=False, soft_wrap=True),
        warn=lambda s: err_console.print(s, markup=False, highlight=False, soft_wrap=True))
    console.print(format_summary(summary), markup=False, highlight=False, soft_wrap=True)


@app.command("bench")
def bench_cmd(
    targets: List[Path] = typer.Argument(..., help="A run directory, or artifact files "
                                         "(.tflite, .onnx, .keras, .h5)."),
    runtime: List[str] = typer.Option([], "--runtime", "-r",
                                      help="Only these runtimes (repeatable or comma-separated): "
                                      f"{_BENCH_ROWS}; keras means both keras rows."),
    threads: Optional[str] = typer.Option(None, "--threads", "-t",
                                          help="Thread counts, e.g. 1,2 (default: 1 and all cores)."),
    n: Optional[int] = typer.Option(None, "-n", help="Test images for accuracy: a seeded sample "
                                   "stratified by class (default: all; --quick: 1,000).",
                                   callback=checked(IMAGES)),
    quick: bool = typer.Option(False, "--quick", help="Few timed runs: a smoke test, not numbers "
                               "to report."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes",
                                              help="Throughput batch sizes (default 1,32,256)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder for the bench report "
                                       "(json, csv, png; default: the run directory)."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="An earlier bench report (json): print "
                                           "p50 and throughput ratios of matching rows."),
    fail_under: List[str] = typer.Option([], "--fail-under",
                                         help="CI gate (repeatable): accuracy=0.92, speed=0.8 "
                                         "(baseline p50 / p50, needs --compare), throughput=0.8."),
    profile: bool = typer.Option(False, "--profile", help="onnxruntime rows: per-node profiler "
                                 "JSON (profile_<row>.json) and a top-nodes table; other "
                                 "runtimes say 'no profiler'."),
    mcu_target: Optional[str] = typer.Option(None, "--target", help="Microcontroller cores "
                                             "(comma list or all, e.g. cortex-m4,cortex-m7): a "
                                             "row each from the run's TFLM firmware built and "
                                             "run under QEMU (cnnedge firmware)."),
    tflm_dir: Optional[Path] = TflmDir,
):
    """Latency, accuracy and memory on every runtime.

    One row per artifact x runtime x threads (and per --target core): bench.json, bench.csv,
    bench.png.
    """
    from cnnedge import bench as bn

    width = None if console.is_terminal else 200
    rep = bn.bench(targets, runtimes=runtime, threads=threads, n=n, quick=quick, out=out,
                   compare=compare, fail_under=fail_under, batch_sizes=batch_sizes,
                   profile=profile, mcu_targets=mcu_target, tflm_dir=tflm_dir,
                   command=bn.command_line(targets, runtime=runtime, threads=threads, n=n,
                                           quick=quick, batch_sizes=batch_sizes, out=out,
                                           compare=compare, fail_under=fail_under,
                                           profile=profile, target=mcu_target),
                   progress=lambda r: err_console.print(bn.progress_line(r), markup=False,
                                                        highlight=False, soft_wrap=True))
    console.print(bn.table(rep), width=width)
    if rep.compare:
        console.print(bn.compare_table(rep), width=width)
    if rep.profiles:
        console.print(bn.profile_table(rep), width=width)
    for line in rep.notes:
        err_console.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in bn.failure_lines(rep):
        err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    if rep.files:
        names = ", ".join(Path(f).name for f in [*rep.files.values(), *(
            p["file"] for p in rep.profiles if p.get("file"))])
        kept = " (rows failed: the earlier bench report there is kept as it was)" \
            if rep.failed_rows else ""
        console.print(f"wrote {names} to {rep.out_dir}{kept}", markup=False, highlight=False,
                      soft_wrap=True)
    if rep.exit_code:
        raise typer.Exit(rep.exit_code)


@app.command("formats")
def formats_cmd():
    """The artifact table: every file export writes, and what runs it."""
    from rich.table import Table

    t = Table("format", "precision", "file", "from", "metadata", "runtimes (default first)")
    for a in artifacts.TABLE:
        t.add_row(a.format, a.precision, a.filename or f"run's {a.suffix}", a.source,
                  artifacts.METADATA_WHERE[a.format], ", ".join(a.runtimes))
    console.print(t)


@app.command("runtimes")
def runtimes_cmd():
    """Runtimes, whether each is available here, and what to install if not."""
    from rich.table import Table

    t = Table("runtime", "bench rows", "runs", "", "about")
    missing = []
    for name in runtime.list_runtimes():
        ok, why = runtime.runtime_status(name)
        files = sorted({a.suffix for a in artifacts.TABLE if name in a.runtimes})
        t.add_row(name, ", ".join(runtime.modes(name)), " ".join(files), "✅" if ok else "➖",
                  runtime.runtime_help(name))
        if not ok:
            missing.append(f"➖ {name}: {why}")
    console.print(t)
    for line in missing:  # whole lines: the install hint must stay copyable
        console.print(line, markup=False, highlight=False, soft_wrap=True)
