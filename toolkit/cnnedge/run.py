"""A run directory and the one place that knows its files.

    run = Run("runs/fashion_mnist/exp")
    run.recipe, run.summary, run.class_names          # recipe.yaml, summary.json, labels.json
    model = run.model("float")                        # best.keras ("last", "qat": qat.h5)
    run.artifacts()                                   # export/*.tflite|*.onnx (artifact table)
    images, labels, split = run.test_images(1000)     # a seeded, class-stratified sample

A run describes how to rebuild itself (nanoGPT style): ``recipe.yaml`` is the fully resolved
recipe, ``state.json`` the resume point; every other file is an output of a pipeline stage.
Importing this module is cheap: TensorFlow loads only when a model or the data is opened.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_write_csv, atomic_write_json
from cnnedge.utils import stratified_positions, unknown

METRIC_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def eval_split(src) -> str:
    """The split a run is scored on: test when the dataset has one, else val."""
    return "test" if "test" in src.info.split_sizes else "val"


def test_images(src, n: int | None = None, *, seed: int = 0):
    """(uint8 images [N,H,W,C], labels [N], split) of dataset ``src``'s evaluation split: all
    of it in file order, or ``n`` of them drawn with ``seed``, stratified by class."""
    split = eval_split(src)
    total = src.num_examples(split)
    keep = None
    if n is not None and int(n) < total:
        keep = stratified_positions(src.split_index(split).labels, int(n), seed)
    xs, ys = [], []
    with src.guard(split):
        for x, y in src.pipeline(split, batch_size=1024):
            xs.append(x.numpy())
            ys.append(y.numpy())
    if not xs:
        raise CnnedgeError(f"split '{split}' of {src.info.name} is empty")
    images, labels = np.concatenate(xs), np.concatenate(ys)
    if keep is not None:
        images, labels = images[keep], labels[keep]
    return images, labels, split


def open_data(recipe):
    """The dataset of ``recipe`` with its validation carve-out and seed."""
    from cnnedge import data

    d = recipe.data
    return data.open_dataset(
        d.dataset,
        data_dir=d.data_dir,
        val_fraction=d.val_fraction,
        seed=recipe.train.seed,
        image_size=tuple(d.image_size) if d.image_size else None,
        keep_size=d.keep_size,
        batch_mode=d.batch_mode,
        val_split=d.val_split,
        channels=d.channels,
    )


class Run:
    """A training run directory: its recipe, state, models, exports and reports."""

    RECIPE, STATE, ENV = "recipe.yaml", "state.json", "env.json"
    LABELS, SUMMARY, EMA = "labels.json", "summary.json", "ema.npz"
    METRICS, QAT_METRICS = "metrics.csv", "qat_metrics.csv"
    CURVES, CONFUSION, TENSORBOARD = "curves.png", "confusion.png", "tb"
    EXPORT, VERIFY_JSON, VERIFY_MD = "export", "verify.json", "verify.md"
    BENCH = ("bench.json", "bench.csv", "bench.png")
    MODELS = {"float": "best.keras", "last": "last.keras", "qat": "qat.h5"}
    LOCK = ".lock"  # held by the command writing the run (cnnedge.locks)

    def __init__(self, path):
        self.path = Path(path)
        self._recipe = None

    def __repr__(self):
        return f"Run({str(self.path)!r})"

    def __fspath__(self):
        return str(self.path)

    def __truediv__(self, name):  # run / Run.SUMMARY
        return self.path / name

    # ------------------------------------------------------------------ finding runs
    @staticmethod
    def is_run(path) -> bool:
        return (Path(path) / Run.RECIPE).is_file()

    @classmethod
    def of_model(cls, path, metadata: dict | None = None) -> Run | None:
        """The run a model file belongs to (its folder, the folder above ``export/``, or the
        metadata's ``source_run``), or None."""
        path = Path(path)
        cands = []
        if path.name in cls.MODELS.values() or path.suffix.lower() in (".keras", ".h5"):
            cands.append(path.parent)
        if path.parent.name == cls.EXPORT:
            cands.append(path.parent.parent)
        if metadata and metadata.get("source_run"):
            cands.append(Path(metadata["source_run"]))
        return next((cls(c) for c in cands if c.is_dir() and cls.is_run(c)), None)

    @classmethod
    def create(cls, runs_dir, recipe_name: str, name: str | None = None, overwrite: bool = False) -> Run:
        """A new, empty run directory. With ``overwrite`` an existing run is moved aside to
        ``<name>.old`` (not deleted): :meth:`started` deletes it once the new run has finished
        an epoch, :meth:`discard` puts it back if the new run fails before that."""
        path = Path(runs_dir) / recipe_name / (name or "exp")
        old = path.with_name(path.name + ".old")
        try:
            if path.exists() and any(path.iterdir()):
                if not overwrite:
                    raise CnnedgeError(
                        f"run directory {path} already exists; pick another --name, pass "
                        f"--overwrite, or continue it with: cnnedge train --resume {path}"
                    )
                if old.exists():
                    raise CnnedgeError(
                        f"{old} exists (an earlier --overwrite that did not finish "
                        f"an epoch): move it back to {path} or delete it first"
                    )
                with cls(path).lock("cnnedge train --overwrite"):  # not while another writes it
                    pass
                path.rename(old)
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CnnedgeError(f"cannot create run directory {path}: {e.strerror or e}") from e
        return cls(path)

    def started(self) -> None:
        """The run has finished an epoch: the run it replaced (``--overwrite``) goes now."""
        old = self.path.with_name(self.path.name + ".old")
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)

    def discard(self) -> None:
        """Remove a run that failed before its first epoch ended, and put back the run it was
        replacing: a failed start leaves nothing behind."""
        shutil.rmtree(self.path, ignore_errors=True)
        old = self.path.with_name(self.path.name + ".old")
        if old.is_dir() and not self.path.exists():
            old.rename(self.path)

    @classmethod
    def model_file(cls, path, what: str) -> Path:
        """A trained model named by a run directory (its best model) or a model file; ``what``
        names the setting in the error (e.g. "distill teacher")."""
        p = Path(path)
        f = p / cls.MODELS["float"] if p.is_dir() else p
        if not f.is_file():
            raise CnnedgeError(
                f"{what} {path}: no model at {f} (give a finished run directory or a .keras file)"
            )
        return f

    def lock(self, command: str):
        """``with run.lock("cnnedge export"):`` while one command writes the run, another that
        would gets a CnnedgeError naming it (see :mod:`cnnedge.locks`)."""
        from cnnedge.locks import folder_lock

        return folder_lock(self.path, command, self.LOCK)

    @classmethod
    def holding(cls, path) -> Run | None:
        """The run directory ``path`` is in (itself or a folder above it), or None."""
        path = Path(path).absolute()
        return next((cls(p) for p in (path, *path.parents) if cls.is_run(p)), None)

    @classmethod
    def lock_of(cls, path, command: str):
        """The lock of the run that ``path`` is in; no lock outside runs (or for None)."""
        import contextlib

        run = cls.holding(path) if path is not None else None
        return run.lock(command) if run is not None else contextlib.nullcontext()

    # ------------------------------------------------------------------ what it holds
    def require(self, kind: str = "float", hint: str = "train it first (cnnedge train)") -> Run:
        if not self.has(kind):
            raise CnnedgeError(f"{self.path} has no {self.MODELS[kind]}: {hint}")
        return self

    def has(self, kind: str) -> bool:
        return self.model_path(kind).is_file()

    def model_path(self, kind: str = "float") -> Path:
        if kind not in self.MODELS:
            raise unknown("model kind", kind, list(self.MODELS))
        return self.path / self.MODELS[kind]

    def model(self, kind: str = "float", compile: bool = False):
        from cnnedge import models

        return models.load_model(self.require(kind).model_path(kind), compile=compile)

    @property
    def recipe(self):
        if self._recipe is None:
            from cnnedge.recipe import load_yaml

            if not (self.path / self.RECIPE).is_file():
                raise CnnedgeError(
                    f"{self.path} is not a cnnedge run (no {self.RECIPE}); "
                    f"start one with cnnedge train --recipe NAME"
                )
            self._recipe = load_yaml(self.path / self.RECIPE)
        return self._recipe

    def save_recipe(self, recipe) -> None:
        from cnnedge.recipe import save_yaml

        save_yaml(recipe, self.path / self.RECIPE)
        self._recipe = recipe

    def _json(self, name: str, default):
        path = self.path / name
        if not path.is_file():
            return default
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise CnnedgeError(f"cannot read {path}: {e}") from e

    @property
    def summary(self) -> dict:
        return self._json(self.SUMMARY, {})

    def write_summary(self, summary: dict) -> None:
        atomic_write_json(self.path / self.SUMMARY, summary)

    @property
    def class_names(self) -> list[str] | None:
        return self._json(self.LABELS, None)

    def preprocessing(self) -> dict:
        """How to feed this run's models, as every artifact's metadata records it: the input
        size, whether images were resized to it (``size_policy`` fixed) or kept at their own
        size (keep; ``image_size`` is then the median), the resize policy and background (a run
        whose float phase has not finished has no summary yet: no size, the defaults)."""
        s = self.summary
        size = s.get("input_size")
        return {
            "image_size": [int(v) for v in size[:2]] if size else None,
            "size_policy": s.get("size_policy", "fixed"),
            "resize": s.get("resize", "stretch"),
            "background": s.get("background"),
        }

    def write_labels(self, names) -> None:
        atomic_write_json(self.path / self.LABELS, list(names))

    @property
    def state(self) -> dict:
        if not (self.path / self.STATE).is_file():
            raise CnnedgeError(
                f"{self.path} is not a cnnedge run (no {self.STATE}); "
                f"start one with cnnedge train --recipe NAME"
            )
        return self._json(self.STATE, {})

    def write_state(self, state: dict) -> None:
        atomic_write_json(self.path / self.STATE, state)

    def write_env(self, env: dict) -> None:
        atomic_write_json(self.path / self.ENV, env)

    def metrics(self, qat: bool = False) -> list[dict]:
        path = self.path / (self.QAT_METRICS if qat else self.METRICS)
        if not path.is_file():
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def append_metrics(self, row: dict) -> None:
        """Rewrite metrics.csv atomically, dropping rows at or after this epoch (resume repeats)."""
        rows = [r for r in self.metrics() if int(r["epoch"]) < row["epoch"]] + [row]
        atomic_write_csv(
            self.path / self.METRICS,
            [{k: _fmt(r.get(k)) for k in METRIC_FIELDS} for r in rows],
            METRIC_FIELDS,
        )

    def write_qat_metrics(self, rows: list[dict]) -> None:
        atomic_write_csv(self.path / self.QAT_METRICS, rows, list(dict.fromkeys(k for r in rows for k in r)))

    # ------------------------------------------------------------------ exports and reports
    @property
    def export_dir(self) -> Path:
        return self.path / self.EXPORT

    def edge_exports(self, runtime: str | None = None) -> list[tuple]:
        """(table row, path) of the exported files in ``export/`` (or in this folder, when it
        is an export folder itself), in :func:`artifacts.edge_order`: what ``--model RUN`` of
        the demo and of predict picks from."""
        return [
            (a, d / a.filename)
            for d in (self.export_dir, self.path)
            for a in artifacts.edge_order(runtime)
            if (d / a.filename).is_file()
        ]

    def artifacts(self) -> list[Path]:
        """Exported files the artifact table knows (by suffix), sorted by name."""
        d = self.export_dir
        if not d.is_dir():
            return []
        return sorted(p for p in d.iterdir() if p.suffix.lower() in artifacts.suffixes(True))

    def keras_models(self) -> list[Path]:
        """The run's own Keras models that exist: best, then QAT."""
        return [self.model_path(k) for k in ("float", "qat") if self.has(k)]

    @staticmethod
    def failed_report(path) -> Path:
        """Where a report that could not be completed goes instead of replacing ``path``
        (bench.json -> bench.failed.json): the previous report stays as it was."""
        path = Path(path)
        return path.with_name(f"{path.stem}.failed{path.suffix}")

    def report(self, name: str) -> Path:
        """Where a report of this run lives (verify.json, bench.csv, ...)."""
        known = (self.VERIFY_JSON, self.VERIFY_MD, *self.BENCH, self.CURVES, self.CONFUSION)
        if name not in known:
            raise unknown("report", name, known)
        return self.path / name

    # ------------------------------------------------------------------ data
    def open_data(self, dataset: str | None = None, data_dir: str | None = None):
        """The run's dataset (its recipe's), or ``dataset``/``data_dir`` instead."""
        import dataclasses

        recipe = self.recipe
        if dataset or data_dir:  # other data is scored whole: no validation carve-out
            recipe = dataclasses.replace(
                recipe,
                data=dataclasses.replace(
                    recipe.data,
                    dataset=dataset or recipe.data.dataset,
                    data_dir=data_dir or recipe.data.data_dir,
                    val_fraction=0.0 if dataset else recipe.data.val_fraction,
                ),
            )
        return open_data(recipe)

    def test_images(self, n: int | None = None, *, seed: int = 0, src=None):
        """(uint8 images [N,H,W,C], labels [N], split) of the run's evaluation split: all of it
        in file order, or ``n`` of them drawn with ``seed``, stratified by class."""
        return test_images(src or self.open_data(), n, seed=seed)


def _fmt(v):
    if v is None or v == "":
        return ""
    return f"{float(v):.6g}" if not isinstance(v, str) else v


def preprocessing_of(src) -> dict:
    """The input size a run records (the training size, or the median size of a keep-size
    dataset: never a made-up one), its size policy and the background of its images (from a
    stratified sample of 200 training images, one per batch so that none is padded)."""
    from cnnedge import preprocess

    size = src.info.image_size
    policy = "fixed"
    if size is None:
        policy = "keep"
        shapes = src.split_index("train").shapes
        size = (int(np.median(shapes[:, 0])), int(np.median(shapes[:, 1])))
    with src.guard("train"):
        images = [x.numpy()[0] for x, _ in src.pipeline("train", batch_size=1, take=200)]
    return {
        "image_size": [int(size[0]), int(size[1])],
        "size_policy": policy,
        "resize": "stretch",
        "background": preprocess.background(images),
    }
