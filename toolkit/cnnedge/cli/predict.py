"""`cnnedge predict`: classify images, folders, globs, videos and cameras with any model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from cnnedge import runtime
from cnnedge.cli.app import THREADS, app, checked, console, err_console
from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range

MAX_ROWS = 50  # rows the terminal table shows; --json/--csv hold them all


_PREDICT_SOURCES = typer.Argument(
    ...,
    help="Image files, folders (recursive), globs "
    "('photos/**/*.jpg'), video files, a camera index, "
    "/dev/videoN or a stream URL.",
)
_PREDICT_MODEL = typer.Option(
    ...,
    "-m",
    "--model",
    help="Run directory (its int8 TFLite first, "
    "else its Keras model), an exported .tflite/.onnx, a .keras file "
    "or a reference checkpoint (cifar10, fashion_mnist).",
)
_PREDICT_RUNTIME = typer.Option(
    None,
    "--runtime",
    help=f"One of: {' | '.join(runtime.list_runtimes())} (default: the file's first in `cnnedge formats`).",
)
_PREDICT_THREADS = typer.Option(0, help="Inference threads (0 = all cores).", callback=checked(THREADS))
_PREDICT_TOP_K = typer.Option(
    3, "--top", "-k", help="Classes per image.", callback=checked(Range(1, 1000, integer=True))
)
_PREDICT_BATCH_SIZE = typer.Option(
    64, "--batch", help="Images per inference call.", callback=checked("train.batch_size")
)
_PREDICT_EVERY = typer.Option(
    1, "--every", help="Videos and cameras: every Nth frame.", callback=checked(Range(1, 10**9, integer=True))
)
_PREDICT_MAX_FRAMES = typer.Option(
    None,
    "--frames",
    help="Videos and cameras: stop after N predicted frames.",
    callback=checked(Range(1, 10**12, integer=True)),
)
_PREDICT_RESIZE = typer.Option(
    None, "--resize", help="stretch | letterbox | crop (default: the model's metadata, i.e. as trained)."
)
_PREDICT_IMAGE_SIZE = typer.Option(
    None, "--image-size", help="HxW to feed instead of the training size (dynamic-size models)."
)
_PREDICT_SAVE_DIR = typer.Option(None, "--save-dir", help="Put each image into <dir>/<predicted class>/.")
_PREDICT_SAVE_MODE = typer.Option("copy", "--save-mode", help="copy | link | symlink.")
_PREDICT_JSON_OUT = typer.Option(None, "--json", help="Write all rows as JSON to this file ('-' = stdout).")
_PREDICT_CSV_OUT = typer.Option(None, "--csv", help="Write all rows as CSV to this file ('-' = stdout).")


@app.command("predict")
def predict_cmd(
    sources: List[str] = _PREDICT_SOURCES,
    model: str = _PREDICT_MODEL,
    runtime_: Optional[str] = _PREDICT_RUNTIME,
    threads: int = _PREDICT_THREADS,
    top_k: int = _PREDICT_TOP_K,
    batch_size: int = _PREDICT_BATCH_SIZE,
    every: int = _PREDICT_EVERY,
    max_frames: Optional[int] = _PREDICT_MAX_FRAMES,
    resize: Optional[str] = _PREDICT_RESIZE,
    image_size: Optional[str] = _PREDICT_IMAGE_SIZE,
    save_dir: Optional[Path] = _PREDICT_SAVE_DIR,
    save_mode: str = _PREDICT_SAVE_MODE,
    json_out: Optional[str] = _PREDICT_JSON_OUT,
    csv_out: Optional[str] = _PREDICT_CSV_OUT,
):
    """Classify images with a trained or exported model; preprocessing from its metadata.

    A file that cannot be read is a row with its error; the rest still run (exit 1 at the end).
    """
    from cnnedge.cli.app import parse_size
    from cnnedge.predict import predict

    size = parse_size(image_size)
    if size == "keep":
        raise CnnedgeError(
            "--image-size keep: give HxW here (a keep-size model already feeds each image at its own size)"
        )
    _check_outputs(sources, json_out, csv_out)
    quiet = "-" in (json_out, csv_out)
    say = err_console if quiet else console

    from cnnedge.frames import parse

    live = {spec.name for spec in map(parse, sources) if spec.live}  # cameras and streams

    def stream(p):  # a camera prints each frame as it comes (Ctrl-C stops it)
        if p.frame is not None and p.source in live and not p.error:
            say.print(
                f"{p.source} frame {p.frame}: {p.top[0][0]} {p.top[0][1]:.3f} ({p.ms:.2f} ms)", markup=False
            )

    res = predict(
        sources,
        model,
        runtime=runtime_,
        threads=threads or None,
        top_k=top_k,
        batch_size=batch_size,
        every=every,
        max_frames=max_frames,
        resize=resize,
        image_size=size,
        save_dir=save_dir,
        save_mode=save_mode,
        on_prediction=stream if live else None,
    )
    # Ctrl-C ends a camera run: its rows are the result. Over files it cuts the run short:
    # a partial report must not replace a complete one.
    report = not res.interrupted or bool(live)
    if report:
        _write_tables(res, json_out, csv_out)
    if not quiet:
        console.print(_table(res, top_k))
        if len(res) > MAX_ROWS:
            console.print(f"... {len(res) - MAX_ROWS:,} more rows (--json/--csv FILE for all)")
    _summary(say, res, save_dir)
    if res.interrupted:
        files = [o for o in (json_out, csv_out) if o and o != "-"]
        if report or not (json_out or csv_out):
            say.print("interrupted: the rows above are the ones predicted so far", markup=False)
        else:
            kept = f"; {' and '.join(files)} kept as before" if files else ""
            say.print(
                f"interrupted after {len(res):,} rows: no report written{kept}", markup=False, soft_wrap=True
            )
        raise typer.Exit(130)
    if res.errors:
        raise typer.Exit(1)


def _write_tables(res, json_out, csv_out) -> None:
    from cnnedge.files import atomic_path
    from cnnedge.predict import write_table

    for fmt, out in (("json", json_out), ("csv", csv_out)):
        if out == "-":
            write_table(res, fmt, sys.stdout)
        elif out:
            with atomic_path(Path(out)) as tmp, open(tmp, "w", newline="") as f:
                write_table(res, fmt, f)


def _table(res, top_k: int):
    """The first MAX_ROWS rows as a rich Table (--json/--csv hold them all)."""
    from rich.table import Table

    t = Table("source", "frame", "top-1", "p", f"top-{top_k}" if top_k > 1 else "", "ms")
    for p in res.predictions[:MAX_ROWS]:
        if p.error:
            t.add_row(p.source, "", "[red]error[/]", "", p.error, "")
            continue
        rest = ", ".join(f"{c} {pr:.2f}" for c, pr in p.top[1:])
        t.add_row(
            p.source,
            "" if p.frame is None else str(p.frame),
            p.top[0][0],
            f"{p.top[0][1]:.3f}",
            rest,
            f"{p.ms:.3f}",
        )
    return t


def _summary(say, res, save_dir) -> None:
    for note in res.notes:
        say.print(f"note: {note}", markup=False, soft_wrap=True)
    ok = len(res) - len(res.errors)
    say.print(
        f"{ok:,} images, {len(res.errors):,} errors; {res.images_per_second:,.0f} images/s "
        f"({res.model.name} on {res.runtime}, {res.threads} threads)",
        markup=False,
        soft_wrap=True,
    )
    saved = sum(1 for p in res if p.saved)
    if saved:
        say.print(
            f"saved {saved:,} image{'s' if saved > 1 else ''} into {save_dir}/<class>/",
            markup=False,
            soft_wrap=True,
        )


def _check_outputs(sources, json_out, csv_out) -> None:
    """Before any work: --json/--csv are files that are not among the images read, not folders,
    not the same file twice, and at most one of them is stdout; an existing file is replaced
    only when it is an earlier report of its kind (or empty)."""
    import glob

    from cnnedge.files import check_output
    from cnnedge.preprocess import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if json_out == "-" and csv_out == "-":
        raise CnnedgeError("--json - and --csv - would mix on stdout; write one of them to a file")
    if json_out and json_out == csv_out:
        raise CnnedgeError(f"--json and --csv both name {json_out}; give each its own file")
    inputs = []
    for s in sources:
        if not Path(s).expanduser().exists() and glob.has_magic(s):
            inputs += glob.glob(str(Path(s).expanduser()), recursive=True)
        else:
            inputs.append(s)
    for flag, out in (("--json", json_out), ("--csv", csv_out)):
        if out and out != "-":
            check_output(
                out,
                f"{flag} file",
                inputs=inputs,
                suffixes=IMAGE_SUFFIXES + VIDEO_SUFFIXES,
                replaces=lambda p, fmt=flag[2:]: _earlier_report(p, fmt),
            )


def _earlier_report(path: Path, fmt: str) -> bool:
    """An empty file, or one written by --json / --csv before (by its first bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    if not head.strip():
        return True
    if fmt == "json":
        return head.lstrip().startswith(b"{") and b'"predictions"' in head
    return head.startswith(b"source,frame,")
