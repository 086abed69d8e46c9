"""Typed training recipes: plain dataclasses, overridable from the command line.

A recipe is a Python module in ``recipes/`` (installed as ``cnnedge.recipes``) that defines
``RECIPE = Recipe(...)``. ``load_recipe("fashion_mnist")`` imports it; a path to a ``.py`` file
works too. ``apply_overrides(recipe, ["train.epochs=3"])`` sets fields with type checks:
no ``eval``, values are parsed by the field's declared type (dict fields take a YAML mapping).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

import yaml

from cnnedge.errors import CnnedgeError
from cnnedge.fields import coerce, parse_for_type
from cnnedge.files import atomic_write_text
from cnnedge.numbers import Range, number
from cnnedge.utils import did_you_mean, unknown


@dataclass
class DataConfig:
    dataset: str = "fashion-mnist"  # a name (fashion-mnist, cifar10) or a path
    data_dir: Optional[str] = None  # searched first for the dataset's files
    val_fraction: float = 0.1  # carved from train; checkpoints are chosen on it
    val_split: Literal["random", "stratified"] = "random"  # stratified: each class its share
    image_size: Optional[Tuple[int, int]] = None  # resize (H, W); None keeps the source size
    keep_size: bool = False  # variable-size images at their own size (GMP models accept any H×W)
    # keep_size batches: "bucket" groups similar sizes (little padding, faster), "pad" pads each
    # random batch to its largest image
    batch_mode: Literal["pad", "bucket"] = "pad"
    cache: bool = False  # cache decoded images in memory after the first epoch
    # 1: colour images become one grey channel (luma, as the exported model's GRAY colour order
    # tells predict and the demo); 3: grey images become RGB; None: the data's own channels
    channels: Optional[Literal[1, 3]] = None


@dataclass
class ModelConfig:
    name: str = "gmp_s"  # a name from `cnnedge models` / cnnedge.models.list_models()
    kwargs: Dict[str, Any] = field(default_factory=dict)  # builder keyword arguments
    # initial weights (fine-tuning): a run dir (its best.keras) or a .keras file of this model
    weights: Optional[str] = None


@dataclass
class AugmentConfig:
    ops: Tuple[str, ...] = ()  # e.g. ("flip", "pad_crop:2"); see cnnedge.data.augment
    # mixing two training images and their labels (cnnedge.data.mix); never in QAT
    mixup: float = 0.0  # Beta(a, a) of the mixup weight (e.g. 0.4; 0 = off)
    cutmix: float = 0.0  # Beta(a, a) of the CutMix box (e.g. 1.0; 0 = off); both: either, 50:50
    mix_prob: float = 1.0  # share of images mixed once the ramp is done
    mix_ramp: Tuple[float, float] = (0.0, 0.0)  # fractions of train.epochs: 0 until [0], full at [1]

    @property
    def mixes(self) -> bool:
        """Whether training images are mixed at all."""
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0


@dataclass
class OptimConfig:
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 0.0  # decoupled: each step w -= lr * weight_decay * w (all optimizers)
    momentum: float = 0.9  # sgd only (Nesterov)
    schedule: Literal["constant", "cosine"] = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up before the cosine decay


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    label_smoothing: float = 0.0
    seed: int = 0
    steps_per_epoch: Optional[int] = None  # None: one pass over train; set it for smoke runs
    eval_images: Optional[int] = None  # None: the whole val/test split
    class_weights: bool = False  # weigh the loss by inverse class frequency (imbalanced data)
    max_minutes: Optional[float] = None  # time budget: no epoch starts that would overrun it
    ema: float = 0.0  # weight EMA decay (e.g. 0.999; 0 = off): best.keras is the average
    ema_bn_images: int = 0  # with ema: recompute best.keras's BN statistics on N train images


@dataclass
class QATConfig:
    enabled: bool = False  # run quantization-aware fine-tuning as the last phase of `train`
    epochs: int = 2
    lr: float = 1e-4
    calibration_images: int = 500  # representative images (class-balanced) for int8 conversion


@dataclass
class DistillConfig:
    teachers: Tuple[str, ...] = ()  # run dirs, .keras files, reference names; () = off
    temperature: float = 4.0  # softens teacher and student logits in the KD term
    alpha: float = 0.9  # weight of the KD term; 1 - alpha weighs the label cross-entropy
    # teachers also label the mirror image of each view and their logits are averaged (flip
    # test-time augmentation of the teachers); only for data whose mirror keeps the label
    teacher_flip: bool = False


@dataclass
class Recipe:
    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    qat: QATConfig = field(default_factory=QATConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)


# ------------------------------------------------------------------------------ ranges
MAX_EPOCHS = 100_000
MAX_IMAGES = 10**9
# every numeric field's range: --set, a run's recipe.yaml, a recipe module and the CLI options
# that set a field (quantize --lr, train --minutes) are all checked by cnnedge.numbers.number
FIELDS = {
    "data.val_fraction": Range(0, 1, hi_open=True),
    "optim.lr": Range(0, 10, note="0 keeps the start weights"),
    "optim.weight_decay": Range(0, 1),
    "optim.momentum": Range(0, 1, hi_open=True),
    "optim.warmup_epochs": Range(0, MAX_EPOCHS),
    "augment.mixup": Range(0, 100, note="0 = off"),
    "augment.cutmix": Range(0, 100, note="0 = off"),
    "augment.mix_prob": Range(0, 1),
    "augment.mix_ramp": Range(0, 1),  # each of the two fractions
    "train.epochs": Range(1, MAX_EPOCHS, integer=True),
    "train.batch_size": Range(1, 65536, integer=True),
    "train.label_smoothing": Range(0, 1, hi_open=True),
    "train.seed": Range(0, 2**32 - 1, integer=True),  # what NumPy and TensorFlow seed with
    "train.steps_per_epoch": Range(1, MAX_IMAGES, integer=True, optional=True, note="one pass"),
    "train.eval_images": Range(1, MAX_IMAGES, integer=True, optional=True, note="the whole split"),
    "train.max_minutes": Range(0, 10**7, lo_open=True, optional=True),
    "train.ema": Range(0, 1, hi_open=True),
    "train.ema_bn_images": Range(0, MAX_IMAGES, integer=True, note="0 = off"),
    "qat.epochs": Range(1, MAX_EPOCHS, integer=True),
    "qat.lr": Range(0, 10, lo_open=True),
    "qat.calibration_images": Range(1, 100_000, integer=True),
    "distill.temperature": Range(0, 100, lo_open=True),
    "distill.alpha": Range(0, 1),
}
# what `check` enforces beyond each number's range: (key, test, what the value must be)
SHAPES = (
    ("data.image_size", lambda v: v is None or min(v) >= 1, "two sizes >= 1, or none"),
    (
        "augment.mix_ramp",
        lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and 0 <= v[0] <= v[1] <= 1 and v[0] < 1,
        "two fractions 0 <= start <= full <= 1, start < 1",
    ),
)


def check_field(key: str, value, name: str | None = None):
    """``value`` checked against recipe field ``key``'s range, named ``name`` (a flag) or the key."""
    return number(value, name or key, FIELDS[key])


