"""`cnnedge demo`, `bench`, `formats`, `runtimes`: the exported artifacts run, live or timed.

Help texts that list file names or runtimes are read from the artifact table and the runtime
registry, so they cannot drift from what the commands accept.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cnnedge import artifacts, runtime
from cnnedge.cli.app import IMAGES, TflmDir, app, checked, console, err_console
from cnnedge.numbers import Range

_EDGE_FILES = ", ".join(artifacts.get(k).filename for k in artifacts.EDGE_PREFERENCE)
_BENCH_ROWS = ", ".join(row for name in runtime.list_runtimes() for row in runtime.modes(name))
FRAMES = Range(1, 10**12, integer=True)
_EDGE_RUNTIMES = " | ".join(
    dict.fromkeys(r for k in artifacts.EDGE_PREFERENCE for r in artifacts.get(k).runtimes)
)


_DEMO_SOURCE = typer.Argument(
    ...,
    help="Camera index (0), video file, image file, folder "
    "(recursive) or glob of images ('shots/*.jpg'), /dev/videoN, "
    "or an rtsp:// / http:// URL.",
)
_DEMO_MODEL = typer.Option(
    None,
    "--model",
    "-m",
    help="Exported .tflite/.onnx, or a run directory (the "
    f"first of {_EDGE_FILES} in its export folder). Default "
    "runs/fashion_mnist/exp; with --collect, none "
    "(collect only).",
)
_DEMO_RUNTIME = typer.Option(None, help=f"{_EDGE_RUNTIMES} (default: by file type).")
_DEMO_THREADS = typer.Option(
    1,
    help="Inference threads (1 leaves the other cores to decoding and encoding).",
    callback=checked(Range(1, 4096, integer=True)),
)
_DEMO_ROI = typer.Option(
    None,
    help="Centred square ROI, fraction of the short side (default 0.6; images: the whole image).",
    callback=checked(Range(0, 1, lo_open=True)),
)
_DEMO_INVERT = typer.Option(
    "model",
    help="model, auto, on or off: invert light-background "
    "ROIs; model: auto for models trained on a dark background "
    "(Fashion-MNIST), else off.",
)
_DEMO_NATIVE_SIZE = typer.Option(
    None,
    "--native-size/--no-native-size",
    help="Feed the ROI at its own size to a "
    "dynamic-H×W (GMP) model instead of resizing "
    "(default: as the model was trained).",
)
_DEMO_SMOOTH = typer.Option(
    0.6,
    help="EMA weight of past frames' probabilities (0: off; videos and cameras only, never across images).",
    callback=checked(Range(0, 1, hi_open=True)),
)
_DEMO_TOP_K = typer.Option(
    3, "--top-k", help="Classes shown and logged.", callback=checked(Range(1, 1000, integer=True))
)
_DEMO_HEADLESS = typer.Option(
    False, "--headless", help="No window: write an annotated video and a JSON-lines log."
)
_DEMO_OUT = typer.Option(
    Path("demo.mp4"), "--out", "-o", help="Annotated video (.mp4 mp4v, or .avi MJPG) in --headless mode."
)
_DEMO_NO_VIDEO = typer.Option(False, "--no-video", help="Headless: write the log only.")
_DEMO_LOG = typer.Option(None, help="JSON-lines log (default with --headless: <out>.jsonl).")
_DEMO_MAX_FRAMES = typer.Option(None, "--max-frames", help="Stop after N frames.", callback=checked(FRAMES))
_DEMO_SNAPSHOT_DIR = typer.Option(Path("."), help="Folder for snapshots (key s, --snapshot-at).")
_DEMO_SNAPSHOT_AT = typer.Option(
    [],
    "--snapshot-at",
    help="Also save annotated frame N as a PNG (repeatable).",
    callback=checked(Range(0, 10**12, integer=True)),
)
_DEMO_RECONNECT = typer.Option(
    3, help="Reopen a lost camera/stream this many times.", callback=checked(Range(0, 10**6, integer=True))
)
_DEMO_COLLECT = typer.Option(
    None,
    "--collect",
    help="Save ROI crops as a dataset: DIR/<label>/NNNN.png (full frames in DIR/.full/<label>/).",
)
_DEMO_LABEL = typer.Option(
    None,
    "--label",
    help="Collect labels, e.g. cat,dog: "
    "keys 1, 2 save under them (default: the model's "
    "classes); headless: one label.",
)
_DEMO_COLLECT_EVERY = typer.Option(
    None,
    "--collect-every",
    help="Also save every Nth frame under the one --label (headless default 10).",
    callback=checked(FRAMES),
)


@app.command("demo")
def demo_cmd(
    source: str = _DEMO_SOURCE,
    model: Optional[Path] = _DEMO_MODEL,
    runtime: Optional[str] = _DEMO_RUNTIME,
    threads: int = _DEMO_THREADS,
    roi: Optional[float] = _DEMO_ROI,
    invert: str = _DEMO_INVERT,
    native_size: Optional[bool] = _DEMO_NATIVE_SIZE,
    smooth: float = _DEMO_SMOOTH,
    top_k: int = _DEMO_TOP_K,
    headless: bool = _DEMO_HEADLESS,
    out: Path = _DEMO_OUT,
    no_video: bool = _DEMO_NO_VIDEO,
    log: Optional[Path] = _DEMO_LOG,
    max_frames: Optional[int] = _DEMO_MAX_FRAMES,
    snapshot_dir: Path = _DEMO_SNAPSHOT_DIR,
    snapshot_at: List[int] = _DEMO_SNAPSHOT_AT,
    reconnect: int = _DEMO_RECONNECT,
    collect: Optional[Path] = _DEMO_COLLECT,
    label: Optional[str] = _DEMO_LABEL,
    collect_every: Optional[int] = _DEMO_COLLECT_EVERY,
):
    """Live classification from a camera, video or images.

    Uses an exported model (TFLite or ONNX) and its embedded preprocessing metadata; --collect
    turns a camera or video into an image-folder dataset.
    """
    from edge_demo import DemoConfig, format_summary, run_demo

    summary = run_demo(
        DemoConfig(
            source=source,
            model=str(model) if model else None,
            runtime=runtime,
            threads=threads,
            roi=roi,
            invert=invert,
            native_size=native_size,
            smooth=smooth,
            top_k=top_k,
            headless=headless,
            out=str(out),
            no_video=no_video,
            log=str(log) if log else None,
            max_frames=max_frames,
            snapshot_dir=str(snapshot_dir),
            snapshot_at=list(snapshot_at),
            reconnect=reconnect,
            collect=str(collect) if collect else None,
            label=label,
            collect_every=collect_every,
        ),
        echo=lambda s: console.print(s, markup=False, soft_wrap=True),
        warn=lambda s: err_console.print(s, markup=False, highlight=False, soft_wrap=True),
    )
    console.print(format_summary(summary), markup=False, highlight=False, soft_wrap=True)


_BENCH_TARGETS = typer.Argument(..., help="A run directory, or artifact files (.tflite, .onnx, .keras, .h5).")
_BENCH_RUNTIME = typer.Option(
    [],
    "--runtime",
    "-r",
    help=f"Only these runtimes (repeatable or comma-separated): {_BENCH_ROWS}; keras means both keras rows.",
)
_BENCH_THREADS = typer.Option(
    None, "--threads", "-t", help="Thread counts, e.g. 1,2 (default: 1 and all cores)."
)
_BENCH_N = typer.Option(
    None,
    "-n",
    help="Test images for accuracy: a seeded sample stratified by class (default: all; --quick: 1,000).",
    callback=checked(IMAGES),
)
_BENCH_QUICK = typer.Option(False, "--quick", help="Few timed runs: a smoke test, not numbers to report.")
_BENCH_BATCH_SIZES = typer.Option(None, "--batch-sizes", help="Throughput batch sizes (default 1,32,256).")
_BENCH_OUT = typer.Option(
    None, "-o", "--out", help="Folder for the bench report (json, csv, png; default: the run directory)."
)
_BENCH_COMPARE = typer.Option(
    None,
    "--compare",
    help="An earlier bench report (json): print p50 and throughput ratios of matching rows.",
)
_BENCH_FAIL_UNDER = typer.Option(
    [],
    "--fail-under",
    help="CI gate (repeatable): accuracy=0.92, speed=0.8 "
    "(baseline p50 / p50, needs --compare), throughput=0.8.",
)
_BENCH_PROFILE = typer.Option(
    False,
    "--profile",
    help="onnxruntime rows: per-node profiler "
    "JSON (profile_<row>.json) and a top-nodes table; other "
    "runtimes say 'no profiler'.",
)
_BENCH_MCU_TARGET = typer.Option(
    None,
    "--target",
    help="Microcontroller cores "
    "(comma list or all, e.g. cortex-m4,cortex-m7): a "
    "row each from the run's TFLM firmware built and "
    "run under QEMU (cnnedge firmware).",
)


@app.command("bench")
def bench_cmd(
    targets: List[Path] = _BENCH_TARGETS,
    runtime: List[str] = _BENCH_RUNTIME,
    threads: Optional[str] = _BENCH_THREADS,
    n: Optional[int] = _BENCH_N,
    quick: bool = _BENCH_QUICK,
    batch_sizes: Optional[str] = _BENCH_BATCH_SIZES,
    out: Optional[Path] = _BENCH_OUT,
    compare: Optional[Path] = _BENCH_COMPARE,
    fail_under: List[str] = _BENCH_FAIL_UNDER,
    profile: bool = _BENCH_PROFILE,
    mcu_target: Optional[str] = _BENCH_MCU_TARGET,
    tflm_dir: Optional[Path] = TflmDir,
):
    """Latency, accuracy and memory on every runtime.

    One row per artifact x runtime x threads (and per --target core): bench.json, bench.csv,
    bench.png.
    """
    from cnnedge import bench as bn

    width = None if console.is_terminal else 200
    rep = bn.bench(
        targets,
        runtimes=runtime,
        threads=threads,
        n=n,
        quick=quick,
        out=out,
        compare=compare,
        fail_under=fail_under,
        batch_sizes=batch_sizes,
        profile=profile,
        mcu_targets=mcu_target,
        tflm_dir=tflm_dir,
        command=bn.command_line(
            targets,
            runtime=runtime,
            threads=threads,
            n=n,
            quick=quick,
            batch_sizes=batch_sizes,
            out=out,
            compare=compare,
            fail_under=fail_under,
            profile=profile,
            target=mcu_target,
        ),
        progress=lambda r: err_console.print(
            bn.progress_line(r), markup=False, highlight=False, soft_wrap=True
        ),
    )
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
        names = ", ".join(
            Path(f).name for f in [*rep.files.values(), *(p["file"] for p in rep.profiles if p.get("file"))]
        )
        kept = " (rows failed: the earlier bench report there is kept as it was)" if rep.failed_rows else ""
        console.print(f"wrote {names} to {rep.out_dir}{kept}", markup=False, highlight=False, soft_wrap=True)
    if rep.exit_code:
        raise typer.Exit(rep.exit_code)


@app.command("formats")
def formats_cmd():
    """The artifact table: every file export writes, and what runs it."""
    from rich.table import Table

    t = Table("format", "precision", "file", "from", "metadata", "runtimes (default first)")
    for a in artifacts.TABLE:
        t.add_row(
            a.format,
            a.precision,
            a.filename or f"run's {a.suffix}",
            a.source,
            artifacts.METADATA_WHERE[a.format],
            ", ".join(a.runtimes),
        )
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
        t.add_row(
            name,
            ", ".join(runtime.modes(name)),
            " ".join(files),
            "✅" if ok else "➖",
            runtime.runtime_help(name),
        )
        if not ok:
            missing.append(f"➖ {name}: {why}")
    console.print(t)
    for line in missing:  # whole lines: the install hint must stay copyable
        console.print(line, markup=False, highlight=False, soft_wrap=True)
