"""The `cnnedge` command line: a thin typer layer over library functions.

Every command below calls one public function (``cnnedge.data.describe``, ``cnnedge.train.train``
...) that users can call from Python too. Errors: a :class:`CnnedgeError` prints one ``error:``
line and exits 2; anything unexpected prints one line and exits 1; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from cnnedge import __version__
from cnnedge.errors import CnnedgeError

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

app = typer.Typer(
    name="cnnedge",
    help="Compact strided-conv GMP CNNs from data to device.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Inspect, preview, pack and benchmark datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

_DEBUG = False


def _version_cb(value: bool):
    if value:
        console.print(f"cnnedge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_cb, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and TensorFlow logs."),
):
    """cnnedge: train, quantize, export and benchmark compact CNNs."""
    global _DEBUG
    _DEBUG = debug
    if debug:
        os.environ["CNNEDGE_DEBUG"] = "1"


DataDir = typer.Option(None, "--data-dir", help="Folder holding the dataset files (searched first).")
ImageSize = typer.Option(None, "--image-size", help="Resize images to HxW, e.g. 32x32.")
KeepSize = typer.Option(False, "--keep-size", help="Keep each image's own size (pad in batches).")
ValFraction = typer.Option(0.0, "--val-fraction", help="Carve this fraction of train as 'val'.")


def _size(text: Optional[str]):
    if not text:
        return None
    parts = text.lower().replace(",", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise CnnedgeError(f"--image-size expects HxW like 32x32, got '{text}'")
    return int(parts[0]), int(parts[1])


def _open(dataset, data_dir, image_size=None, keep_size=False, val_fraction=0.0):
    from cnnedge import data

    return data.open_dataset(dataset, data_dir=data_dir, image_size=_size(image_size),
                             keep_size=keep_size, val_fraction=val_fraction)


# ----------------------------------------------------------------------------- data
@data_app.command("info")
def data_info(
    dataset: str = typer.Argument(..., help="fashion-mnist, cifar10, or a path (image folder, "
                                  "cifar-10-batches-*, packed TFRecords)."),
    data_dir: Optional[Path] = DataDir,
    val_fraction: float = ValFraction,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Splits, counts, classes, sizes and class balance."""
    from cnnedge import data

    src = _open(dataset, data_dir, image_size, keep_size, val_fraction)
    info = data.describe(src)
    if json_out:
        import json

        console.print_json(json.dumps(info))
        return
    _print_info(info)


def _print_info(info: dict):
    from rich.table import Table

    console.print(f"[bold]{info['name']}[/bold]  format={info['format']}  source={info['source']}")
    console.print(f"classes ({len(info['class_names'])}): {', '.join(info['class_names'])}")
    table = Table("split", "images", "image sizes (H×W×C)", "class balance (min–max per class)")
    for split, s in info["splits"].items():
        counts = s["class_counts"]
        sizes = ", ".join(f"{k} ({v})" for k, v in list(s["sizes"].items())[:4])
        if len(s["sizes"]) > 4:
            sizes += f", … {len(s['sizes'])} sizes"
        table.add_row(split, f"{s['count']:,}", sizes, f"{min(counts):,}–{max(counts):,}")
    console.print(table)


@data_app.command("preview")
def data_preview(
    dataset: str = typer.Argument(..., help="Dataset name or path."),
    out: Path = typer.Option(Path("preview.png"), "-o", "--out", help="PNG file to write."),
    split: str = typer.Option("train", help="Split to sample."),
    n: int = typer.Option(36, "-n", help="Number of images in the grid."),
    seed: int = typer.Option(0, help="Sampling seed."),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    val_fraction: float = ValFraction,
):
    """Write a labelled grid of sample images (PNG)."""
    from cnnedge import data

    src = _open(dataset, data_dir, image_size, keep_size, val_fraction)
    path = data.preview(src, out, split=split, n=n, seed=seed)
    console.print(f"wrote {path}")


