"""`cnnedge data ...`: inspect, preview, pack and benchmark datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from cnnedge.cli.app import (
    DataDir,
    ImageSize,
    KeepSize,
    ValFraction,
    checked,
    console,
    data_app,
    dataset_from_flags,
)
from cnnedge.numbers import Range


@data_app.command("info")
def data_info(
    dataset: str = typer.Argument(
        ..., help="fashion-mnist, cifar10, or a path (image folder, cifar-10-batches-*, packed TFRecords)."
    ),
    data_dir: Optional[Path] = DataDir,
    val_fraction: float = ValFraction,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    check: bool = typer.Option(
        False, "--check", help="Also decode every image once; the first file that fails is named."
    ),
):
    """Splits, counts, classes, sizes and class balance."""
    from cnnedge import data

    src = dataset_from_flags(dataset, data_dir, image_size, keep_size, val_fraction)
    info = data.describe(src, check_files=check)
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
    n: int = typer.Option(
        36, "-n", help="Number of images in the grid.", callback=checked(Range(1, 10_000, integer=True))
    ),
    seed: int = typer.Option(0, help="Sampling seed.", callback=checked("train.seed")),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    val_fraction: float = ValFraction,
):
    """Write a labelled grid of sample images (PNG)."""
    from cnnedge import data

    src = dataset_from_flags(dataset, data_dir, image_size, keep_size, val_fraction)
    path = data.preview(src, out, split=split, n=n, seed=seed)
    console.print(f"wrote {path}")


@data_app.command("pack")
def data_pack(
    dataset: str = typer.Argument(..., help="Dataset name or path."),
    out: Path = typer.Option(..., "-o", "--out", help="Output folder (local or any tf.io.gfile path)."),
    shards: int = typer.Option(
        8, help="Number of TFRecord shards per split.", callback=checked(Range(1, 100_000, integer=True))
    ),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
    val_fraction: float = ValFraction,
    overwrite: bool = typer.Option(False, help="Replace an existing packed folder."),
):
    """Pack a dataset into sharded TFRecord files."""
    from cnnedge import data

    src = dataset_from_flags(dataset, data_dir, image_size, keep_size, val_fraction)
    path = data.pack(src, str(out), shards=shards, overwrite=overwrite, progress=True)
    console.print(f"packed into {path}\nnext: cnnedge data info {path}")


@data_app.command("bench")
def data_bench(
    dataset: str = typer.Argument(..., help="Dataset name or path."),
    split: str = typer.Option("train", help="Split to stream."),
    batch_size: int = typer.Option(128, help="Batch size.", callback=checked("train.batch_size")),
    epochs: int = typer.Option(
        2,
        help="Full passes to time (the first warms the file cache).",
        callback=checked(Range(1, 10_000, integer=True)),
    ),
    shuffle: bool = typer.Option(True, help="Shuffle as training does."),
    data_dir: Optional[Path] = DataDir,
    image_size: Optional[str] = ImageSize,
    keep_size: bool = KeepSize,
):
    """Streaming throughput (images/s) of a dataset."""
    from cnnedge import data

    src = dataset_from_flags(dataset, data_dir, image_size, keep_size)
    res = data.benchmark(src, split=split, batch_size=batch_size, epochs=epochs, shuffle=shuffle)
    console.print_json(data=res)
