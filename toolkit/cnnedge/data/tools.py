"""describe / preview / benchmark: the functions behind ``cnnedge data info|preview|bench``."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from cnnedge.backend import tf
from cnnedge.data.base import AUTOTUNE, Source, select_positions
from cnnedge.errors import CnnedgeError
from cnnedge.files import default_mode


def check(source: Source) -> int:
    """Decode every image of every split once; a file that fails is a CnnedgeError naming it.
    Returns the number of images read."""
    if hasattr(source, "check_files"):  # a format with its own file-level checks
        source.check_files()
    n = 0
    for split in source.splits:
        got = 0
        with source.guard(split):
            for _, y in source.pipeline(split, batch_size=256):
                got += int(y.shape[0])
        if got != source.num_examples(split):
            raise CnnedgeError(
                f"{source.info.source}: split {split} yields {got} images, its "
                f"index {source.num_examples(split)} (a file changed since?)"
            )
        n += got
    return n


def describe(source: Source, check_files: bool = False) -> dict:
    """Counts, class balance and image sizes per split, from the index; with ``check_files``
    every image is also decoded once (the first one that fails is named)."""
    if check_files:
        check(source)
    info = source.info
    k = len(info.class_names)
    splits = {}
    for split in source.splits:
        idx = source.split_index(split)
        counts = np.bincount(idx.labels, minlength=k)[:k]
        if info.image_size is not None:
            h, w = info.image_size
            sizes = {f"{h}x{w}x{info.channels}": len(idx.labels)}
        else:
            tally = Counter(map(tuple, idx.shapes.tolist()))
            sizes = {f"{h}x{w}x{c}": int(n) for (h, w, c), n in tally.most_common()}
        splits[split] = {"count": len(idx.labels), "class_counts": [int(c) for c in counts], "sizes": sizes}
    return {
        "name": info.name,
        "format": info.format,
        "source": info.source,
        "class_names": list(info.class_names),
        "splits": splits,
    }


def sample(source: Source, split: str, n: int, seed: int = 0):
    """``n`` examples (uint8 images, int32 labels) drawn without replacement, in file order."""
    total = source.num_examples(split)
    n = min(int(n), total)
    if n < 1:
        raise CnnedgeError(f"nothing to sample: n={n}, split {split!r} has {total} examples")
    pos = np.sort(np.random.default_rng(seed).choice(total, size=n, replace=False))
    ds = select_positions(source._raw(split), total, pos)
    if source.vectorized:
        ds = ds.batch(256).map(source._decode_batch_resized).unbatch()
    else:
        ds = ds.map(source._decode_one_resized, num_parallel_calls=AUTOTUNE)
    with source.guard(split):
        return list(ds.as_numpy_iterator())


def preview(source: Source, out, *, split: str = "train", n: int = 36, seed: int = 0) -> Path:
    """Write a labelled grid of ``n`` random images of ``split`` to the PNG ``out`` (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = sample(source, split, n, seed)
    cols = math.ceil(math.sqrt(len(items)))
    rows = math.ceil(len(items) / cols)
    fig = Figure(figsize=(cols * 1.4, rows * 1.55), dpi=100)
    FigureCanvasAgg(fig)
    names = source.info.class_names
    for i, (image, label) in enumerate(items):
        ax = fig.add_subplot(rows, cols, i + 1)
        if image.shape[-1] == 1:
            ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="nearest")
        ax.set_title(names[int(label)] if 0 <= int(label) < len(names) else str(label), fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{source.info.name} / {split}", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                fig.savefig(f, format="png")
            default_mode(tmp)
            os.replace(tmp, out)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise CnnedgeError(f"{out}: cannot write ({e.strerror or e})") from None
    return out


def benchmark(
    source: Source, *, split: str = "train", batch_size: int = 128, epochs: int = 2, shuffle: bool = True
) -> dict:
    """Images/s of ``pipeline(split)`` consumed inside TensorFlow (no Python per batch)."""
    if int(epochs) < 1:
        raise CnnedgeError(f"epochs must be >= 1, got {epochs}")
    ds = source.pipeline(split, batch_size=batch_size, shuffle=shuffle, seed=0)
    count = tf.function(
        lambda: ds.reduce(tf.constant(0, tf.int64), lambda acc, b: acc + tf.cast(tf.shape(b[0])[0], tf.int64))
    )
    per_epoch, cpu, images = [], [], 0
    with source.guard(split):
        for _ in range(int(epochs)):
            t0, c0 = time.perf_counter(), time.process_time()
            images = int(count())
            per_epoch.append(round(images / max(time.perf_counter() - t0, 1e-9), 1))
            cpu.append(round(time.process_time() - c0, 3))
    # cpu_s: CPU seconds this process spent per epoch -- on a busy machine, images / cpu_s x
    # cores estimates what the pipeline would reach with the cores to itself
    return {
        "dataset": source.info.name,
        "format": source.info.format,
        "split": split,
        "batch_size": int(batch_size),
        "shuffle": bool(shuffle),
        "images": images,
        "per_epoch": per_epoch,
        "cpu_s": cpu,
        "cores": os.cpu_count(),
        "images_per_s": max(per_epoch),
    }
