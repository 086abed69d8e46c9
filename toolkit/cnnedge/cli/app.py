"""The typer app, its consoles and the options several commands share."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Optional

import typer
from rich.console import Console

from cnnedge import __version__
from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range, number

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


def _version_cb(value: bool):
    if value:
        console.print(f"cnnedge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_cb, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and TensorFlow logs."),
):
    """cnnedge: train, quantize, export and benchmark compact CNNs."""
    if debug:
        os.environ["CNNEDGE_DEBUG"] = "1"


# ranges of options that set no recipe field (those that do name it: checked("qat.lr"))
IMAGES = Range(1, 10**9, integer=True)
THREADS = Range(0, 4096, integer=True, note="0 = all cores")
PERCENT = Range(0, 100)


def checked(spec):
    """An option callback: the value goes through :func:`cnnedge.numbers.number`, named by its
    flag. ``spec`` is a recipe key (the range ``--set KEY=`` has) or a Range; a left-out
    option (None) stays None."""

    def callback(ctx, param, value):
        from cnnedge.recipe import FIELDS

        if value is None:
            return None
        rng = FIELDS[spec] if isinstance(spec, str) else spec
        rng = dataclasses.replace(rng, optional=False)  # a flag is left out, never "none"
        name = "/".join(param.opts)
        if isinstance(value, (list, tuple)):
            return [number(v, name, rng) for v in value]
        return number(value, name, rng)

    return callback


TflmDir = typer.Option(None, "--tflm-dir", help="TFLite Micro source tree (default $CNNEDGE_TFLM).")
DataDir = typer.Option(None, "--data-dir", help="Folder holding the dataset files (searched first).")
ImageSize = typer.Option(
    None, "--image-size", help="Resize images to HxW, e.g. 32x32 (or keep: each image at its own size)."
)
KeepSize = typer.Option(False, "--keep-size", help="Keep each image's own size (pad in batches).")
ValFraction = typer.Option(
    0.0,
    "--val-fraction",
    help="Carve this fraction of train as 'val'.",
    callback=checked("data.val_fraction"),
)


def parse_size(text: Optional[str]):
    from cnnedge.recipe import parse_image_size

    try:
        return parse_image_size(text)
    except CnnedgeError as e:
        raise CnnedgeError(f"--image-size: {e}")


def dataset_from_flags(dataset, data_dir, image_size=None, keep_size=False, val_fraction=0.0):
    """:func:`cnnedge.data.open_dataset` with the --image-size text parsed (``keep`` too)."""
    from cnnedge import data

    size = parse_size(image_size)
    if size == "keep":
        size, keep_size = None, True
    return data.open_dataset(
        dataset, data_dir=data_dir, image_size=size, keep_size=keep_size, val_fraction=val_fraction
    )


def kib(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 2**20:.2f} MiB"
