"""The ``tflm`` format: a fixed-size int8 TFLite for TFLite Micro and its C/C++ bundle.

TFLM plans its tensor arena once, for static shapes, so this writer converts the int8 model
(QAT when the run has one) again with a fixed ``1×H×W×C`` input at the training size (or
``image_size``), with the calibration of the dynamic int8 file, so the two compute the same.
The file is opened in TFLM (an op it lacks fails here, by name), its smallest arena is measured
(:func:`cnnedge.runtime.tflm.measure_arena`), and one real test image runs through it: the
bundle in ``tflm/`` (:mod:`.tflm_bundle`) carries that image and TFLM's output for a self-check
on the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnedge import artifacts
from cnnedge.artifacts import embed_tflite_metadata
from cnnedge.errors import CnnedgeError
from cnnedge.export import tflm_bundle
from cnnedge.export.job import Job
from cnnedge.export.tflite import convert_tflite, io_metadata, tflite_io
from cnnedge.runtime import tflm as runtime_tflm

BUNDLE_DIR = "tflm"


def static_size(job: Job) -> list[int]:
    """H, W of the fixed-size file: ``--image-size``, else the size the model was trained at."""
    size = job.cache.get("tflm_size") or job.image_size
    if not size:
        raise CnnedgeError(
            f"{job.float_path}: --format tflm needs a fixed input size and this "
            f"model has none recorded; pass --image-size HxW"
        )
    k = job.min_input_size
    if min(size) < k:
        raise CnnedgeError(f"--image-size {size[0]}x{size[1]} is smaller than this model's minimum {k}×{k}")
    size = [int(v) for v in size]
    if job.cache.get("tflm_checked") != size:
        check_memory(job, size)
        job.cache["tflm_checked"] = size
    return size


def check_memory(job: Job, size) -> None:
    """Refuse a size whose int8 model cannot fit a TFLite Micro arena, or whose conversion
    cannot fit this machine's memory, before converting: lower bounds from the float model's
    layer shapes (the largest layer's input + output at 1 byte a value; the calibration images
    at ``size`` as uint8 + float32 and the converter's float activations of one image)."""
    from cnnedge.limits import BYTES_PER_INPUT_VALUE, available_memory, gb
    from cnnedge.models.graph import activation_sizes

    h, w = size
    peak, total = activation_sizes(job.float_model, (h, w, job.channels))
    convert = job.calibration_images * h * w * job.channels * BYTES_PER_INPUT_VALUE + 2 * 4 * total
    what = f"--image-size {h}x{w}" if job.cache.get("tflm_size") else f"the training size {h}x{w}"
    estimate = (
        f"{what}: the fixed-size int8 model needs a tensor arena of at least "
        f"{peak / 2**20:,.1f} MiB (its largest layer's input and output) and converting "
        f"it about {gb(convert)}"
    )
    avail = available_memory()
    if peak > runtime_tflm.ARENA_LIMIT:
        raise CnnedgeError(
            f"{estimate}; TFLite Micro is given at most "
            f"{runtime_tflm.ARENA_LIMIT >> 20} MiB (no microcontroller has more); "
            f"choose a smaller --image-size"
        )
    if avail is not None and convert > avail:
        raise CnnedgeError(
            f"{estimate}, more than the {gb(avail)} of memory available; choose a smaller --image-size"
        )


def _sized(images, size) -> list[np.ndarray]:
    """uint8 [1,H,W,C] images at ``size`` (stretched, as the runtime's preprocessing does)."""
    from cnnedge.preprocess import resize

    out = []
    for x in images:
        img = x[0] if x.ndim == 4 else x
        if list(img.shape[:2]) != list(size):
            img = resize(img, tuple(size))
        out.append(img[None])
    return out


def _test_image(job: Job, size) -> tuple[np.ndarray, int | None]:
    """One real image for the on-device self-check: the run's first test image, else the first
    calibration image (a real image of the calibration data; its label is unknown)."""
    if job.run is not None:
        try:
            images, labels, _ = job.run.test_images(1)
            return _sized(images[:1], size)[0], int(labels[0])
        except CnnedgeError:
            pass  # the run's data is not on this machine: a calibration image serves as well
    return _sized(job.calib()[1:2] or job.calib()[:1], size)[0], None


def tflm_artifact(job: Job) -> tuple[bytes, dict, dict]:
    """(fixed-size int8 TFLite bytes with metadata, metadata, bundle facts)."""
    size = static_size(job)
    source = job.int8_source
    model = job.qat() if source == "qat" else job.float_model
    calib = _sized(job.calib(), size)
    buf = convert_tflite(model, "int8", calib, channels=job.channels, dynamic=False, size=size)
    i, o = tflite_io(buf)
    arena = runtime_tflm.measure_arena(buf, f"the fixed-size {size[0]}×{size[1]} int8 model")
    meta = job.metadata("tflite", "int8", source, **io_metadata(i, o))
    meta.update(dynamic_hw=False, image_size=size, target="tflm", tflm_arena_bytes=arena["arena_bytes"])
    buf = embed_tflite_metadata(buf, meta)
    image, label = _test_image(job, size)
    q = np.rint(image.astype(np.float32) / float(i["scale"] or 1.0)) + int(i["zero_point"] or 0)
    x = np.clip(q, -128, 127).astype(np.int8)  # as PixelToInput and the runtimes do
    from tflite_micro.python.tflite_micro import runtime as tflm

    it = tflm.Interpreter.from_bytes(buf, arena_size=arena["arena_bytes"])
    it.set_input(x, 0)
    it.invoke()
    expected = np.array(it.get_output(0)).reshape(-1)
    facts = {
        "arena": arena,
        "test_input": x.reshape(-1),
        "test_label": label,
        "test_output": expected,
        "ops": op_names(buf),
        "size": size,
        "input": i,
        "output": o,
    }
    return buf, meta, facts


def operators(buf: bytes, path="<model>") -> list[tuple[str, str]]:
    """(builtin op, output tensor name) of every operator of the model, in execution order
    (e.g. ("CONV_2D", "gmp_s/s1_conv/Conv2D"))."""
    schema, model = artifacts.tflite_model(buf, path)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    codes = []
    for i in range(model.OperatorCodesLength()):
        c = model.OperatorCodes(i)
        codes.append(max(c.BuiltinCode(), c.DeprecatedBuiltinCode()))
    g = model.Subgraphs(0)
    out = []
    for k in range(g.OperatorsLength()):
        o = g.Operators(k)
        layer = g.Tensors(int(o.Outputs(0))).Name().decode() if o.OutputsLength() else ""
        out.append((names.get(codes[o.OpcodeIndex()], "CUSTOM"), layer))
    return out


def op_names(buf: bytes) -> list[str]:
    """The builtin ops the model uses, in order of first use (e.g. ["CONV_2D", "ADD"])."""
    return list(dict.fromkeys(op for op, _ in operators(buf)))


def writers(job: Job, precision: str):
    """[(artifact row, writer(tmp_path) -> metadata)]: the fixed-size file; the bundle goes to
    ``tflm/`` beside it (named in the metadata's ``_extra`` for the caller to move)."""

    def write(tmp):
        buf, meta, facts = tflm_artifact(job)
        tmp = Path(tmp)
        tmp.write_bytes(buf)
        tflm_bundle.write_bundle(tmp.parent / BUNDLE_DIR, buf, meta, facts)
        return {**meta, "_extra": [BUNDLE_DIR]}

    return [(artifacts.get("tflm-int8"), write)]
