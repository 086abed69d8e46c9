"""`cnnedge verify <run>`: the parity report — every exported artifact against its Keras reference.

    report = verify("runs/fashion_mnist/exp", n=1000)     # report.passed, report.rows
    report.to_dict()                                        # what verify.json holds

The same N test images go through the Keras float model, the Keras QAT model and every artifact
in the run's export folder. Per artifact: accuracy, top-1 agreement with its reference (int8 → the QAT
Keras model when the run has one, else the float model; fp32/fp16 → the float model), max and
mean |logit difference| (int8 outputs dequantized), per-class accuracy change vs float, and the
images whose top-1 flips. ``verify.json`` + ``verify.md`` are written.

Each agreement comes with its exact 95 % interval (:func:`agreement_interval`) and a gate
(:func:`gate`): ``pass``, ``fail``, ``inconclusive`` (fewer than 1,000 images, under the threshold
but the interval still reaches it: rerun on more images) or ``info`` (measured, not gated: the
Keras rows, and the PTQ int8 model, a comparison point for QAT, unless ``gate_ptq``). ``passed``
is False when a gate fails. Parts: :mod:`.gates` (intervals and gates), :mod:`.report` (the
report and its text).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_write_json, atomic_write_text, check_writable
from cnnedge.numbers import Range, number
from cnnedge.run import Run
from cnnedge.verify.gates import CONFIDENCE, HARD_GATE_IMAGES, agreement_interval, gate
from cnnedge.verify.report import (
    GATE_ICONS,
    VerifyReport,
    agreement_lines,
    ci_text,
    flips_text,
    gate_lines,
    gate_text,
    markdown,
    more_images,
    pct,
    row_cells,
    title,
)

__all__ = [
    "CONFIDENCE",
    "DEFAULT_THRESHOLDS",
    "GATE_ICONS",
    "HARD_GATE_IMAGES",
    "VerifyReport",
    "agreement_interval",
    "agreement_lines",
    "ci_text",
    "flips_text",
    "gate",
    "gate_lines",
    "gate_text",
    "markdown",
    "more_images",
    "pct",
    "row_cells",
    "title",
    "verify",
    "x86_without_vnni",
]

# int8-ptq: post-training quantization of the float model, held against the float model; it is
# the comparison point for QAT, so its bar is lower.
DEFAULT_THRESHOLDS = {"fp32": 0.999, "fp16": 0.995, "int8": 0.995, "int8-ptq": 0.98}
MAX_FLIPS_LISTED = 50


@dataclass
class Reference:
    name: str
    logits: np.ndarray


def _keras_logits(path: Path, images: np.ndarray) -> np.ndarray:
    """Logits of a .keras / QAT .h5 model through cnnedge's keras runtime."""
    from cnnedge import runtime

    return runtime.load(path, runtime="keras").predict(images, batch_size=512).astype(np.float32)


def _compare(
    logits: np.ndarray,
    ref: np.ndarray,
    labels: np.ndarray,
    float_pred,
    k: int,
    output_step: Optional[float] = None,
) -> dict:
    """Agreement and logit differences of ``logits`` against ``ref``. ``output_step``: the
    artifact's output quantization step (int8 scale); flips where the reference itself ranks the
    two classes within one step are counted as ``flips_within_one_step`` (a diagnostic only)."""
    pred, ref_pred = logits.argmax(1), ref.argmax(1)
    diff = np.abs(logits - ref)
    flips = np.nonzero(pred != ref_pred)[0]
    near = None
    if output_step:
        margin = ref[flips, ref_pred[flips]] - ref[flips, pred[flips]]
        near = int((margin <= output_step * 1.001).sum())
    per_class = []
    for c in range(k):
        m = labels == c
        if m.any():
            per_class.append(float((pred[m] == c).mean() - (float_pred[m] == c).mean()))
        else:
            per_class.append(0.0)
    return {
        "accuracy": float((pred == labels).mean()),
        "agreement": float((pred == ref_pred).mean()),
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "per_class_accuracy_change_vs_float": per_class,
        "flips": int(len(flips)),
        "flips_within_one_step": near,
        "flipped": [
            {"index": int(i), "label": int(labels[i]), "pred": int(pred[i]), "ref_pred": int(ref_pred[i])}
            for i in flips[:MAX_FLIPS_LISTED]
        ],
    }


