"""`cnnedge verify <run>`: the parity report — every exported artifact against its Keras reference.

The same N test images go through the Keras float model, the Keras QAT model and every artifact
in the run's export folder. Per artifact: accuracy, top-1 agreement with its reference (int8 → the QAT
Keras model when the run has one, else the float model; fp32/fp16 → the float model), max and
mean |logit difference| (int8 outputs dequantized), per-class accuracy change vs float, and the
images whose top-1 flips. ``verify.json`` + ``verify.md`` are written.

Each agreement comes with its exact 95 % interval (:func:`agreement_interval`) and a gate
(:func:`gate`): ``pass``, ``fail``, ``inconclusive`` (fewer than 1,000 images, under the threshold
but the interval still reaches it: rerun on more images) or ``info`` (measured, not gated: the
Keras rows, and the PTQ int8 model, a comparison point for QAT, unless ``gate_ptq``). ``passed``
is False when a gate fails.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range, number
from cnnedge.run import Run
from cnnedge.utils import atomic_write_json, atomic_write_text, check_writable

# int8-ptq: post-training quantization of the float model, held against the float model; it is
# the comparison point for QAT, so its bar is lower.
DEFAULT_THRESHOLDS = {"fp32": 0.999, "fp16": 0.995, "int8": 0.995, "int8-ptq": 0.98}
MAX_FLIPS_LISTED = 50
# From this many images on, the gate is the plain comparison: the interval is then narrow
# enough (98.84–99.84 % for 995 of 1,000) that "under the bar" means what it says.
HARD_GATE_IMAGES = 1000
CONFIDENCE = 0.95
GATE_ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "info": "➖"}


def _lower_bound(agreed: int, n: int, alpha: float) -> float:
    """The p where P(X >= agreed | n, p) = alpha: the lower Clopper–Pearson bound, by bisection on
    the binomial tail (summed in log space), so no scipy is needed."""
    if agreed <= 0:
        return 0.0
    i = np.arange(agreed, n + 1)
    log_comb = np.concatenate([[0.0], np.cumsum(np.log(np.arange(n, 0, -1)) -
                                                np.log(np.arange(1, n + 1)))])[agreed:]
    lo, hi = 0.0, 1.0
    for _ in range(64):  # the tail grows with p; 64 halvings reach float precision
        p = (lo + hi) / 2
        t = log_comb + i * np.log(p) + (n - i) * np.log1p(-p)
        m = t.max()
        lo, hi = (p, hi) if np.exp(m) * np.exp(t - m).sum() < alpha else (lo, p)
    return (lo + hi) / 2


def agreement_interval(agreed: int, n: int, confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """The Clopper–Pearson ("exact") ``confidence`` interval of an agreement of ``agreed`` images
    out of ``n``: (0, 1) for n = 0, and 1.0 / 0.0 exactly at the ends.

    Clopper–Pearson rather than Wilson: an upper bound under the threshold is then an exact
    one-sided binomial test at 2.5 %. Wilson's upper bound is too low near 100 % at small n:
    one fp32 flip in 120 images gives Wilson 99.85 %, under the 99.9 % bar, yet an artifact
    exactly at the bar flips at least one of 120 images 11 % of the time (Clopper–Pearson: 99.98 %).
    """
    if not 0 <= agreed <= n:
        raise ValueError(f"agreed must be in 0..n, got {agreed} of {n}")
    if n == 0:
        return 0.0, 1.0
    alpha = (1 - confidence) / 2
    return _lower_bound(agreed, n, alpha), 1.0 - _lower_bound(n - agreed, n, alpha)


def gate(agreed: int, n: int, threshold: Optional[float], *, gated: bool = True) -> str:
    """The gate of ``agreed`` of ``n`` images agreeing, against ``threshold`` (a fraction).

    ``info`` when there is no threshold or the row is not ``gated``; ``pass`` when the agreement
    reaches the threshold; under it, with fewer than HARD_GATE_IMAGES images, ``inconclusive``
    while the upper bound of the 95 % interval still reaches the threshold (the images cannot
    tell the artifact from one at the bar: rerun on more) and ``fail`` once it is under it too;
    from HARD_GATE_IMAGES images on, under the threshold is ``fail``.
    """
    if threshold is None or not gated:
        return "info"
    if n and agreed / n >= threshold:
        return "pass"
    if n < HARD_GATE_IMAGES and agreement_interval(agreed, n)[1] >= threshold:
        return "inconclusive"
    return "fail"


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
           gate_ptq: bool = False, write: bool = True, runtimes=()) -> dict:
    """Compare every artifact of ``run_dir/export`` (or ``artifacts``) with the Keras models.

    ``gate_ptq``: let the PTQ int8 model's agreement decide ``passed`` (default: reported as
    ``info``; it measures post-training quantization, which the shipped QAT model replaces).
    ``runtimes``: more runtimes to run each artifact on, beside its default one (those of the
    artifact table that can run the file), e.g. ``["openvino"]``: a row each, gated alike.
    With ``write`` the run is locked while it is read and its report written (one command at a
    time writes a run); a check that cannot run (bad input) leaves the earlier report as it was."""
    import contextlib

    with Run(run_dir).lock("cnnedge verify") if write else contextlib.nullcontext():
        return _verify(run_dir, n=n, artifacts=artifacts, thresholds=thresholds, threads=threads,
                       gate_ptq=gate_ptq, write=write, runtimes=runtimes)


def _verify(run_dir, *, n, artifacts, thresholds, threads, gate_ptq, write, runtimes) -> dict:
    from cnnedge import runtime

    for name in runtimes:  # an explicit request for a runtime that is not here is an error
        ok, why = runtime.runtime_status(name)
        if not ok:
            raise CnnedgeError(f"runtime '{name}' is {why}")

    run = Run(run_dir).require("float", hint="verify takes a trained run directory")
    if write:
        check_writable(run.path, "parity report")
    th = {k: number(v, f"threshold {k}", Range(0, 1))  # fractions; the CLI's --min-* are %
          for k, v in dict(DEFAULT_THRESHOLDS, **(thresholds or {})).items()}
    n = None if n is None else number(n, "n", Range(1, None, integer=True))
    if artifacts is None:
        artifacts = run.artifacts()
        if not artifacts:
            raise CnnedgeError(f"no exported models in {run.export_dir}; run: cnnedge export "
                               f"{run.path}")
    _require_qat(run, artifacts)
    src = run.open_data()
    class_names = list(src.info.class_names)
    images, labels, split = run.test_images(n, src=src)
    k, count = len(class_names), int(len(labels))

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
        row.update(_gated(row, count, None, gated=False))
        rows.append(row)

    tflite_int8 = None
    resized: dict = {}  # fixed-size files (tflm) at another size: images and references there
    notes: list = []
    jobs = [(Path(p), rt) for p in artifacts
            for rt in dict.fromkeys([_runtime_of(p, notes), *[
                r for r in runtimes if r in runtime.runtimes_for(p)]])]
    for path, rt in jobs:
        meta = runtime.read_metadata(path)
        runner = runtime.load(path, runtime=rt, threads=threads or None)
        x, row_refs = _at_size(meta, images, refs, resized, run)
        logits = np.asarray(runner.predict(x), dtype=np.float32)
        prec = meta.get("precision", "fp32")
        ref = row_refs["keras-qat"] if prec == "int8" and "keras-qat" in row_refs \
            else row_refs["keras-float"]
        key = prec
        if prec == "int8" and meta.get("source") == "ptq":
            ref, key = row_refs["keras-float"], "int8-ptq"
        row = {"artifact": path.name, "format": meta.get("format"), "precision": prec,
               "runtime": runner.runtime, "reference": ref.name}
        if x is not images:  # a fixed-size file at another size: its own images and references
            row["image_size"] = [int(v) for v in x.shape[1:3]]
        step = runner.output_details.get("scale") if prec == "int8" else None
        row.update(_compare(logits, ref.logits, labels, row_refs["keras-float"].logits.argmax(1),
                            k, output_step=step))
        if meta.get("target") == "tflm":
            row.update(_vs_litert(path, x, logits, step, artifacts, run))
        row.update(_gated(row, count, th.get(key), gated=key != "int8-ptq" or gate_ptq))
        if meta.get("format") == "tflite" and key == "int8" and tflite_int8 is None:
            tflite_int8 = (path.name, logits)  # the default runtime's (it comes first)
        if meta.get("onnx_weights"):
            row["onnx_weights"] = meta["onnx_weights"]
        rows.append(row)
        row["_logits"] = logits
    # the int8 ONNX is also held against the int8 TFLite it should reproduce
    for row in rows:
        logits = row.pop("_logits", None)
        if logits is not None and row["format"] == "onnx" and row["precision"] == "int8" \
                and tflite_int8 is not None:
            row["agreement_with_" + tflite_int8[0]] = float(
                (logits.argmax(1) == tflite_int8[1].argmax(1)).mean())
            if row["agreement_with_" + tflite_int8[0]] < 1 and row.get("onnx_weights") == "int8" \
                    and x86_without_vnni():
                row["note"] = ("this x86 CPU lacks VNNI: onnxruntime's U8S8 kernels saturate "
                               "int16 sums with int8 weights; export with --onnx-weights uint8")
    report = {
        "run": str(run.path), "split": split, "images": count,
        "split_images": int(src.num_examples(split)), "class_names": class_names,
        "thresholds": th, "gate_ptq": bool(gate_ptq), "interval": "clopper-pearson 95 %",
        "hard_gate_images": HARD_GATE_IMAGES, "rows": rows,
        "passed": all(r.get("passed", True) for r in rows),
        "inconclusive": [r["artifact"] for r in rows if r["gate"] == "inconclusive"],
        "notes": notes,
    }
    if write:
        atomic_write_json(run.report(Run.VERIFY_JSON), report)
        atomic_write_text(run.report(Run.VERIFY_MD), markdown(report))
    return report


def _require_qat(run: Run, artifacts) -> None:
    """int8 files exported from the QAT model are held against it: without it they would be
    compared with the float model instead, and the verdict would be false."""
    from cnnedge import runtime

    if run.has("qat"):
        return
    try:
        qat_ran = any(k.startswith("qat_") for k in run.summary)
    except CnnedgeError:
        qat_ran = False
    for path in artifacts:
        try:
            meta = runtime.read_metadata(path)
        except CnnedgeError:
            continue  # the comparison names what is wrong with it
        source = meta.get("source")
        if meta.get("precision") == "int8" and (source == "qat" or (source is None and qat_ran)):
            raise CnnedgeError(
                f"{run.model_path('qat')} is missing, but {Path(path).name} was exported from "
                f"it (int8 files are checked against the QAT model they came from); restore it, "
                f"or rerun: cnnedge quantize {run.path} && cnnedge export {run.path}")


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
        cache[size] = (x, {name: Reference(name, _keras_logits(
            run.model_path("qat" if name == "keras-qat" else "float"), x)) for name in refs})
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
        out[f"max_steps_vs_{key}"] = int(np.rint(np.abs(logits - other).max() / step)) \
            if step else None
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
    out = {"agreement_ci95": list(agreement_interval(agreed, n)),
           "gate": gate(agreed, n, threshold, gated=gated)}
    if threshold is not None:
        out.update(threshold=threshold, passed=out["gate"] != "fail")
    return out


def flips_text(row: dict) -> str:
    """The flips cell: "59", or for int8 artifacts "59 (46 ≤ 1 step)", counting the flips the
    reference itself ranks within one output quantization step."""
    near = row.get("flips_within_one_step")
    return f"{row['flips']}" if near is None or not row["flips"] else \
        f"{row['flips']} ({near} ≤ 1 step)"


def pct(x: float) -> str:
    """99.17 %: two decimals, rounded down, so a bound shown at the bar reaches it."""
    return f"{math.floor(x * 10000 + 1e-9) / 100:.2f} %"


def ci_text(row: dict) -> str:
    """The interval cell: "95.44–99.97 %"."""
    lo, hi = row["agreement_ci95"]
    return f"{pct(lo)[:-2]}–{pct(hi)}"


def gate_text(row: dict) -> str:
    """The gate cell: "✅ pass (99.5 %)", the threshold in brackets where the row has one."""
    thr = row.get("threshold")
    return f"{GATE_ICONS[row['gate']]} {row['gate']}" + ("" if thr is None else f" ({100 * thr:g} %)")


def row_cells(row: dict) -> list:
    """One report row as table cells, shared by verify.md and the CLI table."""
    size = "×".join(map(str, row["image_size"])) if row.get("image_size") else None
    return [row["artifact"] + (f" at {size}" if size else ""), row["runtime"],
            f"{row['accuracy']:.4f}", row["reference"],
            f"{100 * row['agreement']:.2f} %", ci_text(row), f"{row['max_abs_logit_diff']:.4f}",
            f"{row['mean_abs_logit_diff']:.4f}", flips_text(row), gate_text(row)]


def more_images(report: dict) -> str:
    """What to run for firmer evidence: more images while the split has them."""
    total, n, run = report.get("split_images") or 0, report["images"], report["run"]
    if total >= 2000 or not total:
        return f"rerun on more images: cnnedge verify {run} -n 2000"
    if n < total:
        return f"rerun on the whole {report['split']} split: cnnedge verify {run}"
    return (f"the {report['split']} split holds only {total:,} images; more evidence needs a "
            "larger one")


def gate_lines(report: dict) -> list:
    """A line per inconclusive row (with the advice to rerun on more images) and per non-gated row
    that has a threshold (the PTQ model: how it fares against its bar)."""
    n, lines = report["images"], []
    for r in report["rows"]:
        head = (f"{r['artifact']}: {100 * r['agreement']:.2f} % agreement on {n:,} images "
                f"(95 % CI {ci_text(r)})")
        thr = r.get("threshold")
        if r["gate"] == "inconclusive":
            lines.append(f"{head} is under its {100 * thr:g} % bar, but the interval reaches it: "
                         f"inconclusive, not a failure; {more_images(report)}")
        elif r["gate"] == "info" and thr is not None:
            would = gate(n - r["flips"], n, thr)
            lines.append(f"{head}: PTQ, a comparison point for QAT, reported but not gated "
                         f"(against its {100 * thr:g} % bar: {would}; --gate-ptq gates it)")
    return lines


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


def agreement_lines(report: dict) -> list:
    """"<artifact> vs <other>: 100.00 % top-1 agreement" for the extra agreements (int8 ONNX and
    TFLite Micro against the int8 TFLite; TFLite Micro with its largest output difference in
    steps), with the row's note (an int8-weight ONNX that drifts on a CPU without VNNI)."""
    return [f"{r['artifact']} vs {k[len('agreement_with_'):]}: {100 * v:.2f} % top-1 agreement"
            + (f", outputs within {r[steps]} int8 step(s)" if r.get(steps) is not None else "")
            + (f" -- {r['note']}" if r.get("note") else "")
            for r in report["rows"] for k, v in r.items() if k.startswith("agreement_with_")
            for steps in ["max_steps_vs_" + k[len("agreement_with_"):]]]


def title(report: dict) -> str:
    """"parity on 120 of 10,000 test images": every report names its split and image count."""
    n, total = report["images"], report.get("split_images")
    of = f"{n:,} of {total:,}" if total and total > n else f"{n:,}"
    return f"parity on {of} {report['split']} images"


def markdown(report: dict) -> str:
    lines = [f"P{title(report)[1:]} of {report['run']}",
             "",
             "| artifact | runtime | accuracy | reference | top-1 agreement | 95 % CI | max abs "
             "logit diff | mean abs logit diff | flips | gate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in report["rows"]]
    lines += ["\n" + line for line in agreement_lines(report) + gate_lines(report)
              + report.get("notes", [])]
    lines.append(f"\ngate: pass = agreement at or over its bar; under it, fail, except on fewer "
                 f"than {HARD_GATE_IMAGES:,} images while the 95 % Clopper–Pearson interval still "
                 "reaches the bar: inconclusive (rerun on more images); info = reported, not gated.")
    if any(r.get("flips_within_one_step") for r in report["rows"]):
        lines.append("\n≤ 1 step: flips where the reference's own top-2 logits are within one "
                     "int8 output quantization step of each other (near-ties, not counted as "
                     "agreement).")
    return "\n".join(lines) + "\n"
