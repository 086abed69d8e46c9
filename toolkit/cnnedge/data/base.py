"""The :class:`Source` every format returns, split carving and the batched tf.data pipeline.

A format subclass describes each split *found in its files* (a "base" split) by a small index
(labels in file order, optionally per-example shapes) and provides two things:

* ``_base_raw(base)``: an unbatched ``tf.data.Dataset`` of cheap raw elements in file order
  (record bytes, file paths, serialized examples ...);
* either ``_decode_batch(*raw_batch)`` (vectorized: decode a whole batch of raw elements at
  once, used when every image has the same size) or ``_decode_one(*raw)`` (per example).

Everything else -- "val" carved from "train", ``take``, ``cache``, shuffling raw elements
before decoding, batching (fixed, padded or size-bucketed), augmentation, prefetch and turning
``tf.errors`` into :class:`CnnedgeError` -- lives here once.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np

from cnnedge.backend import tf
from cnnedge.errors import CnnedgeError, one_line
from cnnedge.utils import stratified_positions, unknown

AUTOTUNE = -1  # == tf.data.AUTOTUNE, without importing TensorFlow
SPLIT_ORDER = ("train", "val", "test")
_SHUFFLE_BYTES = 256 << 20  # shuffle buffers hold at most this many bytes of raw elements


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    source: str
    format: str
    class_names: tuple[str, ...]
    channels: int
    image_size: tuple[int, int] | None
    split_sizes: dict[str, int] = field(default_factory=dict)


@dataclass
class SplitIndex:
    """One split: which examples of a base split it holds, and their labels/shapes."""

    base: str
    labels: np.ndarray  # int32 [N], labels of the selected examples in file order
    select: np.ndarray | None = None  # sorted int64 positions in the base split; None = all
    shapes: np.ndarray | None = None  # int32 [N, 3] output (H, W, C) when sizes vary


def carve_val(n: int, fraction: float, seed: int, labels=None) -> np.ndarray:
    """Sorted positions (of ``n`` train examples) that form "val"; same for the same seed.
    With ``labels`` (stratified) each class gives its own share, at least one image of a class
    with two or more and never all of it, so a small or imbalanced folder keeps every class in
    both train and val."""
    if not 0.0 <= fraction < 1.0:
        raise CnnedgeError(f"val_fraction must be in [0, 1), got {fraction}")
    n_val = round(n * fraction)
    fix = "add images, or train without validation (--set data.val_fraction=0)"
    if fraction > 0 and (n_val == 0 or n_val >= n):
        raise CnnedgeError(f"val_fraction={fraction} of {n} train examples leaves an empty split; {fix}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7A1]))
    if labels is not None:
        labels = np.asarray(labels)
        out = []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            k = int(np.clip(round(len(idx) * fraction), 1 if len(idx) >= 2 else 0, max(0, len(idx) - 1)))
            out.append(rng.permutation(idx)[:k])
        val = np.sort(np.concatenate(out)).astype(np.int64)
        if not len(val):  # a class gives val an image only when it has two or more
            raise CnnedgeError(
                f"no class has more than one image, so a validation split "
                f"(val_fraction={fraction}) would be empty; {fix}"
            )
        return val
    perm = rng.permutation(n)
    return np.sort(perm[:n_val]).astype(np.int64)


def make_splits(
    base: dict[str, SplitIndex], val_fraction: float, seed: int, stratified: bool = False
) -> dict:
    """Add a deterministic "val" carved from "train" (and removed from it)."""
    if not 0.0 <= val_fraction < 1.0:
        raise CnnedgeError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return dict(base)
    if "train" not in base:
        raise CnnedgeError("val_fraction needs a 'train' split; found: " + ", ".join(base))
    if "val" in base:
        raise CnnedgeError("the dataset already has a 'val' split; use val_fraction=0")
    tr = base["train"]
    n = len(tr.labels)
    val_pos = carve_val(n, val_fraction, seed, tr.labels if stratified else None)
    keep = np.ones(n, bool)
    keep[val_pos] = False
    train_pos = np.flatnonzero(keep).astype(np.int64)

    def sub(pos):
        sel = pos if tr.select is None else tr.select[pos]
        shapes = None if tr.shapes is None else tr.shapes[pos]
        return SplitIndex(tr.base, tr.labels[pos], sel, shapes)

    out = {k: v for k, v in base.items() if k != "train"}
    out["train"], out["val"] = sub(train_pos), sub(val_pos)
    return {k: out[k] for k in sorted(out, key=_split_key)}


def _split_key(name: str):
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def select_positions(ds, n_base: int, positions: np.ndarray):
    """Keep only elements whose position in ``ds`` is in ``positions`` (streaming filter)."""
    mask = np.zeros(n_base, bool)
    mask[positions] = True
    flags = tf.data.Dataset.from_tensor_slices(mask)
    # vectorized: mask whole chunks (a per-element filter predicate costs ~25 us per element)
    chunks = tf.data.Dataset.zip((ds, flags)).batch(1024)
    return chunks.map(lambda x, keep: tf.nest.map_structure(lambda t: tf.boolean_mask(t, keep), x)).unbatch()


class Source:
    """A dataset opened by :func:`cnnedge.data.open_dataset`; streams from its files."""

    vectorized = True  # subclasses decoding per example set False
    raw_bytes = 4096  # rough size of one raw element, to size shuffle buffers

    def __init__(
        self,
        *,
        name,
        source,
        format,
        class_names,
        channels,
        image_size,
        splits: dict[str, SplitIndex],
        base_counts: dict[str, int],
        keep_size=False,
        batch_mode="pad",
        resize=None,
    ):
        if batch_mode not in ("pad", "bucket"):
            raise CnnedgeError(f"batch_mode must be 'pad' or 'bucket', got {batch_mode!r}")
        self._splits = splits
        self._base_counts = base_counts
        self.keep_size = keep_size
        self.batch_mode = batch_mode
        self._resize = tuple(int(v) for v in resize) if resize else None
        self._channels: tuple[int, int] | None = None  # (decoded, delivered): with_channels
        self.info = DatasetInfo(
            name=name,
            source=str(source),
            format=format,
            class_names=tuple(class_names),
            channels=int(channels),
            image_size=tuple(int(v) for v in image_size) if image_size else None,
            split_sizes={k: len(v.labels) for k, v in splits.items()},
        )

    def __repr__(self):
        return f"<Source {self.info.name} ({self.info.format}) {self.info.split_sizes}>"

    # ----------------------------------------------------------------- subclass API
    def _base_raw(self, base: str):
        raise NotImplementedError

    def _decode_batch(self, *raw):
        raise NotImplementedError

    def _decode_one(self, *raw):
        raise NotImplementedError

    def _explain(self, split: str | None, err) -> str:
        return one_line(getattr(err, "message", err), limit=None)

    def carve_val(self, fraction: float, seed: int = 0) -> Source:
        """Carve a class-stratified "val" from "train" (opened with val_fraction=0)."""
        import dataclasses

        self._splits = make_splits(self._splits, fraction, seed, stratified=True)
        self.info = dataclasses.replace(
            self.info, split_sizes={k: len(v.labels) for k, v in self._splits.items()}
        )
        return self

    # ----------------------------------------------------------------- helpers
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self._splits)

    def split_index(self, split: str) -> SplitIndex:
        if split not in self._splits:
            raise unknown("split", split, list(self._splits), of=f"dataset {self.info.name}")
        return self._splits[split]

    def num_examples(self, split: str) -> int:
        return len(self.split_index(split).labels)

    def _raw(self, split: str):
        idx = self.split_index(split)
        ds = self._base_raw(idx.base)
        if idx.select is not None:
            ds = select_positions(ds, self._base_counts[idx.base], idx.select)
        return ds

    def with_channels(self, channels: int) -> Source:
        """Decode to ``channels`` (1: colour to grey luma, 3: grey to RGB); the data's own when
        it already has them."""
        import dataclasses

        if int(channels) not in (1, 3):
            raise CnnedgeError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
        decoded = self.decoded_channels
        self._channels = None if int(channels) == decoded else (decoded, int(channels))
        self.info = dataclasses.replace(self.info, channels=int(channels))
        return self

    @property
    def decoded_channels(self) -> int:
        """The channels the files decode to (``info.channels`` is what :meth:`with_channels`
        converts them to)."""
        return self._channels[0] if self._channels else self.info.channels

    def _convert_channels(self, images):
        if self._channels is None:
            return images
        if self._channels == (3, 1):  # ITU-R 601 luma, what OpenCV's BGR2GRAY computes too
            return tf.image.rgb_to_grayscale(images)
        return tf.image.grayscale_to_rgb(images)

    def _resize_images(self, images):
        images = self._convert_channels(images)
        if self._resize is None:
            return images
        # antialiased: shrinking a photo averages its pixels (what cnnedge.preprocess does too)
        out = tf.image.resize(images, self._resize, antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)

    def _decode_batch_resized(self, *raw):
        images, labels = self._decode_batch(*raw)
        return self._resize_images(images), labels

    def _decode_one_resized(self, *raw):
        image, label = self._decode_one(*raw)
        image = self._resize_images(image)
        if self.info.image_size is not None:
            image = tf.ensure_shape(image, [*self.info.image_size, self.info.channels])
        return image, label

    def _shuffle_buffer(self, n: int, element_bytes: int) -> int:
        return int(max(1, min(n, max(1024, _SHUFFLE_BYTES // max(1, element_bytes)))))

    # ----------------------------------------------------------------- public API
    def examples(self, split: str):
        """Unbatched ``(uint8 [H,W,C], int32 label)`` in file order (deterministic)."""
        ds = self._raw(split)
        if self.vectorized:
            return ds.batch(512).map(self._decode_batch_resized, num_parallel_calls=AUTOTUNE).unbatch()
        return ds.map(self._decode_one_resized, num_parallel_calls=AUTOTUNE)

    def pipeline(
        self,
        split: str,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment=None,
        cache: bool = False,
        repeat: bool = False,
        drop_remainder: bool = False,
        take: int | None = None,
    ):
        """Batched ``(uint8 [B,H,W,C], int32 [B])``: raw elements are shuffled, then decoded."""
        if int(batch_size) < 1:
            raise CnnedgeError(f"batch_size must be >= 1, got {batch_size}")
        n = self.num_examples(split)
        ds = self._raw(split)
        if take is not None:
            if int(take) < 1:
                raise CnnedgeError(f"take must be >= 1, got {take}")
            if int(take) < n:  # a seeded class-stratified sample, never the first N of a sorted folder
                keep = stratified_positions(self.split_index(split).labels, int(take), seed=0)
                ds = select_positions(ds, n, keep)
                n = len(keep)
        decoded = False
        elem_bytes = self.raw_bytes
        if cache:
            if not self.vectorized:  # decoding is the expensive part: cache decoded images
                ds = ds.map(self._decode_one_resized, num_parallel_calls=AUTOTUNE)
                decoded = True
                h, w = self.info.image_size or (64, 64)
                elem_bytes = h * w * self.info.channels
            ds = ds.cache()
        if shuffle:
            ds = ds.shuffle(
                self._shuffle_buffer(n, elem_bytes), seed=int(seed), reshuffle_each_iteration=True
            )
        if repeat:
            ds = ds.repeat()
        if self.vectorized:
            ds = ds.batch(batch_size, drop_remainder=drop_remainder)
            ds = ds.map(self._decode_batch_resized, num_parallel_calls=AUTOTUNE)
        else:
            if not decoded:
                ds = ds.map(self._decode_one_resized, num_parallel_calls=AUTOTUNE)
            ds = self._batch_decoded(ds, batch_size, drop_remainder)
        if augment is not None:
            ds = apply_augment(ds, augment, seed)
        return ds.prefetch(AUTOTUNE)

    def _batch_decoded(self, ds, batch_size, drop_remainder):
        if self.info.image_size is not None:
            return ds.batch(batch_size, drop_remainder=drop_remainder)
        if not self.keep_size:  # open_dataset refuses this; keep a clear message anyway
            raise CnnedgeError(
                f"images of {self.info.source} differ in size; pass image_size=(H, W) or keep_size=True"
            )
        c = self.info.channels
        if self.batch_mode == "pad":
            return ds.padded_batch(
                batch_size, padded_shapes=([None, None, c], []), drop_remainder=drop_remainder
            )

        def key(image, label):
            s = tf.cast(tf.shape(image), tf.int64)
            return s[0] * 1_000_003 + s[1]

        return ds.group_by_window(
            key_func=key,
            window_size=batch_size,
            reduce_func=lambda _k, w: w.batch(batch_size, drop_remainder=drop_remainder),
        )

    @contextlib.contextmanager
    def guard(self, split: str | None = None):
        """Turn TensorFlow errors raised while iterating this source into :class:`CnnedgeError`."""
        try:
            yield
        except CnnedgeError:
            raise
        except Exception as e:  # only tf.errors are translated
            errors = tf.errors
            lost = (errors.UnavailableError, errors.AbortedError, errors.DeadlineExceededError)
            if isinstance(e, lost):  # a peer of a multi-worker job, not a file
                why = one_line(str(e.message).split("{{")[0] + str(e.message).split("}}")[-1])
                raise CnnedgeError(
                    f"training stopped, a worker was lost ({type(e).__name__}: "
                    f"{why[:200]}); restart every worker with the same command "
                    f"to continue from the last finished epoch"
                ) from None
            if isinstance(e, errors.OpError):
                raise CnnedgeError(one_line(self._explain(split, e), limit=None)) from None
            raise


def apply_augment(ds, augment, seed: int):
    """Map ``augment`` over batches; cnnedge augmenters get a per-batch seed (epoch-varying)."""
    if getattr(augment, "cnnedge_seeded", False):
        seeds = tf.data.Dataset.random(seed=int(seed) + 1, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds))
        return ds.map(lambda batch, s: augment(batch[0], batch[1], seed=s), num_parallel_calls=AUTOTUNE)
    return ds.map(lambda images, labels: tuple(augment(images, labels)), num_parallel_calls=AUTOTUNE)