def _value(recipe, key: str):
    for part in key.split("."):
        recipe = getattr(recipe, part)
    return recipe


def check(recipe: Recipe) -> Recipe:
    """Refuse values outside their range (one line naming the key) before anything runs."""
    for key, rng in FIELDS.items():
        value = _value(recipe, key)
        try:
            for v in value if isinstance(value, (list, tuple)) else [value]:
                number(v, key, rng)
        except CnnedgeError as e:
            raise CnnedgeError(f"recipe {recipe.name}: {e}") from None
    for key, ok, what in SHAPES:
        value = _value(recipe, key)
        if not ok(value):
            raise CnnedgeError(f"recipe {recipe.name}: {key}={value!r} is out of range; it must be {what}")
    d = recipe.data
    if recipe.augment.mixes and d.keep_size and d.batch_mode == "pad":
        raise CnnedgeError(
            f"recipe {recipe.name}: augment.mixup/cutmix mix the images of a batch, "
            "which data.batch_mode=pad pads to one size; set data.batch_mode=bucket"
        )
    start, full = recipe.augment.mix_ramp
    last = (recipe.train.epochs - 1) / recipe.train.epochs  # where the last epoch starts
    if recipe.augment.mixes and (last < start or (full > start and last == start)):
        raise CnnedgeError(
            f"recipe {recipe.name}: augment.mix_ramp starts at {start} of "
            f"train.epochs={recipe.train.epochs}, after the last epoch begins, so "
            "no image would be mixed; start it earlier"
        )
    if recipe.train.ema_bn_images and not recipe.train.ema:
        raise CnnedgeError(
            f"recipe {recipe.name}: train.ema_bn_images recomputes the BN "
            "statistics of the weight average; set train.ema too (e.g. 0.999)"
        )
    if d.image_size:  # a batch no memory holds: refused before the data is opened
        from cnnedge.limits import check_input_size

        check_input_size(
            d.image_size,
            batch=recipe.train.batch_size,
            what=f"recipe {recipe.name}: data.image_size",
            hint="choose a smaller data.image_size or train.batch_size",
        )
    return recipe


