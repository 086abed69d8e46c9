"""What a bench run measures: the artifact files of a run (or the files given), the run each
belongs to, and that run's test images saved once for every worker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run


@dataclass
class Target:
    path: Path
    run: Run | None = None
    meta: dict | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def row(self):
        """The artifact table row (format, precision) of this file by its name, or None."""
        if self.path.name == Run.MODELS["qat"]:
            return artifacts.get("keras-qat")
        if self.path.suffix.lower() in (".keras", ".h5"):
            return artifacts.get("keras")
        return next((a for a in artifacts.exported() if a.filename == self.path.name), None)

    @property
    def summary(self) -> dict:
        """The summary of the file's run ({} when there is none or it cannot be read)."""
        if not hasattr(self, "_summary"):
            try:
                self._summary = self.run.summary if self.run is not None else {}
            except CnnedgeError:
                self._summary = {}
        return self._summary


def _order(p: Path) -> tuple:
    suffixes = artifacts.suffixes()
    s = p.suffix.lower()
    return (suffixes.index(s) if s in suffixes else len(suffixes), p.name)


def _in_folder(folder: Path) -> list[Path]:
    """A run's Keras models and exports, or the artifacts in an export folder itself."""
    run = Run(folder)
    if run.keras_models() or run.export_dir.is_dir():
        return run.keras_models() + sorted(run.artifacts(), key=_order)
    known = artifacts.suffixes(exported_only=True)
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in known), key=_order)


def resolve_targets(targets) -> tuple[list[Path], Run | None]:
    """(artifact paths, the run when exactly one run directory is benchmarked)."""
    if isinstance(targets, (str, Path)):
        targets = [targets]
    targets = [Path(t) for t in targets or []]
    if not targets:
        raise CnnedgeError("give a run directory or artifact files to benchmark")
    paths: list[Path] = []
    run = None
    for t in targets:
        if t.is_dir():
            found = _in_folder(t)
            if not found:
                raise CnnedgeError(
                    f"{t} holds no artifacts (a run's models, or exported "
                    f"{' / '.join(artifacts.suffixes(True))} files); run: "
                    f"cnnedge export {t}"
                )
            paths += found
            if len(targets) == 1:
                run = Run(t) if Run.is_run(t) else (Run(t.parent) if Run.is_run(t.parent) else None)
        else:
            if t.suffix.lower() not in artifacts.suffixes():
                raise CnnedgeError(
                    f"{t}: not a model file ({', '.join(artifacts.suffixes())}) or a run directory"
                )
            paths.append(t)  # a missing file becomes a ❌ row, not an error
    return list(dict.fromkeys(paths)), run


def open_targets(paths: list[Path]) -> list[Target]:
    """Read each file's metadata and find its run; a bad file is a target with an error."""
    out = []
    for p in paths:
        t = Target(p)
        if not p.is_file():
            t.error = f"no model file at {p}"
        elif p.suffix.lower() in artifacts.suffixes(exported_only=True):
            try:
                t.meta = artifacts.read_metadata(p)
            except CnnedgeError as e:
                t.error = str(e)
        t.run = Run.of_model(p, t.meta)
        out.append(t)
    return out


def save_test_images(run: Run, n: int | None, workdir: Path, notes: list) -> dict | None:
    """The run's test images as .npy files the workers load; None (with a note) without data."""
    try:
        src = run.open_data()
        images, labels, split = run.test_images(n, src=src)
    except Exception as e:  # noqa: BLE001 - no dataset here: time on random pixels instead
        notes.append(
            f"{run.path}: test images unavailable ({' '.join(str(e).split())[:200]}); "
            f"no accuracy, timings on random pixels"
        )
        return None
    tag = len(list(workdir.glob("images_*.npy")))
    ip, lp = workdir / f"images_{tag}.npy", workdir / f"labels_{tag}.npy"
    np.save(ip, np.ascontiguousarray(images, dtype=np.uint8))
    np.save(lp, np.asarray(labels).astype(np.int64))
    return {
        "images": str(ip),
        "labels": str(lp),
        "n": int(len(labels)),
        "split": split,
        "image_size": list(images.shape[1:3]),
        "channels": int(images.shape[3]),
    }


def resized_images(data: dict, size, workdir: Path) -> dict:
    """``data`` (from :func:`save_test_images`) stretched to ``size``: the images a fixed-size
    file (``export --format tflm --image-size``) is fed, as verify does."""
    from cnnedge.preprocess import resize

    images = np.load(data["images"])
    h, w = (int(v) for v in size)
    out = np.stack([resize(im, (h, w)) for im in images])
    path = Path(data["images"]).with_name(f"{Path(data['images']).stem}_{h}x{w}.npy")
    np.save(path, np.ascontiguousarray(out, dtype=np.uint8))
    return {**data, "images": str(path), "image_size": [h, w]}
