"""Write a finished run's best model as a shipped reference checkpoint.

    python docs/scripts/ship_reference.py runs/cifar10/exp cifar10 "cnnedge train --recipe cifar10"

Saves ``toolkit/cnnedge/weights/<name>.keras`` (float model, no optimizer state) and
``<name>.json``: the command that trained it, its recipe, classes, input size, and its accuracy
on the test split measured on the saved file itself (what ``cnnedge eval`` reproduces), with the
date and the CPU model.
"""

import datetime
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from cnnedge.evaluate import evaluate_run
from cnnedge.models import load_model, summary_dict
from cnnedge.run import Run

OUT = Path(__file__).resolve().parents[2] / "toolkit" / "cnnedge" / "weights"


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def s_input(run: Run) -> tuple:
    return tuple(run.summary["input_size"])


def recompress(path: Path) -> None:
    """Keras stores the .keras zip uncompressed; deflate it (about 10 % smaller, same bytes)."""
    tmp = path.with_name(path.name + ".tmp")
    with (
        zipfile.ZipFile(path) as src,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst,
    ):
        for item in src.infolist():
            dst.writestr(item.filename, src.read(item.filename))
    tmp.replace(path)


def main(run_dir: str, name: str, command: str) -> None:
    run = Run(run_dir)
    model = load_model(run.model_path("float"), compile=False)  # no optimizer state to ship
    target = OUT / f"{name}.keras"
    model.save(target)
    recompress(target)
    s = run.summary
    ev = evaluate_run(target, dataset=run.recipe.data.dataset, data_dir=run.recipe.data.data_dir)
    info = {
        "name": name,
        "model": model.name,
        "params": summary_dict(model, s_input(run))["params"],
        "dataset": s["dataset"],
        "class_names": run.class_names,
        "image_size": s["input_size"][:2],
        "channels": s["input_size"][2],
        "recipe": run.recipe.name,
        "command": command,
        "epochs": s["epochs"],
        "best_epoch": s["best_epoch"],
        "train_minutes": s["train_minutes"],
        "test_split": ev.split,
        "test_images": ev.n,
        "test_accuracy": ev.accuracy,
        "eval_command": f"cnnedge eval {target.name} --data <{s['dataset']} folder>",
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "bytes": target.stat().st_size,
    }
    target.with_suffix(".json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main(*sys.argv[1:4])
