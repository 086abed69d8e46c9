"""`cnnedge train --data DIR`: a recipe resolved from a folder of class folders.

    recipe, notes = auto_recipe("photos/")                     # photos/<class>/*.jpg
    recipe, notes = auto_recipe("photos/", image_size="64x64", minutes=5)
    recipe, notes = resolve_recipe("cifar10", data="photos/", overrides=["train.epochs=3"])

:func:`resolve_recipe` is the recipe of ``cnnedge train``'s options, shared by the CLI and
:func:`cnnedge.train.train`: a named recipe with its dataset, time budget, weights, input size
and ``--set`` fields replaced, or without a name the automatic recipe of a folder.

The result is an ordinary :class:`~cnnedge.recipe.Recipe` (saved as the run's recipe.yaml, so
``--resume`` and ``--set`` work as with shipped recipes); ``notes`` say what was chosen and why.
RGB images start from the shipped CIFAR-10 checkpoint (its model and input size: its filters
were learned at that scale); other data trains from scratch with a model sized by image count,
at the median image size rounded to the model's total stride (capped at ``MAX_SIDE``). AdamW
with a warm-up and cosine decay does not diverge on a few hundred images the way the SGD 0.1 of
the CIFAR recipes does; epochs scale so that about ``TARGET_IMAGES`` images are seen (or fill
``minutes``, from a timed probe of a few training steps); QAT is on.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.recipe import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    OptimConfig,
    QATConfig,
    Recipe,
    TrainConfig,
    apply_overrides,
    check_field,
    load_recipe,
    parse_image_size,
    set_image_size,
)

MAX_SIDE = 64  # a scratch model's input side: larger photos are shrunk (CPU training budget)
TARGET_IMAGES = 60_000  # images seen in training: epochs = this / train images, in [10, 60]
IMBALANCE = 1.5  # largest / smallest class count from which the loss is class-weighted


def run_name(folder) -> str:
    """The data folder's name as a run/recipe name."""
    path = Path(folder).resolve()
    if path.name.lower() in ("train", "training") and path.parent.name:
        path = path.parent  # photos/train: the run is "photos"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.name).strip("._")
    return name or "data"


def scratch_model(n_images: int) -> str:
    """A family member sized by image count: fewer images, fewer parameters to fit."""
    if n_images < 2_000:
        return "gmp_xs"
    if n_images < 20_000:
        return "gmp_s"
    return "gmp_res10"


def _median_size(src) -> tuple[int, int]:
    if src.info.image_size:
        return tuple(src.info.image_size)
    shapes = src.split_index("train").shapes
    return int(np.median(shapes[:, 0])), int(np.median(shapes[:, 1]))


def _fit_side(v: float, stride: int) -> int:
    return max(stride, int(round(v / stride)) * stride)


