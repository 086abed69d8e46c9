"""What every format writer shares: the models, the calibration images and the metadata.

``resolve()`` turns a run directory (its best float model, its QAT model when it has one, its
recipe, class names and summary) or a bare ``.keras``/``.h5`` file into a :class:`Job`; the
writers in :mod:`cnnedge.export.tflite` and :mod:`cnnedge.export.onnx` convert from it and
cache what they share (the int8 TFLite feeds the int8 ONNX).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnedge.artifacts import INPUT_NAME, OUTPUT_NAME
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run


@dataclass
class Job:
    """Everything the format writers share: models, calibration, metadata, caches."""

    float_path: Path
    qat_path: Path | None
    run: Run | None
    class_names: list[str]
    image_size: list[int] | None
    recipe: str | None
    params: int | None
    macs: int | None
    calibration: object  # None | dataset spec | array | _RecipeData, resolved lazily
    opset: int
    int8_method: str
    calibration_images: int
    float_model: object = None
    qat_model: object = None
    channels: int = 1
    dynamic_hw: bool = True
    min_input_size: int = 1
    owner: Run | None = None  # the run the model comes from: ``run``, or a model file's run
    cache: dict = field(default_factory=dict)

    @property
    def int8_source(self) -> str:
        return "qat" if self.qat_path is not None else "ptq"

    # ---------------------------------------------------------------- metadata
    def metadata(self, fmt: str, precision: str, source: str, **io) -> dict:
        import cnnedge

        meta = {
            "cnnedge_version": cnnedge.__version__,
            "format": fmt,
            "precision": precision,
            "source": source,
            "class_names": list(self.class_names),
            "input_layout": "NHWC",
            "channels": self.channels,
            "input_name": INPUT_NAME,
            "output_name": OUTPUT_NAME,
            "input_dtype": "float32",
            "input_scale": None,
            "input_zero_point": None,
            "output_dtype": "float32",
            "output_scale": None,
            "output_zero_point": None,
            "pixel_range": [0, 255],
            "dynamic_hw": self.dynamic_hw,
            "min_input_size": self.min_input_size,
            **self.preprocessing(),
            "recipe": self.recipe,
            "source_run": str(self.run.path) if self.run else None,
            "source_model": str(self.float_path if source != "qat" else self.qat_path),
            "params": self.params,
            "macs_per_image": self.macs,
        }
        meta.update(io)
        return meta

    def preprocessing(self) -> dict:
        """Size policy, resize, colour order, background: the run's, else plain defaults."""
        pre = {
            "size_policy": "fixed",
            "resize": "stretch",
            "background": "dark" if self.channels == 1 else None,
        }
        if self.owner is not None:  # the run's, also for one of its model files exported alone
            pre = self.owner.preprocessing()
        return {**pre, "image_size": self.image_size, "color_order": "GRAY" if self.channels == 1 else "RGB"}

    # ---------------------------------------------------------------- calibration
    def calib(self) -> list[np.ndarray]:
        """Calibration images as a list of uint8 [1, H, W, C] (0 and 255 both present)."""
        if "calib" in self.cache:
            return self.cache["calib"]
        spec = self.calibration
        if spec is None:
            raise CnnedgeError(
                "int8 export needs calibration data: pass --data <dataset name "
                "or path> (calibration=...) or export a run directory"
            )
        from cnnedge.quantize import representative_images

        if isinstance(spec, (str, Path)):
            from cnnedge import data

            src = data.open_dataset(
                str(spec),
                image_size=self.image_size if self.image_size and not self.dynamic_hw else None,
                channels=self.channels,  # colour data calibrates a grey model as grey
            )
            if src.info.channels != self.channels:
                raise CnnedgeError(
                    f"calibration data {spec} has {src.info.channels} channel(s) "
                    f"but the model expects {self.channels}"
                )
            split = "train" if "train" in src.info.split_sizes else src.splits[0]
            images = representative_images(src, self.calibration_images, seed=0, split=split)
        elif isinstance(spec, Run):  # a run's recipe: the train split of its dataset
            recipe = spec.recipe
            images = representative_images(
                spec.open_data(), recipe.qat.calibration_images, seed=recipe.train.seed
            )
        elif hasattr(spec, "pipeline") and hasattr(spec, "info"):  # an opened Source
            images = representative_images(spec, self.calibration_images, seed=0)
        else:
            images = spec
        imgs = [_as_image(np.asarray(x), self.channels) for x in images]
        if not imgs:
            raise CnnedgeError("calibration data holds no images")
        # Pin the input range to exactly [0, 255]: one pixel each of the first image (scale 1).
        first = imgs[0].copy()
        first.reshape(-1)[0] = 0
        first.reshape(-1)[-1] = 255
        imgs[0] = first
        self.cache["calib"] = [x[None] for x in imgs]
        return self.cache["calib"]

    # ---------------------------------------------------------------- models
    def qat(self):
        if self.qat_model is None and self.qat_path is not None:
            from cnnedge import models
            from cnnedge.quantize import pin_input_range

            self.qat_model = models.load_model(self.qat_path)
            pin_input_range(self.qat_model)  # scale 1 / zero point -128 whatever QAT learned
        return self.qat_model


