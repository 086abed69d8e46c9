"""`cnnedge predict`: classify image files, folders, globs, videos and cameras with any model.

    from cnnedge.predict import predict
    res = predict(["photos/", "clip.mp4"], "runs/mydata/exp", top_k=3)
    for p in res: print(p.source, p.top[0], p.error)

The model is a run directory (its preferred export, int8 TFLite first, else its Keras model), an
exported artifact, a ``.keras`` file or a shipped reference checkpoint's name (``cifar10``), on
any runtime the artifact table allows (:mod:`cnnedge.model_file`); the sources are those of
:mod:`cnnedge.frames`. Preprocessing is :mod:`cnnedge.preprocess` driven by the model's metadata
(the demo's path too). Files are decoded by a thread pool while the previous batch runs; a file
that cannot be read becomes a row with its error and the others still run. ``save_dir`` copies
(or links) each image into ``<save_dir>/<predicted class>/``.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnedge import preprocess
from cnnedge.errors import CnnedgeError
from cnnedge.files import check_writable
from cnnedge.frames import Item, expand
from cnnedge.model_file import open_model
from cnnedge.utils import folder_name

SAVE_MODES = ("copy", "link", "symlink")


@dataclass
class Prediction:
    source: str  # the file (or "camera 0") the image came from
    frame: int | None = None  # video / camera frame number
    top: list[tuple[str, float]] = field(default_factory=list)  # (class, probability), best first
    error: str | None = None
    ms: float | None = None  # inference time per image, amortised over its batch
    saved: str | None = None

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "frame": self.frame,
            "error": self.error,
            "top": [{"class": c, "probability": round(p, 6)} for c, p in self.top],
            "ms": None if self.ms is None else round(self.ms, 4),
            "saved": self.saved,
        }


@dataclass
class PredictResult:
    predictions: list[Prediction]
    model: Path
    runtime: str
    threads: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C: the rows so far

    def __iter__(self):
        return iter(self.predictions)

    def __len__(self):
        return len(self.predictions)

    @property
    def errors(self) -> list[Prediction]:
        return [p for p in self.predictions if p.error]

    @property
    def images_per_second(self) -> float:
        ok = len(self.predictions) - len(self.errors)
        return ok / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------- predict
def predict(
    sources,
    model,
    *,
    runtime: str | None = None,
    threads: int | None = None,
    top_k: int = 5,
    batch_size: int = 64,
    every: int = 1,
    max_frames: int | None = None,
    resize: str | None = None,
    image_size=None,
    save_dir=None,
    save_mode: str = "copy",
    workers: int | None = None,
    on_prediction=None,
) -> PredictResult:
    """Classify every image of ``sources`` with ``model`` (see the module docstring).

    Args:
        sources: Image files, folders (recursive), globs, videos or camera indices; one or a
            list.
        model: A run directory, an exported .tflite/.onnx, a .keras file or a reference
            checkpoint's name.
        runtime: The runtime to run it on (default: the file type's, see ``cnnedge formats``).
        threads: Inference threads (default: the runtime's).
        top_k: Classes reported per image.
        batch_size: Images per inference call.
        every: Videos and cameras: every Nth frame.
        max_frames: Videos and cameras: stop after this many frames.
        resize: Override the metadata's resize policy: ``stretch``, ``letterbox`` or ``crop``.
        image_size: Override the input size (H, W or ``"HxW"``).
        save_dir: Put each image into ``<save_dir>/<predicted class>/``.
        save_mode: How: ``copy``, ``link`` or ``symlink``.
        workers: Decoding threads (default: the inference threads).
        on_prediction: Called with each :class:`Prediction` as it is ready (cameras stream).

    Returns:
        A :class:`PredictResult`: one row per image (a file that cannot be read is a row with
        its error), the model, runtime and timing.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    if not sources:
        raise CnnedgeError("no source given: pass image files, folders, globs, videos or a camera")
    for name, v in (("top_k", top_k), ("batch_size", batch_size), ("every", every)):
        if int(v) < 1:
            raise CnnedgeError(f"{name} must be >= 1, got {v}")
    if save_mode not in SAVE_MODES:
        raise CnnedgeError(f"save mode must be one of {', '.join(SAVE_MODES)}, got {save_mode!r}")
    if save_dir is not None:
        check_writable(Path(save_dir), "save folder")
    path, runner = open_model(model, runtime, threads)
    try:
        pre = _preprocessor(runner, resize, image_size, int(batch_size))
    except CnnedgeError:
        runner.close()
        raise
    k = min(int(top_k), len(runner.class_names))
    workers = workers or max(1, runner.threads)
    preds: list[Prediction] = []
    t0 = time.perf_counter()

    def load(item: Item):
        if item.error:
            return item, None
        try:
            img = item.image if item.image is not None else preprocess.read_image(item.path)
            return item, pre(img)
        except CnnedgeError as e:
            item.error = str(e)
            return item, None

    def emit(p: Prediction):
        preds.append(p)
        if on_prediction:
            on_prediction(p)

    def run_batch(done):
        for p in _classify(done, runner, k, save_dir, save_mode):
            emit(p)

    interrupted = False
    try:
        with ThreadPoolExecutor(workers) as pool:
            pending = None  # decode batch i+1 while batch i runs
            for chunk in _chunks(expand(sources, every, max_frames), int(batch_size)):
                nxt = pool.map(load, chunk)
                if pending is not None:
                    run_batch(list(pending))
                pending = nxt
            if pending is not None:
                run_batch(list(pending))
    except KeyboardInterrupt:  # a camera runs until Ctrl-C: keep what was predicted
        interrupted = True
    finally:
        runner.close()
    return PredictResult(
        preds, path, runner.runtime, runner.threads, time.perf_counter() - t0, sorted(pre.notes), interrupted
    )


def _preprocessor(runner, resize, image_size, batch_size: int):
    pre = preprocess.Preprocessor(runner.metadata, resize=resize, image_size=image_size)
    if pre.size is not None:  # a batch that cannot fit is refused before any image is read
        from cnnedge.limits import check_input_size

        check_input_size(
            pre.size,
            batch=batch_size,
            channels=pre.channels,
            what="image size" if image_size else "the model's input size",
            hint="choose a smaller --image-size or --batch",
        )
    return pre


def _classify(done, runner, k: int, save_dir, save_mode: str) -> list[Prediction]:
    """One row per decoded item of ``done`` ((item, image or None) pairs), in order."""
    names = runner.class_names
    rows = [Prediction(it.source, it.frame, error=it.error) for it, _ in done]
    # equal shapes batch together (a keep-size model sees each image at its own size)
    groups: dict[tuple, list] = {}
    for i, (it, x) in enumerate(done):
        if x is not None:
            groups.setdefault(x.shape, []).append(i)
    for group in groups.values():
        t = time.perf_counter()
        logits = runner.predict(np.stack([done[i][1] for i in group]))
        ms = (time.perf_counter() - t) * 1000 / len(group)
        probs = _softmax(logits)
        order = np.argsort(-probs, axis=1)[:, :k]
        for i, row, idx in zip(group, probs, order):
            rows[i].top, rows[i].ms = [(names[j], float(row[j])) for j in idx], ms
            if save_dir is not None:
                try:
                    rows[i].saved = _save(done[i][0], rows[i].top[0][0], Path(save_dir), save_mode)
                except CnnedgeError as e:
                    rows[i].error = str(e)
    return rows


def _chunks(items, n: int):
    chunk = []
    for it in items:
        chunk.append(it)
        if len(chunk) == n or it.live:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _save(item: Item, label: str, root: Path, mode: str) -> str:
    """Copy/link the image (or write the frame) to ``root/<label>/``; never overwrites."""
    folder = root / folder_name(label)
    folder.mkdir(parents=True, exist_ok=True)
    if item.path is not None:
        stem, suffix = item.path.stem, item.path.suffix
    else:
        stem, suffix = f"{folder_name(Path(item.source).stem)}_f{item.frame:06d}", ".png"
    target = folder / f"{stem}{suffix}"
    i = 1
    while target.exists() or target.is_symlink():
        target = folder / f"{stem}_{i}{suffix}"
        i += 1
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")  # OpenCV picks a codec by suffix
    try:
        if item.path is None:
            cv = preprocess.cv2()
            img = item.image
            bgr = img if img.shape[2] == 1 else cv.cvtColor(img, cv.COLOR_RGB2BGR)
            try:
                ok = cv.imwrite(str(tmp), bgr)
            except cv.error as e:
                raise OSError(str(e).strip().splitlines()[-1]) from e
            if not ok:
                raise OSError(f"OpenCV could not write {tmp.name}")
        elif mode == "copy":
            shutil.copy2(item.path, tmp)
        elif mode == "link":
            os.link(item.path, tmp)
        else:
            os.symlink(item.path.resolve(), tmp)
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CnnedgeError(f"cannot save {item.source} into {folder}: {e.strerror or e}")
    return str(target)


def write_table(res: PredictResult, fmt: str, out) -> None:
    """All rows as ``json`` or ``csv`` to the open text file ``out``."""
    import csv
    import json

    if fmt == "json":
        json.dump(
            {
                "model": str(res.model),
                "runtime": res.runtime,
                "threads": res.threads,
                "images_per_second": round(res.images_per_second, 1),
                "predictions": [p.as_dict() for p in res],
            },
            out,
            indent=1,
        )
        out.write("\n")
        return
    k = max((len(p.top) for p in res), default=1)
    w = csv.writer(out)
    w.writerow(
        [
            "source",
            "frame",
            *[f"{x}{i + 1}" for i in range(k) for x in ("class", "prob")],
            "ms",
            "error",
            "saved",
        ]
    )
    for p in res:
        top = [v for c, pr in p.top for v in (c, f"{pr:.6f}")]
        top += [""] * (2 * k - len(top))
        w.writerow(
            [
                p.source,
                "" if p.frame is None else p.frame,
                *top,
                "" if p.ms is None else f"{p.ms:.4f}",
                p.error or "",
                p.saved or "",
            ]
        )