def auto_recipe(
    folder, *, image_size=None, weights: str | None = "auto", minutes: float | None = None, data_dir=None
) -> tuple[Recipe, list[str]]:
    """(recipe, notes) for the folder of class folders ``folder`` (see the module docstring).

    ``image_size``: ``HxW`` or ``keep`` (default: from the checkpoint or the data);
    ``weights``: "auto", "none", a reference checkpoint name, a run directory or a .keras file.
    """
    from cnnedge import data

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise CnnedgeError(f"--data {folder}: not a folder (expected <folder>/<class>/<images>)")
    if minutes is not None:
        minutes = check_field("train.max_minutes", minutes, "--minutes")
    size = parse_image_size(image_size)  # a size no memory holds: refused before the scan
    src = data.open_dataset(str(path), data_dir=data_dir, keep_size=True)
    names = list(src.info.class_names)
    labels = src.split_index("train").labels
    n, k, c = len(labels), len(names), src.info.channels
    if k < 2:
        raise CnnedgeError(f"{path}: found {k} class folder(s); classification needs at least 2")
    counts = np.bincount(labels, minlength=k)
    notes = [
        f"data: {n:,} train images in {k} classes, {c} channel(s)"
        + (
            f"; its own split(s): {', '.join(s for s in src.splits if s != 'train')}"
            if len(src.splits) > 1
            else ""
        )
    ]

    model_name, weights, ref, size = _model_and_size(src, weights, size, notes)

    ratio = counts.max() / max(1, counts.min())
    weigh = bool(ratio >= IMBALANCE)
    notes.append(
        f"classes: {min(counts)}-{max(counts)} images per class (ratio {ratio:.1f})"
        + ("; the loss is weighted by inverse class frequency" if weigh else "")
    )
    has_val = "val" in src.splits
    val_fraction, n_train, batch, epochs = _schedule(n, has_val)
    rgb = c == 3
    crop = max(2, (size[0] if size != "keep" else 32) // 8)
    recipe = Recipe(
        name=run_name(path),
        description=f"automatic recipe for {path.name}: {k} classes, {n:,} images",
        data=DataConfig(
            dataset=str(path.resolve()),
            data_dir=data_dir,
            val_fraction=val_fraction,
            val_split="stratified",
            image_size=None if size == "keep" else tuple(size),
            keep_size=size == "keep",
            batch_mode="bucket" if size == "keep" else "pad",
            cache=bool(n * (64 * 64 * c if size == "keep" else size[0] * size[1] * c) < 2**30),
        ),
        model=ModelConfig(name=model_name, weights=str(weights) if weights else None),
        augment=AugmentConfig(ops=("flip", f"crop:{crop}", *(("jitter:20",) if rgb else ()))),
        optim=OptimConfig(
            name="adamw",
            lr=1e-3 if ref is not None else 2e-3,
            weight_decay=0.05,
            schedule="cosine",
            warmup_epochs=1.0,
        ),
        train=TrainConfig(epochs=epochs, batch_size=batch, label_smoothing=0.1, seed=0, class_weights=weigh),
        qat=QATConfig(enabled=True, epochs=1, lr=1e-4, calibration_images=min(500, n)),
    )
    notes.append(
        f"split: {'the folder’s val' if has_val else f'{val_fraction:.0%} of each class'}"
        f" for validation; augmentation {', '.join(recipe.augment.ops)}"
    )
    if minutes is not None:
        epochs = fit_minutes(recipe, float(minutes), k, c, n_train)
        recipe.train.epochs, recipe.train.max_minutes = epochs, float(minutes)
        notes.append(f"time budget {minutes:g} min: {epochs} epochs by a timed probe")
    notes.append(
        f"schedule: AdamW {recipe.optim.lr:g}, 1 warm-up epoch, cosine, "
        f"{recipe.train.epochs} epochs of {n_train:,} images, batch {batch}; QAT 1 epoch"
    )
    return recipe, notes


def _schedule(n: int, has_val: bool) -> tuple[float, int, int, int]:
    """(validation fraction, train images, batch size, epochs) for ``n`` images: about
    TARGET_IMAGES images seen in all, 10 to 60 epochs."""
    val_fraction = 0.0 if has_val else (0.2 if n < 5_000 else 0.1)
    n_train = int(n * (1 - val_fraction))
    batch = 64 if n_train < 5_000 else 128
    if n_train < batch:
        batch = max(8, 2 ** int(np.log2(max(1, n_train // 2))))
    epochs = int(np.clip(round(TARGET_IMAGES / max(1, n_train)), 10, 60))
    return val_fraction, n_train, batch, epochs


def _model_and_size(src, weights, size, notes: list):
    """(model name, weights, reference model or None, input size) for the data ``src``: a
    checkpoint's model and training size, or a scratch model and the data's median size."""
    from cnnedge import models
    from cnnedge import weights as refs
    from cnnedge.weights import weights_file

    labels = src.split_index("train").labels
    n, k, c = len(labels), len(src.info.class_names), src.info.channels
    ref = None
    if weights in (None, "none", ""):
        weights = None
    elif weights == "auto":
        weights = "cifar10" if c == 3 and refs.is_reference("cifar10") else None
    if weights is not None:
        ref = models.load_model(weights_file(weights), compile=False)
    if ref is not None:
        model_name = ref.name
        if model_name not in models.list_models():
            raise CnnedgeError(
                f"--weights {weights}: its model {model_name} is not a cnnedge model (see cnnedge models)"
            )
        info = refs.info(weights) if refs.is_reference(weights) else {}
        head = " with a new head" if int(ref.output_shape[-1]) != k else ""
        known = (
            f" ({info['test_accuracy']:.2%} on {info.get('dataset')})" if info.get("test_accuracy") else ""
        )
        notes.append(f"model: {model_name}, fine-tuned from the {weights} checkpoint{known}{head}")
        ref_size = ref.input_shape[1:3]
        if size is None:
            size = tuple(info.get("image_size") or ()) or (tuple(ref_size) if None not in ref_size else None)
            if size:
                notes.append(
                    f"input: {size[0]}x{size[1]}, the checkpoint's training size "
                    f"(--image-size HxW|keep to change)"
                )
    else:
        model_name = scratch_model(n)
        notes.append(f"model: {model_name} from scratch, sized for {n:,} images")
    stride = models.total_stride(models.create_model(model_name, num_classes=k, channels=c))
    if size is None:
        h, w = _median_size(src)
        s = min(1.0, MAX_SIDE / max(h, w))
        size = (_fit_side(h * s, stride), _fit_side(w * s, stride))
        notes.append(
            f"input: {size[0]}x{size[1]} from the median image size {h}x{w} "
            f"(multiple of the total stride {stride}, at most {MAX_SIDE})"
        )
    elif size == "keep":
        notes.append("input: each image at its own size (padded in batches)")
    return model_name, weights, ref, size


def resolve_recipe(
    recipe: Recipe | str | None = None,
    *,
    data=None,
    weights: str | None = None,
    minutes: float | None = None,
    image_size=None,
    overrides: Sequence[str] = (),
) -> tuple[Recipe, list[str]]:
    """The recipe ``cnnedge train`` runs for these options, and the notes of an automatic one.

    Args:
        recipe: A :class:`~cnnedge.recipe.Recipe`, a shipped recipe's name or a ``.py`` file;
            None: the automatic recipe of the folder ``data`` (:func:`auto_recipe`).
        data: A dataset name or a folder of class folders: the recipe's ``data.dataset``, or
            without ``recipe`` the folder to make a recipe for.
        weights: Initial weights (``model.weights``): a reference checkpoint's name, a run
            directory, a ``.keras`` file or ``none``; default without ``recipe``: ``auto``.
        minutes: The float phase's time budget (``train.max_minutes``); without ``recipe``
            the epochs are chosen to fit it too.
        image_size: ``HxW`` or ``keep`` (``data.image_size``).
        overrides: ``section.field=value`` strings applied last (``--set``).

    Returns:
        (recipe, notes): the recipe, not yet range-checked as a whole
        (:func:`cnnedge.recipe.check`), and one line per choice an automatic recipe made
        (empty for a named one).

    Raises:
        CnnedgeError: neither ``recipe`` nor ``data``, an unknown recipe, a bad value.
    """
    notes: list[str] = []
    if not recipe and data is None:
        raise CnnedgeError(
            "give --data FOLDER (a folder of class folders), --recipe NAME "
            "(see `cnnedge recipes`) or --resume RUN_DIR"
        )
    if recipe:
        r = recipe if isinstance(recipe, Recipe) else load_recipe(str(recipe))
        if data is not None:
            r = apply_overrides(r, [f"data.dataset={data}"])
        if minutes is not None:
            r = apply_overrides(r, [f"train.max_minutes={minutes}"])
    else:
        r, notes = auto_recipe(data, image_size=image_size, weights=weights or "auto", minutes=minutes)
    r = set_image_size(r, parse_image_size(image_size))
    if weights is not None and recipe:
        r = apply_overrides(r, [f"model.weights={weights}"])
    if overrides:
        r = apply_overrides(r, list(overrides))
    return r, notes


def fit_minutes(recipe: Recipe, minutes: float, k: int, c: int, n_train: int) -> int:
    """Epochs that fit ``minutes``: a few timed training steps of the recipe's model at its
    input size over ``n_train`` images an epoch (validation and QAT not counted)."""
    from cnnedge import models
    from cnnedge.backend import keras

    h, w = recipe.data.image_size or (64, 64)
    b = recipe.train.batch_size
    model = models.create_model(recipe.model.name, num_classes=k, channels=c)
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-3), loss=keras.losses.CategoricalCrossentropy(from_logits=True)
    )
    x = np.random.default_rng(0).integers(0, 256, (b, h, w, c)).astype(np.float32)
    y = np.eye(k, dtype=np.float32)[np.arange(b) % k]
    model.train_on_batch(x, y)  # traces the step
    t = time.perf_counter()
    for _ in range(3):
        model.train_on_batch(x, y)
    per_step = (time.perf_counter() - t) / 3
    steps = max(1, n_train // b)
    epoch = steps * per_step * 1.25  # + input pipeline and validation
    return int(np.clip(minutes * 60 / epoch, 1, 200))