def verify(
    run_dir,
    *,
    n: Optional[int] = None,
    artifacts=None,
    thresholds: Optional[Dict[str, float]] = None,
    threads: int = 0,
    gate_ptq: bool = False,
    write: bool = True,
    runtimes=(),
) -> VerifyReport:
    """Compare every artifact of ``run_dir/export`` (or ``artifacts``) with the Keras models.

    Args:
        run_dir: A trained run directory.
        n: Test images: a seeded sample stratified by class (default: the whole split).
        artifacts: The files to check (default: every artifact in the run's export folder).
        thresholds: Minimum agreements as fractions, by ``fp32``, ``fp16``, ``int8``,
            ``int8-ptq`` (default :data:`DEFAULT_THRESHOLDS`; those given replace theirs).
        threads: Runtime threads (0: all cores).
        gate_ptq: Let the PTQ int8 model's agreement decide ``passed`` (default: reported as
            ``info``; it measures post-training quantization, which the QAT model replaces).
        write: Write ``verify.json`` and ``verify.md`` into the run, which is locked while it
            is read and written (one command at a time writes a run); a check that cannot run
            (bad input) leaves the earlier report as it was.
        runtimes: More runtimes to run each artifact on beside its default one (those of the
            artifact table that can run the file), e.g. ``["openvino"]``: a row each, gated
            alike.

    Returns:
        A :class:`VerifyReport`; ``passed`` is False when a gated row fails its threshold.

    Raises:
        CnnedgeError: no trained run, no exported files, a bad threshold or ``n``, a runtime
            asked for that is not installed.
    """
    import contextlib

    with Run(run_dir).lock("cnnedge verify") if write else contextlib.nullcontext():
        return _verify(
            run_dir,
            n=n,
            artifacts=artifacts,
            thresholds=thresholds,
            threads=threads,
            gate_ptq=gate_ptq,
            write=write,
            runtimes=runtimes,
        )


def _checked(run_dir, n, artifacts, thresholds, write, runtimes):
    """(run, thresholds, n, artifacts), every input checked before anything is computed."""
    from cnnedge import runtime

    for name in runtimes:  # an explicit request for a runtime that is not here is an error
        ok, why = runtime.runtime_status(name)
        if not ok:
            raise CnnedgeError(f"runtime '{name}' is {why}")

    run = Run(run_dir).require("float", hint="verify takes a trained run directory")
    if write:
        check_writable(run.path, "parity report")
    th = {
        k: number(v, f"threshold {k}", Range(0, 1))  # fractions; the CLI's --min-* are %
        for k, v in dict(DEFAULT_THRESHOLDS, **(thresholds or {})).items()
    }
    n = None if n is None else number(n, "n", Range(1, None, integer=True))
    if artifacts is None:
        artifacts = run.artifacts()
        if not artifacts:
            raise CnnedgeError(f"no exported models in {run.export_dir}; run: cnnedge export {run.path}")
    _require_qat(run, artifacts)
    return run, th, n, artifacts


