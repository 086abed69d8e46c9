"""`cnnedge train`, `quantize`, `eval`, `models`, `recipes`: from data to a trained run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from cnnedge.cli.app import IMAGES, DataDir, app, checked, console, err_console
from cnnedge.numbers import Range

_TRAIN_RECIPE = typer.Option(
    None, "--recipe", "-r", help="Recipe name (see `cnnedge recipes`) or a .py file."
)
_TRAIN_SET = typer.Option([], "--set", "-s", help="Override a recipe field: train.epochs=3 (repeatable).")
_TRAIN_NAME = typer.Option(None, help="Run name: runs/<recipe>/<name> (default exp).")
_TRAIN_RUNS_DIR = typer.Option(Path("runs"), help="Parent folder of run directories.")
_TRAIN_OVERWRITE = typer.Option(
    False,
    help="Replace an existing run directory (kept as <name>.old until the new run has finished an epoch).",
)
_TRAIN_RESUME = typer.Option(None, help="Continue the run in this directory.")
_TRAIN_FROM_BEST = typer.Option(
    False,
    "--from-best",
    help="With --resume: continue from the best checkpoint (when the last one is missing or damaged).",
)
_TRAIN_STRATEGY = typer.Option("none", help="none | mirrored | multiworker (tf.distribute).")
_TRAIN_LOGICAL_CPUS = typer.Option(
    0,
    help="Split the CPU into N logical devices (testing --strategy mirrored without GPUs).",
    callback=checked(Range(0, 4096, integer=True)),
)
_TRAIN_CHECK = typer.Option(
    False,
    "--check",
    help="Decode every image once before training: a bad file is named before the first epoch.",
)
_TRAIN_DATA = typer.Option(
    None,
    "--data",
    help="A folder of class folders "
    "(<data>/<class>/<images>): without --recipe, an "
    "automatic recipe for it; with one, its dataset.",
)
_TRAIN_IMAGE_SIZE = typer.Option(
    None, "--image-size", help="HxW (e.g. 64x64) or keep (each image at its own size)."
)
_TRAIN_WEIGHTS = typer.Option(
    None,
    "--weights",
    help="Start from a reference "
    "checkpoint (cifar10, fashion_mnist), a run or a "
    ".keras file; none = scratch. A new class count "
    "gets a new head.",
)
_TRAIN_MINUTES = typer.Option(
    None,
    "--minutes",
    help="Time budget of the float "
    "phase: no epoch starts that would overrun it (with "
    "--data alone, epochs are also chosen to fit).",
    callback=checked("train.max_minutes"),
)


@app.command("train")
def train_cmd(
    recipe: Optional[str] = _TRAIN_RECIPE,
    set_: List[str] = _TRAIN_SET,
    name: Optional[str] = _TRAIN_NAME,
    runs_dir: Path = _TRAIN_RUNS_DIR,
    overwrite: bool = _TRAIN_OVERWRITE,
    resume: Optional[Path] = _TRAIN_RESUME,
    from_best: bool = _TRAIN_FROM_BEST,
    strategy: str = _TRAIN_STRATEGY,
    logical_cpus: int = _TRAIN_LOGICAL_CPUS,
    check: bool = _TRAIN_CHECK,
    data: Optional[Path] = _TRAIN_DATA,
    image_size: Optional[str] = _TRAIN_IMAGE_SIZE,
    weights: Optional[str] = _TRAIN_WEIGHTS,
    minutes: Optional[float] = _TRAIN_MINUTES,
):
    """Train a recipe, or a folder of your own classes (--data), into runs/<name>/<run>/.

    Resumable (--resume), with QAT as the last phase when the recipe enables it.
    """
    from cnnedge.run import Run
    from cnnedge.train import train

    run_dir_box = []
    try:
        res = train(
            recipe,
            data=data,
            weights=weights,
            minutes=minutes,
            image_size=image_size,
            overrides=set_,
            runs_dir=runs_dir,
            name=name,
            overwrite=overwrite,
            resume=resume,
            from_best=from_best,
            strategy=strategy,
            logical_cpus=logical_cpus,
            on_run_dir=run_dir_box.append,
            check_data=check,
        )
    except KeyboardInterrupt:
        if run_dir_box and (Path(run_dir_box[0]) / Run.STATE).is_file():
            err_console.print(
                f"interrupted; continue with: cnnedge train --resume {run_dir_box[0]}",
                markup=False,
                soft_wrap=True,
            )
        elif run_dir_box:
            err_console.print(
                "interrupted before the first epoch ended; nothing was kept", markup=False, soft_wrap=True
            )
        raise typer.Exit(130)
    s = res.summary
    if not s:  # a non-chief worker of a multi-worker job
        console.print(f"done: this worker's part; the chief writes the run {res.run_dir}", soft_wrap=True)
        return
    sp = s["eval_split"]
    console.print(
        f"[bold green]done[/]: {s['recipe']} {s['model']} params={s['params']:,} "
        f"MACs/image={s['macs_per_image']:,} {sp} accuracy "
        f"{s[f'{sp}_accuracy']:.4f} ({s[f'{sp}_images']:,} {sp} images), "
        f"{s['train_minutes']} min",
        soft_wrap=True,
    )
    qat_acc = s.get(f"qat_{sp}_accuracy")
    if qat_acc is not None:
        console.print(
            f"QAT ({s['qat_epochs']} epochs): {sp} accuracy {qat_acc:.4f} -> {Run.MODELS['qat']}",
            soft_wrap=True,
        )
    d = res.run_dir
    console.print(f"run: {d}/  (models, metrics, curves, confusion matrix, summary)", soft_wrap=True)
    console.print(f"next: cnnedge export {d}   (or: cnnedge eval {d})", soft_wrap=True)


@app.command("quantize")
def quantize_cmd(
    run: Path = typer.Argument(..., help="A finished run directory (with its best model)."),
    epochs: Optional[int] = typer.Option(
        None, help="QAT epochs (default: the recipe's qat.epochs).", callback=checked("qat.epochs")
    ),
    lr: Optional[float] = typer.Option(
        None, help="QAT learning rate (default: recipe's qat.lr).", callback=checked("qat.lr")
    ),
):
    """Quantization-aware fine-tuning of a run.

    Writes qat.h5 and adds qat_* fields to summary.json.
    """
    from cnnedge.run import Run
    from cnnedge.train import fine_tune_qat

    s = fine_tune_qat(run, epochs=epochs, lr=lr)
    sp = s["eval_split"]
    qat_acc, float_acc = s[f"qat_{sp}_accuracy"], s[f"{sp}_accuracy"]
    console.print(
        f"QAT: {s['qat_epochs']} epochs, best val {s['qat_best_val_accuracy']:.4f}, "
        f"{sp} accuracy {qat_acc:.4f} (float {float_acc:.4f}) -> "
        f"{Run(run).model_path('qat')}",
        soft_wrap=True,
    )


@app.command("eval")
def eval_cmd(
    run: Path = typer.Argument(
        ...,
        help="Run directory, .keras model file, or a reference checkpoint's name (cifar10, fashion_mnist).",
    ),
    split: Optional[str] = typer.Option(
        None,
        help="Split to evaluate (default: test, else val; a flat class folder given with --data: all of it).",
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        help="Dataset or folder of class folders to "
        "score instead of the run's own (needed for a model file).",
    ),
    data_dir: Optional[Path] = DataDir,
    batch_size: int = typer.Option(256, help="Batch size.", callback=checked("train.batch_size")),
    n: Optional[int] = typer.Option(
        None, "-n", help="A seeded sample of N images, stratified by class.", callback=checked(IMAGES)
    ),
    out: Optional[Path] = typer.Option(None, "-o", "--out", help="Write eval JSON (+ .png)."),
    tta: str = typer.Option(
        "none",
        help="Test-time augmentation: none | flip (image and its "
        "mirror, softmax averaged; 2 forward passes).",
    ),
    image_size: Optional[str] = typer.Option(
        None, "--image-size", help="HxW to resize the data to, for a model file (a run uses its recipe's)."
    ),
):
    """Accuracy, per-class accuracy, confusion matrix.

    Of a run directory (best.keras on its recipe's data) or a model file (--data).
    """
    from rich.table import Table

    from cnnedge import evaluate
    from cnnedge.cli.app import parse_size

    size = parse_size(image_size)
    if size == "keep":
        size = None
    ev = evaluate.evaluate_run(
        run,
        split=split,
        dataset=data,
        data_dir=data_dir,
        batch_size=batch_size,
        take=n,
        out=out,
        tta=tta,
        image_size=size,
    )
    table = Table("class", "accuracy", "images")
    for name_, acc, row in zip(ev.class_names, ev.per_class_accuracy, ev.confusion):
        table.add_row(name_, f"{acc:.4f}", f"{sum(row):,}")
    console.print(table)
    with_tta = " with flip TTA" if tta == "flip" else ""
    what = "accuracy" if ev.split == "all" else f"{ev.split} accuracy"
    console.print(
        f"{what}{with_tta}: [bold]{ev.accuracy:.4f}[/] on {ev.n:,} images of {ev.data}", soft_wrap=True
    )
    if out:
        console.print(f"wrote {out} and {Path(out).with_suffix('.png')}")


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