def _as_image(x: np.ndarray, channels: int) -> np.ndarray:
    if x.ndim == 2 and channels == 1:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] != channels:
        raise CnnedgeError(f"calibration images must be (H, W, {channels}) uint8, got shape {x.shape}")
    if x.dtype != np.uint8:
        if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 255):
            raise CnnedgeError("calibration images must hold pixels 0..255")
        x = np.rint(x).astype(np.uint8)
    return x


def is_qat(model) -> bool:
    return any(type(layer).__name__ == "QuantizeLayer" for layer in model.layers)


def _training_size(summary: dict, recipe, fixed) -> list[int] | None:
    """[H, W] the model was trained at: the run's summary, its recipe, the model's own fixed
    input, Fashion-MNIST's 28×28; None where nothing says (a dynamic model file alone)."""
    if summary.get("input_size"):
        return [int(v) for v in summary["input_size"][:2]]
    if recipe is not None and recipe.data.image_size:
        return [int(v) for v in recipe.data.image_size]
    if None not in fixed:
        return [int(v) for v in fixed]
    if recipe is not None and recipe.data.dataset.replace("_", "-").lower() in FASHION_NAMES:
        return [28, 28]
    return None


FASHION_NAMES = ("fashion-mnist", "fashion", "fmnist")


def resolve(run_or_model, calibration, opset, int8_method, calibration_images) -> Job:
    """A :class:`Job` for a run directory or a .keras/.h5 model file."""
    from cnnedge import models, weights

    path = Path(run_or_model)
    if not path.exists() and weights.is_reference(str(run_or_model)):
        path = weights.path(str(run_or_model))  # a shipped checkpoint, by name
    run = recipe = owner = None
    summary: dict = {}
    class_names = None
    if path.is_dir():
        run = Run(path).require("float", hint="is it a finished cnnedge run? train it with cnnedge train")
        float_path = run.model_path("float")
        qat_path = run.model_path("qat") if run.has("qat") else None
        recipe = run.recipe if Run.is_run(path) else None
        try:
            summary = run.summary
        except CnnedgeError:
            summary = {}
    elif path.is_file():
        if path.suffix.lower() not in (".keras", ".h5"):
            raise CnnedgeError(f"{path}: expected a run directory or a .keras/.h5 model")
        float_path, qat_path = path, None
        owner = Run.of_model(path)  # a run's model file: its training size is the run's
        if owner is not None:
            summary, recipe = owner.summary, owner.recipe
        elif weights.reference_of(path):  # a shipped checkpoint: its sidecar JSON says
            ref = weights.info(weights.reference_of(path))
            summary = {"input_size": ref["image_size"], "params": ref.get("params")}
            class_names = ref.get("class_names")
            calibration = calibration or ref.get("dataset")
    else:
        raise CnnedgeError(f"no run directory or model file at {path}")
    try:  # class names of the run the model belongs to
        class_names = Run(float_path.parent).class_names or class_names
    except CnnedgeError:
        pass

    model = models.load_model(float_path, compile=False)
    if is_qat(model):
        raise CnnedgeError(
            f"{float_path} is a QAT model; export the run directory (its QAT "
            f"model is picked up from it) or the float model"
        )
    k = int(model.output_shape[-1])
    if not class_names or len(class_names) != k:
        class_names = [str(i) for i in range(k)]
    channels = int(model.input_shape[-1])
    fixed = model.input_shape[1:3]
    dynamic = None in fixed
    image_size = _training_size(summary, recipe, fixed)
    params = summary.get("params") or models.count_params(model)
    macs = summary.get("macs_per_image")
    if macs is None and image_size:
        try:
            macs = models.count_macs(model, (*image_size, channels))
        except CnnedgeError:
            macs = None
    if calibration is None and recipe is not None:
        calibration = run
    n_cal = calibration_images or (recipe.qat.calibration_images if recipe is not None else 500)
    job = Job(
        float_path=float_path,
        qat_path=qat_path,
        run=run,
        class_names=list(class_names),
        image_size=image_size,
        recipe=recipe.name if recipe is not None else None,
        params=int(params),
        macs=int(macs) if macs is not None else None,
        calibration=calibration,
        opset=int(opset),
        int8_method=int8_method,
        calibration_images=int(n_cal),
        owner=run if run is not None else owner,
    )
    job.float_model = model
    job.channels, job.dynamic_hw = channels, dynamic
    job.min_input_size = int(models.min_input_size(model))
    return job
