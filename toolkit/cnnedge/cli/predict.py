"""`cnnedge predict`: classify images, folders, globs, videos and cameras with any model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from cnnedge import runtime
from cnnedge.cli.app import app, console, err_console
from cnnedge.errors import CnnedgeError

MAX_ROWS = 50  # rows the terminal table shows; --json/--csv hold them all


@app.command("predict")
def predict_cmd(
    sources: List[str] = typer.Argument(..., help="Image files, folders (recursive), globs "
                                        "('photos/**/*.jpg'), video files or a camera index."),
    model: str = typer.Option(..., "-m", "--model", help="Run directory (its int8 TFLite first, "
                              "else its Keras model), an exported .tflite/.onnx or a .keras file."),
    runtime_: Optional[str] = typer.Option(None, "--runtime", help="One of: "
                                           f"{' | '.join(runtime.list_runtimes())} (default: "
                                           "the file's first in `cnnedge formats`)."),
    threads: int = typer.Option(0, help="Inference threads (0 = all cores)."),
    top_k: int = typer.Option(3, "--top", "-k", help="Classes per image."),
    batch_size: int = typer.Option(64, "--batch", help="Images per inference call."),
    every: int = typer.Option(1, "--every", help="Videos and cameras: every Nth frame."),
    max_frames: Optional[int] = typer.Option(None, "--frames", help="Videos and cameras: stop "
                                             "after N predicted frames."),
    resize: Optional[str] = typer.Option(None, "--resize", help="stretch | letterbox | crop "
                                         "(default: the model's metadata, i.e. as trained)."),
    image_size: Optional[str] = typer.Option(None, "--image-size", help="HxW to feed instead of "
                                             "the training size (dynamic-size models)."),
    save_dir: Optional[Path] = typer.Option(None, "--save-dir", help="Put each image into "
                                            "<dir>/<predicted class>/."),
    save_mode: str = typer.Option("copy", "--save-mode", help="copy | link | symlink."),
    json_out: Optional[str] = typer.Option(None, "--json", help="Write all rows as JSON to this "
                                           "file ('-' = stdout)."),
    csv_out: Optional[str] = typer.Option(None, "--csv", help="Write all rows as CSV to this "
                                          "file ('-' = stdout)."),
):
    """Classify images with a trained or exported model; preprocessing from its metadata.

    A file that cannot be read is a row with its error; the rest still run (exit 1 at the end).
    """
    from rich.table import Table

    from cnnedge.cli.app import parse_size
    from cnnedge.predict import predict, write_table

    size = parse_size(image_size)
    if size == "keep":
        raise CnnedgeError("--image-size keep: give HxW here (a keep-size model already feeds "
                           "each image at its own size)")
    for out in (json_out, csv_out):
        if out and out != "-":
            from cnnedge.utils import check_writable

            check_writable(Path(out).parent, "output file")
    quiet = "-" in (json_out, csv_out)
    say = err_console if quiet else console

    def stream(p):  # a camera prints each frame as it comes (Ctrl-C stops it)
        if p.frame is not None and p.source.startswith("camera") and not p.error:
            say.print(f"{p.source} frame {p.frame}: {p.top[0][0]} {p.top[0][1]:.3f} "
                      f"({p.ms:.2f} ms)", markup=False)

    from cnnedge.predict import is_camera

    live = any(is_camera(s) and not Path(s).exists() for s in sources)
    res = predict(sources, model, runtime=runtime_, threads=threads or None, top_k=top_k,
                  batch_size=batch_size, every=every, max_frames=max_frames, resize=resize,
                  image_size=size, save_dir=save_dir, save_mode=save_mode,
                  on_prediction=stream if live else None)
    for fmt, out in (("json", json_out), ("csv", csv_out)):
        if out == "-":
            write_table(res, fmt, sys.stdout)
        elif out:
            from cnnedge.utils import atomic_path

            with atomic_path(Path(out)) as tmp, open(tmp, "w", newline="") as f:
                write_table(res, fmt, f)
    if not quiet:
        t = Table("source", "frame", "top-1", "p", f"top-{top_k}" if top_k > 1 else "", "ms")
        for p in res.predictions[:MAX_ROWS]:
            if p.error:
                t.add_row(p.source, "", "[red]error[/]", "", p.error, "")
                continue
            rest = ", ".join(f"{c} {pr:.2f}" for c, pr in p.top[1:])
            t.add_row(p.source, "" if p.frame is None else str(p.frame), p.top[0][0],
                      f"{p.top[0][1]:.3f}", rest, f"{p.ms:.3f}")
        console.print(t)
        if len(res) > MAX_ROWS:
            console.print(f"... {len(res) - MAX_ROWS:,} more rows (--json/--csv FILE for all)")
    for note in res.notes:
        say.print(f"note: {note}", markup=False, soft_wrap=True)
    ok = len(res) - len(res.errors)
    say.print(f"{ok:,} images, {len(res.errors):,} errors; {res.images_per_second:,.0f} images/s "
              f"({res.model.name} on {res.runtime}, {res.threads} threads)", markup=False,
              soft_wrap=True)
    if save_dir is not None:
        say.print(f"saved into {save_dir}/<class>/", markup=False, soft_wrap=True)
    if res.interrupted:
        say.print("interrupted: the rows above are the frames predicted so far", markup=False)
        raise typer.Exit(130)
    if res.errors:
        raise typer.Exit(1)
