"""Packed datasets: sharded TFRecords + ``dataset.json`` (any ``tf.io.gfile`` path).

Each example holds the raw uint8 pixels (HWC), its shape and its label. Example ``i`` of a split
goes to shard ``i % S``, so reading the shards with a deterministic round-robin interleave gives
back the file order while reading every shard in parallel. With a fixed image size, batches of
serialized examples are parsed and decoded at once (``parse_example`` + ``decode_raw``).
``dataset.json`` is written last: a folder without it is an incomplete pack and is refused.
"""

from __future__ import annotations

import base64
import json
import os
import zlib

import numpy as np

from cnnedge.backend import tf
from cnnedge.data.base import Source, SplitIndex, make_splits
from cnnedge.errors import CnnedgeError, one_line
from cnnedge.files import check_output

META = "dataset.json"
MAGIC = "cnnedge-tfrecord"


def _enc(a: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.ascontiguousarray(a, "<i4").tobytes())).decode()


def _dec(s: str, cols: int | None = None) -> np.ndarray:
    a = np.frombuffer(zlib.decompress(base64.b64decode(s)), "<i4").astype(np.int32)
    return a.reshape(-1, cols) if cols else a


def _join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name


def is_packed(folder: str) -> bool:
    folder = str(folder)
    if "://" not in folder:  # plain paths: no need to import TensorFlow
        return os.path.isfile(_join(folder, META))
    return tf.io.gfile.exists(_join(folder, META))


def looks_partial(folder: str) -> bool:
    try:
        names = os.listdir(folder) if "://" not in str(folder) else tf.io.gfile.listdir(folder)
    except Exception:  # noqa: BLE001 - unlistable: not a partial pack
        return False
    return any(n.endswith(".tfrecord") for n in names)


class RecordSource(Source):
    def __init__(
        self,
        folder: str,
        *,
        name=None,
        val_fraction=0.0,
        seed=0,
        resize=None,
        keep_size=False,
        batch_mode="pad",
    ):
        self._folder = folder = str(folder)
        meta_path = _join(folder, META)
        try:
            with tf.io.gfile.GFile(meta_path, "r") as f:
                meta = json.load(f)
        except Exception as e:  # noqa: BLE001 - unreadable or not JSON
            raise CnnedgeError(f"{meta_path}: cannot read ({one_line(e)[:200]})") from None
        try:
            if meta.get("format") != MAGIC:
                raise ValueError(f"format is {meta.get('format')!r}, expected {MAGIC!r}")
            class_names = tuple(str(c) for c in meta["class_names"])
            channels = int(meta["channels"])
            size = meta.get("image_size")
            size = (int(size[0]), int(size[1])) if size else None
            self._shards, base, counts = {}, {}, {}
            for split, s in meta["splits"].items():
                labels = _dec(s["labels"])
                shapes = _dec(s["shapes"], 3) if s.get("shapes") else None
                if len(labels) != int(s["count"]) or (shapes is not None and len(shapes) != len(labels)):
                    raise ValueError(f"split {split}: index does not match count")
                if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
                    raise ValueError(f"split {split}: label out of range")
                self._shards[split] = [_join(folder, n) for n in s["shards"]]
                base[split] = SplitIndex(split, labels, shapes=shapes)
                counts[split] = len(labels)
        except (KeyError, TypeError, ValueError, IndexError, zlib.error) as e:
            raise CnnedgeError(f"{meta_path}: not a valid cnnedge pack ({one_line(e, limit=None)})") from None
        for split, files in self._shards.items():
            for p in files:
                if not tf.io.gfile.exists(p):
                    raise CnnedgeError(f"{p}: shard listed in {META} is missing")
        if size is None and not keep_size and not resize:
            raise CnnedgeError(
                f"{folder}: images differ in size; choose a size: "
                "--image-size HxW (e.g. 64x64) or --image-size keep"
            )
        self._stored_size = size
        self.vectorized = size is not None
        if size:
            self.raw_bytes = size[0] * size[1] * channels + 32
        super().__init__(
            name=name or meta.get("name") or os.path.basename(folder.rstrip("/")),
            source=folder,
            format="tfrecord",
            class_names=class_names,
            channels=channels,
            image_size=resize or size,
            splits=make_splits(base, val_fraction, seed),
            base_counts=counts,
            keep_size=keep_size,
            batch_mode=batch_mode,
            resize=resize,
        )

    def _base_raw(self, base):
        files = self._shards[base]
        if len(files) == 1:
            return tf.data.TFRecordDataset(files[0], buffer_size=1 << 20)
        return tf.data.Dataset.from_tensor_slices(files).interleave(
            lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 18),
            cycle_length=len(files),
            block_length=1,
            num_parallel_calls=min(len(files), 4),
            deterministic=True,
        )

    def _features(self):
        return {
            "image": tf.io.FixedLenFeature([], tf.string),
            "label": tf.io.FixedLenFeature([], tf.int64),
            "shape": tf.io.FixedLenFeature([3], tf.int64),
        }

    def _decode_batch(self, serialized):
        ex = tf.io.parse_example(serialized, self._features())
        h, w = self._stored_size
        images = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [-1, h, w, self.decoded_channels])
        return images, tf.cast(ex["label"], tf.int32)

    def _decode_one(self, serialized):
        ex = tf.io.parse_single_example(serialized, self._features())
        image = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), tf.cast(ex["shape"], tf.int32))
        return image, tf.cast(ex["label"], tf.int32)

    def check_files(self) -> None:
        """Read every shard: one that fails, or holds other than the number of records the
        index gives it (``pack`` deals them round-robin), is named."""
        for split, shards in self._shards.items():
            n = self._base_counts[split]
            for k, shard in enumerate(shards):
                want = len(range(k, n, len(shards)))
                try:
                    got = int(tf.data.TFRecordDataset(shard).reduce(0, lambda c, _: c + 1))
                except tf.errors.OpError as e:
                    raise CnnedgeError(self._explain(split, e)) from None
                if got != want:
                    raise CnnedgeError(
                        f"{shard}: corrupt TFRecord shard ({got} records, "
                        f"{META} lists {want}: truncated or replaced?)"
                    )

    def _explain(self, split, err):
        """Name the shard that fails to read (error path only: each shard read once)."""
        first = one_line(str(err.message).split("{{")[0]).split(" [Op:")[0][:160]
        for s in [split] if split in self._shards else list(self._shards):
            for shard in self._shards[s]:
                try:
                    for _ in tf.data.TFRecordDataset(shard).map(self._decode_one):
                        pass
                except tf.errors.OpError as e:
                    why = one_line(str(e.message).split("{{")[0]).split(" [Op:")[0][:160]
                    return f"{shard}: corrupt TFRecord shard ({type(e).__name__}: {why})"
        return f"{self._folder}: corrupt TFRecord shard ({type(err).__name__}: {first})"