@data_app.command("pack")
def data_pack(
    dataset: str = typer.Argument(..., help="Dataset name or path."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (local or any tf.io.gfile path)."),
    shards: int = typer.Option(8, help="Number of TFRecord shards per split."),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    val_fraction: float = ValFraction,
    overwrite: bool = typer.Option(False, help="Replace an existing packed folder."),
):
    """Pack a dataset into sharded TFRecord files."""
    from cnnedge import data

    src = _open(dataset, data_dir, image_size, keep_size, val_fraction)
    path = data.pack(src, str(out), shards=shards, overwrite=overwrite, progress=True)
    console.print(f"packed into {path}\nnext: cnnedge data info {path}")


@data_app.command("bench")
def data_bench(
    dataset: str = typer.Argument(..., help="Dataset name or path."),
    split: str = typer.Option("train", help="Split to stream."),
    batch_size: int = typer.Option(128, help="Batch size."),
    epochs: int = typer.Option(2, help="Full passes to time (the first warms the file cache)."),
    shuffle: bool = typer.Option(True, help="Shuffle as training does."),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
):
    """Streaming throughput (images/s) of a dataset."""
    from cnnedge import data

    src = _open(dataset, data_dir, image_size, keep_size)
    res = data.benchmark(src, split=split, batch_size=batch_size, epochs=epochs, shuffle=shuffle)
    console.print_json(data=res)


# ----------------------------------------------------------------------------- train / eval
@app.command("train")
def train_cmd(
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r",
                                         help="Recipe name (see `cnnedge recipes`) or a .py file."),
    set_: List[str] = typer.Option([], "--set", "-s",
                                   help="Override a recipe field: train.epochs=3 (repeatable)."),
    name: Optional[str] = typer.Option(None, help="Run name: runs/<recipe>/<name> (default exp)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Parent folder of run directories."),
    overwrite: bool = typer.Option(False, help="Replace an existing run directory."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this directory."),
    strategy: str = typer.Option("none", help="none | mirrored | multiworker (tf.distribute)."),
    logical_cpus: int = typer.Option(0, help="Split the CPU into N logical devices (testing "
                                     "--strategy mirrored without GPUs)."),
):
    """Train a recipe into runs/<recipe>/<name>/.

    Resumable (--resume), with QAT as the last phase when the recipe enables it.
    """
    from cnnedge import recipe as rc
    from cnnedge import train as tr

    if resume is not None and (recipe or set_):
        raise CnnedgeError("--resume continues a run with its saved recipe; drop --recipe/--set")
    r = None
    if resume is None:
        if not recipe:
            raise CnnedgeError("give --recipe NAME (see `cnnedge recipes`) or --resume RUN_DIR")
        r = rc.apply_overrides(rc.load_recipe(recipe), set_)
    run_dir_box = []
    try:
        res = tr.train(r, runs_dir=runs_dir, name=name, overwrite=overwrite, resume=resume,
                       strategy=strategy, logical_cpus=logical_cpus,
                       on_run_dir=run_dir_box.append)
    except KeyboardInterrupt:
        if run_dir_box:
            err_console.print(f"interrupted; continue with: cnnedge train --resume {run_dir_box[0]}",
                              markup=False, soft_wrap=True)
        raise typer.Exit(130)
    s = res.summary
    console.print(f"[bold green]done[/]: {s['recipe']} {s['model']} params={s['params']:,} "
                  f"MACs/image={s['macs_per_image']:,} {s['eval_split']} accuracy="
                  f"{s['test_accuracy']:.4f} ({s['test_images']:,} images), "
                  f"{s['train_minutes']} min", soft_wrap=True)
    if "qat_test_accuracy" in s:
        console.print(f"QAT ({s['qat_epochs']} epochs): {s['eval_split']} accuracy "
                      f"{s['qat_test_accuracy']:.4f} -> qat.h5", soft_wrap=True)
    d = res.run_dir
    console.print(f"run: {d}/  (best.keras, last.keras, metrics.csv, curves.png, confusion.png, "
                  f"summary.json)", soft_wrap=True)
    console.print(f"next: cnnedge export {d}   (or: cnnedge eval {d})", soft_wrap=True)


@app.command("quantize")
def quantize_cmd(
    run: Path = typer.Argument(..., help="A finished run directory (with best.keras)."),
    epochs: Optional[int] = typer.Option(None, help="QAT epochs (default: the recipe's qat.epochs)."),
    lr: Optional[float] = typer.Option(None, help="QAT learning rate (default: recipe's qat.lr)."),
):
    """Quantization-aware fine-tuning of a run.

    Writes qat.h5 and adds qat_* fields to summary.json.
    """
    from cnnedge.quantize import fine_tune_qat

    s = fine_tune_qat(run, epochs=epochs, lr=lr)
    console.print(f"QAT: {s['qat_epochs']} epochs, best val {s['qat_best_val_accuracy']:.4f}, "
                  f"test accuracy {s['qat_test_accuracy']:.4f} (float "
                  f"{s.get('test_accuracy', float('nan')):.4f}) -> {Path(run) / 'qat.h5'}",
                  soft_wrap=True)


@app.command("eval")
def eval_cmd(
    run: Path = typer.Argument(..., help="Run directory or .keras model file."),
    split: str = typer.Option("test", help="Split to evaluate."),
    data: Optional[str] = typer.Option(None, "--data", help="Dataset (needed for a bare model file)."),
    data_dir: Optional[Path] = DataDir,
    batch_size: int = typer.Option(256, help="Batch size."),
    n: Optional[int] = typer.Option(None, "-n", help="Only the first N images."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write eval JSON (+ .png)."),
    tta: str = typer.Option("none", help="Test-time augmentation: none | flip (image and its "
                            "mirror, softmax averaged; 2 forward passes)."),
):
    """Accuracy, per-class accuracy, confusion matrix.

    Of a run directory (best.keras on its recipe's data) or a model file (--data).
    """
    from rich.table import Table

    from cnnedge import evaluate

    ev = evaluate.evaluate_run(run, split=split, dataset=data, data_dir=data_dir,
                               batch_size=batch_size, take=n, out=out, tta=tta)
    table = Table("class", "accuracy", "images")
    conf = ev["confusion"]
    for name_, acc, row in zip(ev["class_names"], ev["per_class_accuracy"], conf):
        table.add_row(name_, f"{acc:.4f}", f"{sum(row):,}")
    console.print(table)
    with_tta = " with flip TTA" if tta == "flip" else ""
    console.print(f"{ev['split']} accuracy{with_tta}: [bold]{ev['accuracy']:.4f}[/] on "
                  f"{ev['n']:,} images")
    if out:
        console.print(f"wrote {out} and {Path(out).with_suffix('.png')}")


@app.command("export")
def export_cmd(
    run: Path = typer.Argument(..., help="Run directory (best.keras, qat.h5) or a .keras/.h5 model."),
    format_: str = typer.Option("all", "--format", "-f", help="tflite | onnx | all (comma list ok)."),
    precision: str = typer.Option("all", "--precision", "-p", help="fp32 | fp16 | int8 | all."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default <run>/export)."),
    data: Optional[str] = typer.Option(None, "--data", help="Calibration dataset for a bare model file."),
    int8_method: str = typer.Option("tflite", help="int8 ONNX route: tflite (from the int8 .tflite, "
                                    "bit-exact with it) or qdq (onnxruntime quantize_static)."),
    opset: int = typer.Option(17, help="ONNX opset."),
    verify_n: int = typer.Option(512, "--verify", help="Quick parity check on N test images after "
                                 "export (0 = skip; runs only for run directories)."),
):
    """Export a run to TFLite and ONNX (fp32/fp16/int8).

    Metadata is embedded in every artifact; a quick parity check follows.
    """
    from rich.table import Table

    from cnnedge.export import export

    results = export(run, formats=format_, precisions=precision, out_dir=out, calibration=data,
                     opset=opset, int8_method=int8_method)
    t = Table("file", "format", "precision", "from", "size")
    for r in results:
        t.add_row(str(r["path"]), r["format"], r["precision"], r["source"], _kb(r["bytes"]))
    console.print(t)
    is_run = Path(run).is_dir()
    if verify_n and is_run:
        from cnnedge.verify import verify

        rep = verify(run, n=verify_n, artifacts=[r["path"] for r in results], write=False)
        _print_verify(rep)
        if not rep["passed"]:
            err_console.print("warning: an artifact agrees less than its threshold; see the table "
                              f"and run: cnnedge verify {run}", markup=False, soft_wrap=True)
    target = run if is_run else " ".join(str(r["path"]) for r in results)
    console.print(f"next: cnnedge verify {run}  |  cnnedge bench {target}" if is_run
                  else f"next: cnnedge bench {target}", soft_wrap=True)


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 2**20:.2f} MiB"


@app.command("verify")
def verify_cmd(
    run: Path = typer.Argument(..., help="Run directory with exported models in export/."),
    n: Optional[int] = typer.Option(None, "-n", help="Only the first N test images (default all)."),
    min_int8: float = typer.Option(99.5, help="Minimum int8 top-1 agreement (%) with QAT Keras."),
    min_fp32: float = typer.Option(99.9, help="Minimum fp32 top-1 agreement (%) with Keras."),
    min_fp16: float = typer.Option(99.5, help="Minimum fp16 top-1 agreement (%) with Keras."),
    min_int8_ptq: float = typer.Option(98.0, help="Minimum agreement (%) of the PTQ int8 model "
                                       "with Keras float."),
    threads: int = typer.Option(0, help="Runtime threads (0: all cores)."),
):
    """Parity report: every artifact against Keras.

    Writes verify.json and verify.md; exit 1 when an agreement is under its threshold.
    """
    from cnnedge.verify import verify

    rep = verify(run, n=n, threads=threads, thresholds={
        "int8": min_int8 / 100, "fp32": min_fp32 / 100, "fp16": min_fp16 / 100,
        "int8-ptq": min_int8_ptq / 100})
    _print_verify(rep)
    console.print(f"wrote {Path(run) / 'verify.json'} and {Path(run) / 'verify.md'}", soft_wrap=True)
    if not rep["passed"]:
        bad = [r["artifact"] for r in rep["rows"] if r.get("passed") is False]
        err_console.print(f"error: agreement under threshold for {', '.join(bad)}", markup=False,
                          soft_wrap=True)
        raise typer.Exit(1)


def _print_verify(rep: dict):
    from rich.table import Table

    from cnnedge.verify import agreement_lines, row_cells

    t = Table("artifact", "runtime", "accuracy", "reference", "agreement", "max |Δlogit|",
              "mean |Δlogit|", "flips", "", title=f"parity on {rep['images']:,} {rep['split']} images")
    for r in rep["rows"]:
        t.add_row(*row_cells(r))
    console.print(t)
    for line in agreement_lines(rep):
        console.print(line)


@app.command("models")
def models_cmd():
    """List registered model architectures."""
    from cnnedge import models

    for m in models.list_models():
        console.print(f"{m:24s} {models.model_help(m)}", markup=False, soft_wrap=True)


@app.command("recipes")
def recipes_cmd():
    """List shipped recipes."""
    from cnnedge import recipe as rc

    for name_ in rc.list_recipes():
        r = rc.load_recipe(name_)
        console.print(f"{name_:32s} {r.description}", markup=False, soft_wrap=True)


# ----------------------------------------------------------------------------- demo
@app.command("demo")
def demo_cmd(
    source: str = typer.Argument(..., help="Camera index (0), video file, image file or folder, "
                                 "or an rtsp:// / http:// URL."),
    model: Path = typer.Option(Path("runs/fashion_mnist/exp"), "--model", "-m",
                               help="Exported .tflite/.onnx, or a run directory (prefers "
                               "export/model_int8.tflite)."),
    runtime: Optional[str] = typer.Option(None, help="litert | litert-ref | onnxruntime "
                                          "(default: by file type)."),
    threads: int = typer.Option(1, help="Inference threads (1 leaves the other cores to "
                                "decoding and encoding)."),
    roi: Optional[float] = typer.Option(None, help="Centred square ROI, fraction of the short "
                                        "side (default 0.6; 1.0 for images)."),
    invert: str = typer.Option("auto", help="auto | on | off: invert light-background ROIs "
                               "(Fashion-MNIST is light on dark)."),
    native_size: bool = typer.Option(False, "--native-size", help="Feed the ROI at its own "
                                     "size to a dynamic-H×W (GMP) model instead of resizing."),
    smooth: float = typer.Option(0.6, help="EMA weight of past frames' probabilities (0: off)."),
    top_k: int = typer.Option(3, "--top-k", help="Classes shown and logged."),
    headless: bool = typer.Option(False, "--headless", help="No window: write an annotated "
                                  "video and a JSON-lines log."),
    out: Path = typer.Option(Path("demo.mp4"), "--out", "-o", help="Annotated video (.mp4 "
                             "mp4v, or .avi MJPG) in --headless mode."),
    no_video: bool = typer.Option(False, "--no-video", help="Headless: write the log only."),
    log: Optional[Path] = typer.Option(None, help="JSON-lines log (default with --headless: "
                                       "<out>.jsonl)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after N frames."),
    snapshot_dir: Path = typer.Option(Path("."), help="Folder for snapshots (key s, "
                                      "--snapshot-at)."),
    snapshot_at: List[int] = typer.Option([], "--snapshot-at", help="Also save annotated "
                                          "frame N as a PNG (repeatable)."),
    reconnect: int = typer.Option(3, help="Reopen a lost camera/stream this many times."),
):
    """Live classification from a camera, video or images.

    Uses an exported model (TFLite or ONNX) and its embedded preprocessing metadata.
    """
    from edge_demo import DemoConfig, format_summary, run_demo

    summary = run_demo(DemoConfig(
        source=source, model=str(model), runtime=runtime, threads=threads, roi=roi,
        invert=invert, native_size=native_size, smooth=smooth, top_k=top_k, headless=headless,
        out=str(out), no_video=no_video, log=str(log) if log else None, max_frames=max_frames,
        snapshot_dir=str(snapshot_dir), snapshot_at=list(snapshot_at), reconnect=reconnect),
        echo=lambda s: console.print(s, markup=False, soft_wrap=True))
    console.print(format_summary(summary), markup=False, highlight=False, soft_wrap=True)


@app.command("bench")
def bench_cmd(
    targets: List[Path] = typer.Argument(..., help="A run directory, or artifact files "
                                         "(.tflite, .onnx, .keras, .h5)."),
    runtime: List[str] = typer.Option([], "--runtime", "-r",
                                      help="Only these runtimes (repeatable or comma-separated): "
                                      "keras-tf.function, keras-predict, keras (both), litert, "
                                      "litert-ref, onnxruntime, onnxruntime-cuda, "
                                      "onnxruntime-tensorrt."),
    threads: Optional[str] = typer.Option(None, "--threads", "-t",
                                          help="Thread counts, e.g. 1,2 (default: 1 and all cores)."),
    n: Optional[int] = typer.Option(None, "-n", help="Test images for accuracy (default: all)."),
    quick: bool = typer.Option(False, "--quick", help="Few timed runs: a smoke test, not numbers "
                               "to report."),
    batch_sizes: Optional[str] = typer.Option(None, "--batch-sizes",
                                              help="Throughput batch sizes (default 1,32,256)."),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Folder for bench.json/.csv/.png "
                                       "(default: the run directory)."),
    compare: Optional[Path] = typer.Option(None, "--compare", help="An earlier bench.json: print "
                                           "p50 and throughput ratios of matching rows."),
    fail_under: List[str] = typer.Option([], "--fail-under",
                                         help="CI gate (repeatable): accuracy=0.92, speed=0.8 "
                                         "(baseline p50 / p50, needs --compare), throughput=0.8."),
):
    """Latency, accuracy and memory on every runtime.

    One row per artifact x runtime x threads: bench.json, bench.csv, bench.png.
    """
    from cnnedge import bench as bn

    width = None if console.is_terminal else 200
    rep = bn.bench(targets, runtimes=runtime, threads=threads, n=n, quick=quick, out=out,
                   compare=compare, fail_under=fail_under, batch_sizes=batch_sizes,
                   command=bn.command_line(targets, runtime=runtime, threads=threads, n=n,
                                           quick=quick, batch_sizes=batch_sizes, out=out,
                                           compare=compare, fail_under=fail_under),
                   progress=lambda r: err_console.print(bn.progress_line(r), markup=False,
                                                        highlight=False, soft_wrap=True))
    console.print(bn.table(rep), width=width)
    if rep["compare"]:
        console.print(bn.compare_table(rep), width=width)
    for line in rep["notes"]:
        err_console.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in bn.failure_lines(rep):
        err_console.print(f"error: {line}", markup=False, highlight=False, soft_wrap=True)
    f = rep["files"]
    console.print(f"wrote {Path(f['json']).name}, {Path(f['csv']).name}, {Path(f['png']).name} "
                  f"to {rep['out_dir']}", markup=False, highlight=False, soft_wrap=True)
    if rep["exit_code"]:
        raise typer.Exit(rep["exit_code"])


# ----------------------------------------------------------------------------- entry point
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
        err_console.print(f"error: {type(e).__name__}: {msg} (run with --debug for details)",
                          markup=False, highlight=False, soft_wrap=True)
        return 1


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