def _verify(run_dir, *, n, artifacts, thresholds, threads, gate_ptq, write, runtimes) -> VerifyReport:
    from cnnedge import runtime

    run, th, n, artifacts = _checked(run_dir, n, artifacts, thresholds, write, runtimes)
    src = run.open_data()
    class_names = list(src.info.class_names)
    images, labels, split = run.test_images(n, src=src)
    k, count = len(class_names), int(len(labels))

    float_logits = _keras_logits(run.model_path("float"), images)
    refs = {"keras-float": Reference("keras-float", float_logits)}
    if run.has("qat"):
        refs["keras-qat"] = Reference("keras-qat", _keras_logits(run.model_path("qat"), images))
    rows = [_keras_row(ref, float_logits, labels, k, count) for ref in refs.values()]

    tflite_int8 = None
    resized: dict = {}  # fixed-size files (tflm) at another size: images and references there
    notes: list = []
    jobs = [
        (Path(p), rt)
        for p in artifacts
        for rt in dict.fromkeys(
            [_runtime_of(p, notes), *[r for r in runtimes if r in runtime.runtimes_for(p)]]
        )
    ]
    for path, rt in jobs:
        meta = runtime.read_metadata(path)
        runner = runtime.load(path, runtime=rt, threads=threads or None)
        x, row_refs = _at_size(meta, images, refs, resized, run)
        logits = np.asarray(runner.predict(x), dtype=np.float32)
        prec = meta.get("precision", "fp32")
        ref = row_refs["keras-qat"] if prec == "int8" and "keras-qat" in row_refs else row_refs["keras-float"]
        key = prec
        if prec == "int8" and meta.get("source") == "ptq":
            ref, key = row_refs["keras-float"], "int8-ptq"
        row = {
            "artifact": path.name,
            "format": meta.get("format"),
            "precision": prec,
            "runtime": runner.runtime,
            "reference": ref.name,
        }
        if x is not images:  # a fixed-size file at another size: its own images and references
            row["image_size"] = [int(v) for v in x.shape[1:3]]
        step = runner.output_details.get("scale") if prec == "int8" else None
        row.update(
            _compare(
                logits, ref.logits, labels, row_refs["keras-float"].logits.argmax(1), k, output_step=step
            )
        )
        if meta.get("target") == "tflm":
            row.update(_vs_litert(path, x, logits, step, artifacts, run))
        row.update(_gated(row, count, th.get(key), gated=key != "int8-ptq" or gate_ptq))
        if meta.get("format") == "tflite" and key == "int8" and tflite_int8 is None:
            tflite_int8 = (path.name, logits)  # the default runtime's (it comes first)
        if meta.get("onnx_weights"):
            row["onnx_weights"] = meta["onnx_weights"]
        rows.append(row)
        row["_logits"] = logits
    _vs_tflite_int8(rows, tflite_int8)
    from cnnedge.firmware.report import parity_rows

    report = VerifyReport(
        run=str(run.path),
        split=split,
        images=count,
        split_images=int(src.num_examples(split)),
        class_names=class_names,
        thresholds=th,
        gate_ptq=bool(gate_ptq),
        rows=rows,
        notes=notes,
        firmware=parity_rows(run.path),
    )
    if write:
        atomic_write_json(run.report(Run.VERIFY_JSON), report.to_dict())
        atomic_write_text(run.report(Run.VERIFY_MD), markdown(report))
    return report


def _keras_row(ref: Reference, float_logits, labels, k: int, count: int) -> dict:
    """The row of a Keras reference model (float or QAT) against the float model: not gated."""
    name = ref.name
    row = {
        "artifact": name,
        "format": "keras",
        "precision": "qat" if "qat" in name else "fp32",
        "runtime": "keras",
        "reference": "keras-float",
    }
    row.update(_compare(ref.logits, float_logits, labels, float_logits.argmax(1), k))
    row.update(_gated(row, count, None, gated=False))
    return row


def _vs_tflite_int8(rows: list, tflite_int8) -> None:
    """The int8 ONNX rows are also held against the int8 TFLite they should reproduce
    (``tflite_int8``: its name and logits, or None); every row's logits are dropped."""
    for row in rows:
        logits = row.pop("_logits", None)
        if (
            logits is not None
            and row["format"] == "onnx"
            and row["precision"] == "int8"
            and tflite_int8 is not None
        ):
            row["agreement_with_" + tflite_int8[0]] = float(
                (logits.argmax(1) == tflite_int8[1].argmax(1)).mean()
            )
            if (
                row["agreement_with_" + tflite_int8[0]] < 1
                and row.get("onnx_weights") == "int8"
                and x86_without_vnni()
            ):
                row["note"] = (
                    "this x86 CPU lacks VNNI: onnxruntime's U8S8 kernels saturate "
                    "int16 sums with int8 weights; export with --onnx-weights uint8"
                )


def _require_qat(run: Run, artifacts) -> None:
    """int8 files exported from the QAT model are held against it: without it they would be
    compared with the float model instead, and the verdict would be false."""
    from cnnedge import runtime

    if run.has("qat"):
        return
    for path in artifacts:
        try:
            meta = runtime.read_metadata(path)
        except CnnedgeError:
            continue  # the comparison names what is wrong with it
        if meta.get("precision") == "int8" and meta.get("source") == "qat":
            raise CnnedgeError(
                f"{run.model_path('qat')} is missing, but {Path(path).name} was exported from "
                f"it (int8 files are checked against the QAT model they came from); restore it, "
                f"or rerun: cnnedge quantize {run.path} && cnnedge export {run.path}"
            )