def _example(image: np.ndarray, label: int) -> bytes:
    feat = tf.train.Feature
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": feat(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
                "label": feat(int64_list=tf.train.Int64List(value=[int(label)])),
                "shape": feat(int64_list=tf.train.Int64List(value=list(image.shape))),
            }
        )
    ).SerializeToString()


def pack(
    source: Source, out_dir: str, *, shards: int = 8, overwrite: bool = False, progress: bool = False
) -> str:
    """Write every split of ``source`` as sharded TFRecords + dataset.json; returns out_dir."""
    out_dir = str(out_dir).rstrip("/") or "/"
    if int(shards) < 1:
        raise CnnedgeError(f"shards must be >= 1, got {shards}")
    gfile = tf.io.gfile
    if "://" not in out_dir:  # replaces a pack folder only, never a file or what it reads
        check_output(out_dir, "pack folder", inputs=[source.info.source], folder=True)
    if gfile.exists(out_dir):
        if not overwrite:
            raise CnnedgeError(f"{out_dir} already exists; pass overwrite=True (--overwrite)")
        if gfile.isdir(out_dir) and gfile.listdir(out_dir) and not is_packed(out_dir):
            raise CnnedgeError(f"{out_dir} is not a cnnedge pack (no {META}); refusing to overwrite it")
    remote = "://" in out_dir
    work = out_dir if remote else f"{out_dir}.partial-{os.getpid()}"
    if not remote:  # what killed packs (of any process no longer running) left behind
        for stale in gfile.glob(f"{out_dir}.partial-*"):
            pid = stale.rsplit("-", 1)[-1]
            if stale == work or not pid.isdigit() or not os.path.exists(f"/proc/{pid}"):
                gfile.rmtree(stale)
    if remote and gfile.exists(out_dir):
        gfile.rmtree(out_dir)
    gfile.makedirs(work)
    info = source.info
    meta = {
        "format": MAGIC,
        "version": 1,
        "name": info.name,
        "packed_from": info.source,
        "source_format": info.format,
        "class_names": list(info.class_names),
        "channels": info.channels,
        "image_size": list(info.image_size) if info.image_size else None,
        "splits": {},
    }
    bar = _progress(progress)
    try:
        with bar:
            for split in source.splits:
                meta["splits"][split] = _write_split(source, split, work, int(shards), bar)
        with gfile.GFile(_join(work, META), "w") as f:  # written last
            json.dump(meta, f, indent=1)
        if not remote:
            if gfile.exists(out_dir):
                gfile.rmtree(out_dir)
            gfile.rename(work, out_dir)
    except BaseException:
        if not remote and gfile.exists(work):
            gfile.rmtree(work)
        raise
    return out_dir


def _write_split(source, split, folder, shards, bar) -> dict:
    n = source.num_examples(split)
    s = max(1, min(shards, n))
    names = [f"{split}-{k:05d}-of-{s:05d}.tfrecord" for k in range(s)]
    writers = [tf.io.TFRecordWriter(_join(folder, nm)) for nm in names]
    labels, shapes, i = [], [], 0
    task = bar.add_task(f"{source.info.name} {split}", total=n) if bar.enabled else None
    ds = source.examples(split)
    if source.info.image_size is not None:
        ds = ds.batch(256)
    try:
        with source.guard(split):
            for images, labs in ds.as_numpy_iterator():
                if images.ndim == 3:  # one variable-size example
                    images, labs = images[None], np.asarray(labs)[None]
                for img, lab in zip(images, labs):
                    writers[i % s].write(_example(img, lab))
                    labels.append(int(lab))
                    shapes.append(img.shape)
                    i += 1
                if task is not None:
                    bar.update(task, completed=i)
    finally:
        for w in writers:
            w.close()
    shapes_arr = np.array(shapes, np.int32).reshape(-1, 3)
    fixed = source.info.image_size is not None
    return {
        "count": i,
        "shards": names,
        "labels": _enc(np.array(labels, np.int32)),
        "shapes": None if fixed else _enc(shapes_arr),
    }


class _NoBar:
    enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.enabled = True
    return bar


__all__ = ["RecordSource", "is_packed", "looks_partial", "pack"]