# ----------------------------------------------------------------------------- lookup
def list_recipes() -> List[str]:
    import cnnedge.recipes as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name (``fashion_mnist``), a user's ``.py`` file defining RECIPE, or a
    ``.yaml`` recipe (a run's ``recipe.yaml``, ``cnnedge tune``'s ``winner.yaml``: data
    only, nothing executed)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise CnnedgeError(f"recipe file not found: {path}")
        return load_yaml(path)
    if name_or_path.endswith(".py"):
        if not path.is_file():
            raise CnnedgeError(f"recipe file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"cnnedge_user_recipe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as e:  # a user's file: report, don't crash
            raise CnnedgeError(f"recipe file {path} failed to import: {type(e).__name__}: {e}")
    else:
        key = name_or_path.replace("-", "_")
        names = list_recipes()
        if key not in names:
            raise unknown("recipe", name_or_path, names)
        module = importlib.import_module(f"cnnedge.recipes.{key}")
    recipe = getattr(module, "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise CnnedgeError(f"recipe module {name_or_path} does not define RECIPE = Recipe(...)")
    return dataclasses.replace(recipe)


# ----------------------------------------------------------------------------- (de)serialise
def to_dict(recipe: Recipe) -> dict:
    return _plain(dataclasses.asdict(recipe))


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def from_dict(d: dict) -> Recipe:
    """Rebuild a Recipe from ``to_dict`` output (as saved in a run's recipe.yaml)."""
    return _build(Recipe, d, "")


def _build(cls, d, prefix):
    if not isinstance(d, dict):
        raise CnnedgeError(f"recipe section '{prefix or 'root'}' must be a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key not in names:
            raise CnnedgeError(_unknown_key(prefix + key, cls, prefix))
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = coerce(value, tp, prefix + key, FIELDS)
    missing = [
        f.name
        for f in dataclasses.fields(cls)
        if f.name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise CnnedgeError(f"recipe section '{prefix or 'root'}' lacks {', '.join(missing)}")
    return cls(**kwargs)


def save_yaml(recipe: Recipe, path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(to_dict(recipe), sort_keys=False))


def load_yaml(path: Path) -> Recipe:
    """A run's ``recipe.yaml``; any fault is one line naming the file (and line, column)."""
    try:
        d = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise CnnedgeError(f"cannot read recipe {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise CnnedgeError(f"cannot read recipe {path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise CnnedgeError(f"cannot read recipe {path}: {_yaml_fault(e)}") from None
    if d is None:
        raise CnnedgeError(f"recipe {path} is empty")
    try:
        return from_dict(d)
    except CnnedgeError as e:
        raise CnnedgeError(f"recipe {path}: {e}") from None


def _yaml_fault(e: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here`` from PyYAML's many lines."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    cause = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{' '.join(str(cause).split())}"


# ----------------------------------------------------------------------------- overrides
def parse_image_size(text) -> Tuple[int, int] | str | None:
    """The one image-size syntax of every command and of ``--set data.image_size=``: ``HxW``
    (``64x48``; ``64,48`` and a square ``64`` too), or ``keep`` (each image at its own size)."""
    if text is None or str(text).strip() == "":
        return None
    if isinstance(text, (list, tuple)):
        text = ",".join(str(v) for v in text)
    t = str(text).strip().lower().strip("[]()")
    if t == "keep":
        return "keep"
    parts = [p.strip() for p in t.replace(",", "x").replace("×", "x").split("x")]
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise CnnedgeError(f"image size must be HxW like 64x64, or keep; got '{text}'")
    from cnnedge.limits import check_input_size

    check_input_size((int(parts[0]), int(parts[1])), what="")  # one no memory holds: refused
    return int(parts[0]), int(parts[1])


def set_image_size(recipe: Recipe, size) -> Recipe:
    """``recipe`` with ``data.image_size`` set from :func:`parse_image_size` output."""
    if size is None:
        return recipe
    data = recipe.data
    if size == "keep":  # size-bucketed batches: far less padding than random batches
        data = dataclasses.replace(data, image_size=None, keep_size=True, batch_mode="bucket")
    else:
        data = dataclasses.replace(data, image_size=tuple(size), keep_size=False)
    return dataclasses.replace(recipe, data=data)


def apply_overrides(recipe: Recipe, overrides: List[str]) -> Recipe:
    """Apply ``section.field=value`` strings; values are checked against the field's type."""
    recipe = from_dict(to_dict(recipe))  # deep copy
    for item in overrides:
        if "=" not in item:
            raise CnnedgeError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key == "data.image_size" and raw.strip().lower() not in ("none", "null", "~", ""):
            recipe = set_image_size(recipe, parse_image_size(raw))  # 64x64 | keep, as elsewhere
            continue
        parts = key.split(".")
        obj, cls = recipe, Recipe
        for i, part in enumerate(parts):
            if isinstance(obj, dict):  # model.kwargs.<name>=value: a free-form builder argument
                obj[".".join(parts[i:])] = _valued(recipe, key, _parse_scalar, raw)
                break
            names = [f.name for f in dataclasses.fields(cls)]
            if part not in names:
                raise CnnedgeError(_unknown_key(key, cls, ".".join(parts[:i]) + "." if i else ""))
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                if dataclasses.is_dataclass(tp):
                    raise CnnedgeError(
                        f"'{key}' is a section; set one of its fields, e.g. "
                        f"{key}.{dataclasses.fields(tp)[0].name}=..."
                    )
                setattr(
                    obj,
                    part,
                    _valued(recipe, key, lambda r: coerce(parse_for_type(r, tp, key), tp, key, FIELDS), raw),
                )
            else:
                obj = getattr(obj, part)
                cls = type(obj) if dataclasses.is_dataclass(obj) else dict
                if not dataclasses.is_dataclass(obj) and not isinstance(obj, dict):
                    raise CnnedgeError(f"'{'.'.join(parts[: i + 1])}' is a value, not a section")
    return recipe


def _valued(recipe: Recipe, key: str, parse, raw: str):
    """``parse(raw)``; a bad value names the recipe as :func:`check` does. Numbers of free-form
    builder arguments (model.kwargs) are finite too."""
    try:
        value = parse(raw)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = number(value, key, Range(integer=isinstance(value, int)))
        return value
    except CnnedgeError as e:
        raise CnnedgeError(f"recipe {recipe.name}: {e}") from None


def _unknown_key(key: str, cls, prefix: str) -> str:
    candidates = _all_keys(Recipe)
    hint = did_you_mean(key, candidates)
    did = f"; did you mean '{hint}'?" if hint else ""
    local = ", ".join(prefix + f.name for f in dataclasses.fields(cls))
    return f"unknown recipe key '{key}'{did} (valid here: {local})"


def _all_keys(cls, prefix="") -> List[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _all_keys(hints[f.name], prefix + f.name + ".")
        else:
            out.append(prefix + f.name)
    return out


def _parse_scalar(raw: str):
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