def _runtime_of(path, notes: list) -> str:
    """The file's default runtime, or, when that one is an optional package that is not
    installed (tflm), the first of its runtimes that is, with a note saying so."""
    from cnnedge import runtime

    name = runtime.default_runtime(path)
    ok, why = runtime.runtime_status(name)
    if ok:
        return name
    other = next((r for r in runtime.runtimes_for(path) if runtime.runtime_status(r)[0]), name)
    notes.append(f"{Path(path).name}: runtime {name} is {why}; it ran on {other} instead")
    return other


def _at_size(meta: dict, images, refs: dict, cache: dict, run: Run):
    """(images, references) for an artifact: a fixed-size file (``--format tflm`` at another
    ``--image-size``) gets the images stretched to its size and the Keras logits there."""
    size = meta.get("image_size") if meta.get("dynamic_hw") is False else None
    if not size or tuple(size) == tuple(images.shape[1:3]):
        return images, refs
    size = tuple(int(v) for v in size)
    if size not in cache:
        from cnnedge.preprocess import resize

        x = np.stack([resize(im, size) for im in images])
        cache[size] = (
            x,
            {
                name: Reference(
                    name, _keras_logits(run.model_path("qat" if name == "keras-qat" else "float"), x)
                )
                for name in refs
            },
        )
    return cache[size]


def _vs_litert(path: Path, x, logits, step, artifacts, run: Run) -> dict:
    """A TFLite Micro file against the int8 TFLite on the same images: top-1 agreement and the
    largest output difference in int8 steps, against LiteRT's reference kernels (BUILTIN_REF:
    the arithmetic TFLite Micro implements; goal 100 % and <= 1 step) and against ``litert``
    (XNNPACK, which rounds some layers differently)."""
    from cnnedge import runtime
    from cnnedge.artifacts import get

    name = get("tflite-int8").filename
    ref = next((Path(p) for p in artifacts if Path(p).name == name), run.export_dir / name)
    out: dict = {}
    if not ref.is_file():
        return out
    litert = runtime.load(ref, runtime="litert")
    for label in ("LiteRT reference kernels", "litert"):
        other = litert.predict(x) if label == "litert" else _reference_kernels(ref, litert, x)
        other = np.asarray(other, dtype=np.float32)
        key = f"{name} on {label}"
        out[f"agreement_with_{key}"] = float((logits.argmax(1) == other.argmax(1)).mean())
        out[f"max_steps_vs_{key}"] = int(np.rint(np.abs(logits - other).max() / step)) if step else None
    return out


def _reference_kernels(path: Path, runner, x) -> np.ndarray:
    """Logits of a TFLite file on LiteRT's reference kernels (OpResolverType.BUILTIN_REF), one
    image at a time; ``runner`` (a LiteRT runner of the file) does the pre- and postprocessing."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    q = runner.prepare(x)
    it.resize_tensor_input(i, [1, *q.shape[1:]], strict=False)
    it.allocate_tensors()
    raw = []
    for one in q:
        it.set_tensor(i, one[None])
        it.invoke()
        raw.append(it.get_tensor(o).copy())
    return runner.postprocess(np.concatenate(raw))


def _gated(row: dict, n: int, threshold: Optional[float], *, gated: bool) -> dict:
    """A row's threshold, 95 % interval, gate and ``passed``. ``passed`` (kept for readers of
    earlier reports) is on every row with a threshold and means "does not fail the report":
    True for pass, inconclusive and info."""
    agreed = n - row["flips"]
    out = {
        "agreement_ci95": list(agreement_interval(agreed, n)),
        "gate": gate(agreed, n, threshold, gated=gated),
    }
    if threshold is not None:
        out.update(threshold=threshold, passed=out["gate"] != "fail")
    return out


def x86_without_vnni() -> bool:
    """True on an x86 CPU without AVX-512 VNNI / AVX-VNNI (Linux /proc/cpuinfo; else False):
    there onnxruntime's U8S8 kernels (int8 weights) add u8*s8 pairs into saturating int16."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "vnni" not in flags
