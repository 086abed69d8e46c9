"""`cnnedge verify <run>`: the parity report — every exported artifact against its Keras reference.

The same N test images go through the Keras float model, the Keras QAT model and every artifact
in the run's export folder. Per artifact: accuracy, top-1 agreement with its reference (int8 → the QAT
Keras model when the run has one, else the float model; fp32/fp16 → the float model), max and
mean |logit difference| (int8 outputs dequantized), per-class accuracy change vs float, and the
images whose top-1 flips. ``verify.json`` + ``verify.md`` are written; ``passed`` is False when
an agreement falls under its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.run import Run
from cnnedge.utils import atomic_write_json, atomic_write_text, check_writable

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


def _compare(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray, float_pred, k: int,
             output_step: Optional[float] = None) -> dict:
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
        "flipped": [{"index": int(i), "label": int(labels[i]), "pred": int(pred[i]),
                     "ref_pred": int(ref_pred[i])} for i in flips[:MAX_FLIPS_LISTED]],
    }


def verify(run_dir, *, n: Optional[int] = None, artifacts=None,
           thresholds: Optional[Dict[str, float]] = None, threads: int = 0,
           write: bool = True) -> dict:
    """Compare every artifact of ``run_dir/export`` (or ``artifacts``) with the Keras models."""
    from cnnedge import runtime

    run = Run(run_dir).require("float", hint="verify takes a trained run directory")
    if write:
        check_writable(run.path, "parity report")
    th = dict(DEFAULT_THRESHOLDS, **(thresholds or {}))
    if artifacts is None:
        artifacts = run.artifacts()
        if not artifacts:
            raise CnnedgeError(f"no exported models in {run.export_dir}; run: cnnedge export "
                               f"{run.path}")
    src = run.open_data()
    class_names = list(src.info.class_names)
    images, labels, split = run.test_images(n, src=src)
    k = len(class_names)

    float_logits = _keras_logits(run.model_path("float"), images)
    float_pred = float_logits.argmax(1)
    refs = {"keras-float": Reference("keras-float", float_logits)}
    if run.has("qat"):
        refs["keras-qat"] = Reference("keras-qat", _keras_logits(run.model_path("qat"), images))
    rows = []
    for name, ref in refs.items():
        row = {"artifact": name, "format": "keras", "precision": "qat" if "qat" in name else "fp32",
               "runtime": "keras", "reference": "keras-float"}
        row.update(_compare(ref.logits, float_logits, labels, float_pred, k))
        rows.append(row)

    tflite_int8 = None
    for path in artifacts:
        path = Path(path)
        meta = runtime.read_metadata(path)
        runner = runtime.load(path, threads=threads or None)
        logits = np.asarray(runner.predict(images), dtype=np.float32)
        prec = meta.get("precision", "fp32")
        ref = refs["keras-qat"] if prec == "int8" and "keras-qat" in refs else refs["keras-float"]
        key = prec
        if prec == "int8" and meta.get("source") == "ptq":
            ref, key = refs["keras-float"], "int8-ptq"
        row = {"artifact": path.name, "format": meta.get("format"), "precision": prec,
               "runtime": runner.runtime, "reference": ref.name}
        step = runner.output_details.get("scale") if prec == "int8" else None
        row.update(_compare(logits, ref.logits, labels, float_pred, k, output_step=step))
        row["threshold"] = th.get(key)
        row["passed"] = row["threshold"] is None or row["agreement"] >= row["threshold"]
        if meta.get("format") == "tflite" and key == "int8":
            tflite_int8 = (path.name, logits)
        rows.append(row)
        row["_logits"] = logits
    # the int8 ONNX is also held against the int8 TFLite it should reproduce
    for row in rows:
        logits = row.pop("_logits", None)
        if logits is not None and row["format"] == "onnx" and row["precision"] == "int8" \
                and tflite_int8 is not None:
            row["agreement_with_" + tflite_int8[0]] = float(
                (logits.argmax(1) == tflite_int8[1].argmax(1)).mean())
    report = {
        "run": str(run.path), "split": split, "images": int(len(labels)),
        "class_names": class_names, "thresholds": th, "rows": rows,
        "passed": all(r.get("passed", True) for r in rows),
    }
    if write:
        atomic_write_json(run.report(Run.VERIFY_JSON), report)
        atomic_write_text(run.report(Run.VERIFY_MD), markdown(report))
    return report


def flips_text(row: dict) -> str:
    """The flips cell: "59", or for int8 artifacts "59 (46 ≤ 1 step)", counting the flips the
    reference itself ranks within one output quantization step."""
    near = row.get("flips_within_one_step")
    return f"{row['flips']}" if near is None or not row["flips"] else \
        f"{row['flips']} ({near} ≤ 1 step)"


def row_cells(row: dict) -> list:
    """One report row as table cells, shared by verify.md and the CLI table."""
    ok = "" if "passed" not in row else ("✅" if row["passed"] else "❌")
    return [row["artifact"], row["runtime"], f"{row['accuracy']:.4f}", row["reference"],
            f"{100 * row['agreement']:.2f} %", f"{row['max_abs_logit_diff']:.4f}",
            f"{row['mean_abs_logit_diff']:.4f}", flips_text(row), ok]


def agreement_lines(report: dict) -> list:
    """"<artifact> vs <other>: 100.00 % top-1 agreement" for the extra agreements (int8 ONNX)."""
    return [f"{r['artifact']} vs {k[len('agreement_with_'):]}: {100 * v:.2f} % top-1 agreement"
            for r in report["rows"] for k, v in r.items() if k.startswith("agreement_with_")]


def markdown(report: dict) -> str:
    lines = [f"Parity on {report['images']:,} {report['split']} images of {report['run']}",
             "",
             "| artifact | runtime | accuracy | reference | top-1 agreement | max abs logit diff "
             "| mean abs logit diff | flips | pass |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in report["rows"]]
    lines += ["\n" + line for line in agreement_lines(report)]
    if any(r.get("flips_within_one_step") for r in report["rows"]):
        lines.append("\n≤ 1 step: flips where the reference's own top-2 logits are within one "
                     "int8 output quantization step of each other (near-ties, not counted as "
                     "agreement).")
    return "\n".join(lines) + "\n"
