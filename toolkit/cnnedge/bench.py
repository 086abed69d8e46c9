"""`cnnedge bench`: speed, accuracy, size and memory of every artifact on every runtime.

    report = bench("runs/fashion_mnist/exp")                   # all artifacts, all runtimes
    report = bench(["model_int8.tflite"], runtimes=["litert"], threads=[1], quick=True)
    report["rows"][0]["p50_us"], report["exit_code"]

One row per artifact × runtime × threads. Artifacts: a run's ``export/*.tflite|*.onnx`` plus the
Keras models ``best.keras`` (float) and ``qat.h5``, or the files given. Runtimes: the registry of
:mod:`cnnedge.runtime` -- ``keras`` is benchmarked twice, as the compiled ``tf.function`` call
(``keras-tf.function``) and as ``model.predict`` (``keras-predict``, the reference users call),
``litert`` (XNNPACK default delegate on), ``litert-ref`` (off), ``onnxruntime`` (CPU) and, with
onnxruntime-gpu and a GPU, ``onnxruntime-cuda`` / ``onnxruntime-tensorrt``. A runtime that is
not installed gives a ➖ "not available" row with the install hint. Results: a table, and
``bench.json`` / ``bench.csv`` / ``bench.png`` (accuracy vs p50 latency) written atomically in
the run directory (or ``out``).

Method
------
* Isolation: every (artifact, runtime, threads) row runs in its own fresh Python process
  (``python -m cnnedge.bench --worker spec.json``), one after another, so memory figures and
  thread pools never mix; a crash or hang of one row (timeout) is a ❌ row, the others go on.
* Threads: set explicitly per row (LiteRT ``num_threads``, onnxruntime ``intra_op_num_threads``
  with inter-op 1, TensorFlow intra-op threads with inter-op 1); default: 1 and all cores.
* Inputs: real test images picked with a fixed seed (0), converted beforehand with
  ``runner.prepare`` into the artifact's own input dtype (float32 / float16 / int8 / uint8), at
  the test images' size (the training size); without a run, seeded random pixels at the
  metadata's ``image_size``.
* Timer: ``time.perf_counter_ns`` around the runtime call alone (``runner.run_prepared(x)``, or
  ``model.predict(x)`` for keras-predict): no preprocessing, no dequantization, no Python
  bookkeeping beyond one list append.
* Load time: creating the interpreter/session/model from the file (the runtime package is
  imported first and its import time reported separately as ``import_ms``). First inference:
  the first call at batch 1, which includes lazy initialisation (tracing, weight packing).
* Warm-up: after the first inference, at least 10 calls and 0.1 s per batch size, not timed.
* Batch 1 latency: at least 1,000 timed runs and at least 0.5 s of timed calls, but stopping
  after 3 s of timed calls even if 1,000 runs are not reached by then ("≥ 1,000 runs or 3 s,
  whichever comes first" for slow rows, e.g. keras-predict; the count is in the row as
  ``runs``). Reported: mean, p50, p90, p99 in µs; throughput = runs / total time.
* Batch 32 and 256 (where the artifact has a dynamic batch dimension): at least 20 runs and
  0.25 s, stopping at 1.5 s ("≥ 20 runs or 1.5 s"); throughput = images / total timed time.
* Accuracy: once per (artifact, runtime) -- in the first threads setting, copied to the other
  thread rows -- on the run's test split (all of it, or ``n`` images) in batches of 256, after
  the timings. keras-predict runs the same model and weights as keras-tf.function and takes
  its accuracy from that row.
* Memory: peak RSS of the row's process (``VmHWM``; the kernel's high-water mark is reset via
  ``/proc/self/clear_refs`` after the test images are loaded, else ``ru_maxrss``) minus the RSS
  before the runtime package was imported: runtime + model + buffers of the timed runs.
* Size: file bytes; parameters and MACs per image from the artifact's metadata (or the run's
  summary.json for Keras models).
* Microcontroller estimate (every .tflite, meant for int8): flash = the model file's bytes
  (weights + graph), also split into weight bytes (constant buffers) and the rest; arena = the
  peak of a greedy first-fit offset plan of the activation tensors (non-constant, batch 1, at
  the training image size) over their lifetimes in operator order, largest tensor first, offsets
  aligned to 16 bytes, like TFLM's GreedyMemoryPlanner (no scratch buffers, no per-tensor
  structs, no in-place reshapes: a floor, not TFLM's exact arena). The graph comes from the
  flatbuffer (``schema_py_generated``); tensor shapes at the training size are propagated by
  LiteRT's ``allocate_tensors`` (no TensorFlow), or taken from the file when that fails.
* ``quick``: far fewer runs (≥ 50 at batch 1, ≥ 3 at batch 32/256, capped at 0.3 s) and at
  most 1,000 accuracy images -- for tests and smoke checks, not for numbers to report.
* ``compare``: ratios against another bench.json, matching rows by (artifact, runtime,
  threads): speed = baseline p50 / p50 (> 1: faster now), throughput = now / baseline.
* Exit code (``report["exit_code"]``): 1 when a row failed (❌) or a ``fail_under`` gate is not
  met (``accuracy=0.92``: a ✅ row under 0.92; ``speed=0.8``: a speed ratio under 0.8;
  ``throughput=0.8``: a throughput ratio under 0.8), else 0. ➖ rows (runtime not installed)
  do not fail.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

BATCH_SIZES = (1, 32, 256)
ARTIFACT_SUFFIXES = (".tflite", ".onnx")
KERAS_FILES = ("best.keras", "qat.h5")
KERAS_MODES = {"keras-tf.function": "function", "keras-predict": "predict"}
ACC_BATCH = 256
WORKER_TIMEOUT_S = 600
OK, FAILED, UNAVAILABLE = "ok", "failed", "unavailable"
STATUS_MARK = {OK: "✅", FAILED: "❌", UNAVAILABLE: "➖"}
GATES = ("accuracy", "speed", "throughput")
GPU_PROVIDERS = {"onnxruntime-cuda": "CUDAExecutionProvider",
                 "onnxruntime-tensorrt": "TensorrtExecutionProvider"}


@dataclass
class Timing:
    """How long each row is timed (see the module docstring)."""

    min_runs: int = 1000
    min_seconds: float = 0.5
    max_seconds: float = 3.0
    batch_min_runs: int = 20
    batch_min_seconds: float = 0.25
    batch_max_seconds: float = 1.5
    warmup_runs: int = 10
    warmup_seconds: float = 0.1
    max_runs: int = 200_000


QUICK = Timing(min_runs=50, min_seconds=0.0, max_seconds=0.3, batch_min_runs=3,
               batch_min_seconds=0.0, batch_max_seconds=0.3, warmup_runs=3, warmup_seconds=0.0)
QUICK_MAX_IMAGES = 1000

# flat columns of bench.csv (and the order of keys in each bench.json row)
COLUMNS = ["artifact", "runtime", "threads", "status", "reason", "format", "precision",
           "accuracy", "images", "file_bytes", "params", "macs_per_image", "import_ms", "load_ms",
           "first_ms", "runs", "mean_us", "p50_us", "p90_us", "p99_us",
           "ips_b1", "ips_b32", "ips_b256", "runs_b32", "runs_b256", "peak_rss_mb", "mem_mb",
           "mcu_arena_bytes", "mcu_flash_bytes", "mcu_weight_bytes", "providers",
           "speed_ratio", "throughput_ratio_b1", "throughput_ratio_b32",
           "throughput_ratio_b256", "path"]


# ------------------------------------------------------------------------------ runtimes
def bench_runtimes() -> list[str]:
    """Benchmark runtime names: the registry's, with ``keras`` split into its two modes."""
    from cnnedge import runtime

    out = []
    for name in runtime.list_runtimes():
        out.extend(KERAS_MODES if name == "keras" else [name])
    return out


def _registry_name(bench_name: str) -> str:
    return "keras" if bench_name in KERAS_MODES else bench_name


def _runtimes_for(path: Path) -> list[str]:
    from cnnedge import runtime

    out = []
    for name in runtime.runtimes_for(path):
        out.extend(KERAS_MODES if name == "keras" else [name])
    return out


def _select_runtimes(names) -> list[str] | None:
    if not names:
        return None
    valid = bench_runtimes()
    out: list[str] = []
    for part in (p.strip() for n in ([names] if isinstance(names, str) else names)
                 for p in str(n).split(",")):
        if not part:
            continue
        if part == "keras":
            out.extend(KERAS_MODES)
        elif part not in valid:
            import difflib

            close = difflib.get_close_matches(part, valid, n=1, cutoff=0.5)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise CnnedgeError(f"unknown runtime '{part}'; {hint}valid: {', '.join(valid)}, keras")
        else:
            out.append(part)
    return list(dict.fromkeys(out)) or None


def parse_threads(text) -> list[int]:
    """"1,2" -> [1, 2]; "all" -> all cores; default (None/empty): 1 and all cores."""
    from cnnedge.runtime import default_threads

    if text is None or text == "" or text == []:
        return sorted({1, default_threads()})
    items = text if isinstance(text, (list, tuple)) else [text]
    out = []
    for item in items:
        for part in str(item).split(","):
            part = part.strip().lower()
            if not part:
                continue
            if part in ("all", "max"):
                out.append(default_threads())
            elif part.isdigit() and int(part) >= 1:
                out.append(int(part))
            else:
                raise CnnedgeError(f"--threads expects positive integers like 1,2 (or 'all'), "
                                   f"got '{part}'")
    if not out:
        raise CnnedgeError("--threads: no thread count given")
    return list(dict.fromkeys(out))


def parse_batch_sizes(text) -> list[int]:
    if text is None:
        return list(BATCH_SIZES)
    items = text if isinstance(text, (list, tuple)) else [text]
    out = []
    for part in (p.strip() for i in items for p in str(i).split(",")):
        if not part:
            continue
        if not part.isdigit() or int(part) < 1:
            raise CnnedgeError(f"batch sizes must be positive integers like 1,32,256, got '{part}'")
        out.append(int(part))
    out = sorted(set(out) | {1})
    return out


def parse_gates(items) -> dict[str, float]:
    """["accuracy=0.92", "speed=0.8"] -> {"accuracy": 0.92, "speed": 0.8}."""
    if isinstance(items, dict):
        items = [f"{k}={v}" for k, v in items.items()]
    gates: dict[str, float] = {}
    for item in items or []:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            key, sep, value = part.partition("=")
            key = key.strip().lower()
            if not sep or key not in GATES:
                raise CnnedgeError(f"--fail-under expects one of {', '.join(g + '=X' for g in GATES)}"
                                   f", got '{part}'")
            try:
                v = float(value)
            except ValueError:
                raise CnnedgeError(f"--fail-under {key}: '{value}' is not a number") from None
            if not math.isfinite(v) or v < 0:
                raise CnnedgeError(f"--fail-under {key}: expected a number >= 0, got {value}")
            gates[key] = v
    return gates


# ------------------------------------------------------------------------------ artifacts
@dataclass
class _Artifact:
    path: Path
    run_dir: Path | None
    meta: dict | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


def _is_run(d: Path) -> bool:
    return (d / "recipe.yaml").is_file()


def _run_of(path: Path, meta: dict | None) -> Path | None:
    """The run directory an artifact belongs to (for its test images), if any."""
    cands = []
    if path.suffix.lower() in (".keras", ".h5"):
        cands.append(path.parent)
    if path.parent.name == "export":
        cands.append(path.parent.parent)
    if meta and meta.get("source_run"):
        cands.append(Path(meta["source_run"]))
    for c in cands:
        if c.is_dir() and _is_run(c):
            return c
    return None


def _artifacts_in(folder: Path) -> list[Path]:
    order = {".keras": 0, ".h5": 1, ".tflite": 2, ".onnx": 3}
    out = [folder / f for f in KERAS_FILES if (folder / f).is_file()]
    exp = folder / "export"
    if exp.is_dir():
        out += sorted((p for p in exp.iterdir() if p.suffix.lower() in ARTIFACT_SUFFIXES),
                      key=lambda p: (order[p.suffix.lower()], p.name))
    elif not out:  # an export folder itself
        out += sorted((p for p in folder.iterdir() if p.suffix.lower() in ARTIFACT_SUFFIXES),
                      key=lambda p: (order[p.suffix.lower()], p.name))
    return out


def resolve_targets(targets) -> tuple[list[Path], Path | None]:
    """(artifact paths, the run directory when exactly one run is benchmarked)."""
    if isinstance(targets, (str, Path)):
        targets = [targets]
    targets = [Path(t) for t in targets or []]
    if not targets:
        raise CnnedgeError("give a run directory or artifact files to benchmark")
    paths: list[Path] = []
    run_dir = None
    for t in targets:
        if t.is_dir():
            found = _artifacts_in(t)
            if not found:
                raise CnnedgeError(f"{t} holds no artifacts (best.keras, qat.h5, export/*.tflite|"
                                   f"*.onnx); run: cnnedge export {t}")
            paths += found
            if len(targets) == 1:
                run_dir = t if _is_run(t) else (t.parent if _is_run(t.parent) else None)
        else:
            if t.suffix.lower() not in ARTIFACT_SUFFIXES + (".keras", ".h5"):
                raise CnnedgeError(f"{t}: not a model file (.tflite, .onnx, .keras, .h5) or a run "
                                   f"directory")
            paths.append(t)  # a missing file becomes a ❌ row, not an error
    return list(dict.fromkeys(paths)), run_dir


def _summary(run_dir: Path | None) -> dict:
    if run_dir is None:
        return {}
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------- microcontroller estimate
_DTYPE_BYTES = {"FLOAT32": 4, "FLOAT16": 2, "BFLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8,
                "BOOL": 1, "INT16": 2, "INT8": 1, "FLOAT64": 8, "UINT32": 4, "UINT16": 2,
                "UINT64": 8, "COMPLEX64": 8, "COMPLEX128": 16, "INT4": 0.5, "UINT4": 0.5,
                "INT2": 0.25, "FLOAT8_E4M3FN": 1, "FLOAT8_E5M2": 1}


def _propagated_shapes(buf: bytes, input_shape) -> dict[int, list[int]]:
    """Tensor index -> shape after resizing subgraph 0's input to ``input_shape`` (LiteRT)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=buf, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(input_shape), strict=False)
    it.allocate_tensors()
    return {int(d["index"]): [int(v) for v in d["shape"]] for d in it.get_tensor_details()}


def greedy_plan(tensors: list[tuple[int, int, int]], alignment: int = 16) -> tuple[int, list]:
    """Greedy first-fit offset plan of (bytes, first_op, last_op) buffers, largest first.

    Each buffer goes at the lowest offset that does not overlap (in address) a buffer already
    placed whose lifetime [first, last] intersects its own. Returns (peak bytes, offsets).
    """
    order = sorted(range(len(tensors)), key=lambda i: (-tensors[i][0], tensors[i][1], i))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    offsets = [0] * len(tensors)
    peak = 0
    for i in order:
        size, first, last = tensors[i]
        size = int(math.ceil(size / alignment) * alignment) if alignment > 1 else int(size)
        live = sorted((o, s) for o, s, f, la in placed if f <= last and first <= la)
        offset = 0
        for o, s in live:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, first, last))
        offsets[i] = offset
        peak = max(peak, offset + size)
    return peak, offsets


def tflite_memory_estimate(path, image_size=None, alignment: int = 16) -> dict:
    """Arena (peak activation memory) and flash estimate of a .tflite file for a microcontroller.

    Parses the flatbuffer (subgraph 0, operators in execution order); activation tensors are
    the non-constant ones, sized at batch 1 and ``image_size`` (default: the metadata's
    training size). See the module docstring for the method and its limits.
    """
    from cnnedge.runtime import _tflite_model, tflite_metadata

    path = Path(path)
    if not path.is_file():
        raise CnnedgeError(f"no model file at {path}")
    buf = path.read_bytes()
    schema, model = _tflite_model(buf, path)
    names = {getattr(schema.TensorType, k): k for k in dir(schema.TensorType) if k.isupper()}
    try:
        meta = tflite_metadata(buf, path) or {}
        sg = model.Subgraphs(0)
        n_tensors, n_ops = sg.TensorsLength(), sg.OperatorsLength()
        inputs = [int(i) for i in sg.InputsAsNumpy()]
        outputs = [int(i) for i in sg.OutputsAsNumpy()]
        constant, weight_bytes, counted_buffers = set(), 0, set()
        for i in range(n_tensors):
            t = sg.Tensors(i)
            b = t.Buffer()
            if b > 0 and b < model.BuffersLength():
                bb = model.Buffers(b)
                nbytes = bb.DataLength() or int(bb.Size() or 0)
                if nbytes > 0:
                    constant.add(i)
                    if b not in counted_buffers:
                        counted_buffers.add(b)
                        weight_bytes += nbytes
        if image_size is None:
            image_size = meta.get("image_size")
        channels = int(meta.get("channels") or sg.Tensors(inputs[0]).ShapeAsNumpy()[-1])
        approximate = False
        shapes: dict[int, list[int]] = {}
        if image_size:
            try:
                shapes = _propagated_shapes(buf, [1, int(image_size[0]), int(image_size[1]),
                                                  channels])
            except Exception:  # noqa: BLE001 - no LiteRT or a graph it cannot resize: file shapes
                approximate = True
        first = {i: 0 for i in inputs}
        last = {i: 0 for i in inputs}
        for k in range(n_ops):
            op = sg.Operators(k)
            for i in (op.InputsAsNumpy() if op.InputsLength() else []):
                i = int(i)
                if i >= 0 and i not in constant:
                    first.setdefault(i, k)
                    last[i] = k
            for i in (op.OutputsAsNumpy() if op.OutputsLength() else []):
                i = int(i)
                if i >= 0 and i not in constant:
                    first.setdefault(i, k)
                    last[i] = max(last.get(i, k), k)
        for i in outputs:
            if i in first:
                last[i] = max(n_ops - 1, 0)
        tensors, sizes = [], []
        for i in sorted(first):
            t = sg.Tensors(i)
            shape = shapes.get(i)
            if shape is None:
                shape = [int(v) for v in (t.ShapeAsNumpy() if t.ShapeLength() else [])]
                if t.ShapeSignatureLength():
                    sig = [int(v) for v in t.ShapeSignatureAsNumpy()]
                    if any(v < 0 for v in sig):
                        approximate = True
                        shape = [1 if v < 0 else v for v in sig]
            nbytes = int(math.ceil(int(np.prod(shape, dtype=np.int64)) *
                                   _DTYPE_BYTES.get(names.get(t.Type(), ""), 4)))
            tensors.append((nbytes, first[i], last[i]))
            sizes.append(nbytes)
    except CnnedgeError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt/truncated flatbuffer
        raise CnnedgeError(f"{path}: cannot read the TFLite graph: {type(e).__name__}: {e}") from e
    arena, _ = greedy_plan(tensors, alignment=alignment)
    aligned = [int(math.ceil(s / alignment) * alignment) for s in sizes]
    return {
        "arena_bytes": int(arena),
        "flash_bytes": len(buf),
        "weight_bytes": int(weight_bytes),
        "graph_bytes": len(buf) - int(weight_bytes),
        "activation_tensors": len(sizes),
        "largest_tensor_bytes": int(max(aligned, default=0)),
        "sum_tensor_bytes": int(sum(aligned)),
        "operators": int(n_ops),
        "image_size": list(image_size) if image_size else None,
        "alignment": alignment,
        "approximate_shapes": approximate,
    }


# ------------------------------------------------------------------------------ the worker
def _rss_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _rss_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _time_calls(fn, x, min_runs, min_s, max_s, max_runs) -> np.ndarray:
    pc = time.perf_counter_ns
    times = []
    min_ns, max_ns = int(min_s * 1e9), int(max_s * 1e9)
    total = 0
    while True:
        t0 = pc()
        fn(x)
        t1 = pc()
        times.append(t1 - t0)
        total += t1 - t0
        n = len(times)
        if (n >= min_runs and total >= min_ns) or total >= max_ns or n >= max_runs:
            break
    return np.asarray(times, dtype=np.int64)


def _warm(fn, x, runs, seconds, max_s=2.0):
    t_end = time.perf_counter() + max_s
    t_min = time.perf_counter() + seconds
    k = 0
    while k < runs or time.perf_counter() < t_min:
        fn(x)
        k += 1
        if time.perf_counter() > t_end:
            break


def _import_runtime_package(name: str, threads: int):
    if name == "keras":
        from cnnedge.backend import tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    elif name.startswith("litert"):
        import ai_edge_litert.interpreter  # noqa: F401
    elif name.startswith("onnxruntime"):
        import onnxruntime  # noqa: F401


def run_row(spec: dict) -> dict:
    """Measure one (artifact, runtime, threads) row in this process (the worker's body)."""
    from cnnedge import runtime

    res: dict = {"status": FAILED}
    bench_rt, threads = spec["runtime"], int(spec["threads"])
    reg = _registry_name(bench_rt)
    timing = Timing(**spec["timing"])
    images = labels = None
    if spec.get("images"):
        images = np.load(spec["images"])
        labels = np.load(spec["labels"]) if spec.get("labels") else None
    else:
        h, w = spec["image_size"]
        images = np.random.default_rng(0).integers(0, 256, (max(spec["batch_sizes"]), h, w,
                                                            spec["channels"]), dtype=np.uint8)
    reset = _reset_peak()
    base_kb = _rss_kb("VmRSS") if reset else _peak_kb()
    try:
        t0 = time.perf_counter_ns()
        _import_runtime_package(reg, threads)
        res["import_ms"] = (time.perf_counter_ns() - t0) / 1e6
        t0 = time.perf_counter_ns()
        runner = runtime.load(spec["path"], runtime=reg, threads=threads)
        res["load_ms"] = (time.perf_counter_ns() - t0) / 1e6
        if hasattr(runner, "providers"):
            res["providers"] = ",".join(runner.providers)
            want = GPU_PROVIDERS.get(bench_rt)
            if want and want not in runner.providers:
                res.update(status=UNAVAILABLE, reason=f"not available: {want} did not start (no "
                           f"usable GPU?); onnxruntime would run on {res['providers']}")
                return res
        if KERAS_MODES.get(bench_rt) == "predict":
            model = runner.model

            def fn(x):
                return model.predict(x, batch_size=len(x), verbose=0)
        else:
            fn = runner.run_prepared
        rng = np.random.default_rng(int(spec.get("seed", 0)))
        batch_dim = (runner.input_details.get("shape") or [-1])[0]
        dynamic_batch = batch_dim in (-1, None) or not isinstance(batch_dim, int)
        xs = {}
        for b in spec["batch_sizes"]:
            if b == 1 or dynamic_batch:
                idx = rng.choice(len(images), size=b, replace=len(images) < b)
                xs[b] = runner.prepare(images[idx])
        t0 = time.perf_counter_ns()
        fn(xs[1])
        res["first_ms"] = (time.perf_counter_ns() - t0) / 1e6
        _warm(fn, xs[1], timing.warmup_runs, timing.warmup_seconds)
        t = _time_calls(fn, xs[1], timing.min_runs, timing.min_seconds, timing.max_seconds,
                        timing.max_runs) / 1e3
        res.update(runs=int(len(t)), mean_us=float(t.mean()), p50_us=float(np.percentile(t, 50)),
                   p90_us=float(np.percentile(t, 90)), p99_us=float(np.percentile(t, 99)),
                   ips_b1=float(len(t) / (t.sum() / 1e6)))
        for b, x in xs.items():
            if b == 1:
                continue
            _warm(fn, x, max(1, timing.warmup_runs // 5), timing.warmup_seconds)
            tb = _time_calls(fn, x, timing.batch_min_runs, timing.batch_min_seconds,
                             timing.batch_max_seconds, timing.max_runs) / 1e9
            res[f"ips_b{b}"] = float(b * len(tb) / tb.sum())
            res[f"runs_b{b}"] = int(len(tb))
        if spec.get("accuracy") and labels is not None:
            correct = 0
            for i in range(0, len(images), ACC_BATCH):
                chunk = images[i:i + ACC_BATCH]
                if not dynamic_batch:
                    out = np.concatenate([runner.postprocess(np.asarray(fn(runner.prepare(
                        chunk[j:j + 1])))) for j in range(len(chunk))])
                else:
                    out = runner.postprocess(np.asarray(fn(runner.prepare(chunk))))
                correct += int((out.argmax(-1) == labels[i:i + ACC_BATCH]).sum())
            res["accuracy"] = correct / len(images)
            res["images"] = int(len(images))
        res["status"] = OK
    except CnnedgeError as e:
        res["reason"] = str(e)
    except Exception as e:  # noqa: BLE001 - a runtime failing on one artifact is a ❌ row
        res["reason"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    peak = _peak_kb()
    res["peak_rss_mb"] = peak / 1024
    res["mem_mb"] = max(0, peak - (base_kb or 0)) / 1024
    return res


def _worker_main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "--worker":
        print("usage: python -m cnnedge.bench --worker SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text())
    res = run_row(spec)
    Path(spec["result"]).write_text(json.dumps(res))
    return 0


def _spawn(spec: dict, workdir: Path, timeout: float) -> dict:
    """Run one row in a fresh interpreter; a crash or timeout becomes a failed result."""
    k = len(list(workdir.glob("spec_*.json")))
    spec_path, result = workdir / f"spec_{k}.json", workdir / f"result_{k}.json"
    spec = dict(spec, result=str(result))
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]),
               PYTHONHASHSEED="0")
    try:
        proc = subprocess.run([sys.executable, "-m", "cnnedge.bench", "--worker", str(spec_path)],
                              capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": FAILED, "reason": f"timed out after {timeout:.0f} s"}
    if result.is_file():
        try:
            return json.loads(result.read_text())
        except ValueError:
            pass
    err = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
    code = proc.returncode
    if code < 0:
        import signal

        try:
            what = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            what = f"killed by signal {-code}"
    else:
        what = f"exit code {code}"
    return {"status": FAILED, "reason": f"worker crashed ({what})"
            + (f": {err[-1][:200]}" if err else "")}


# ------------------------------------------------------------------------------ images
def _test_images(run_dir: Path, n: int | None, workdir: Path, notes: list) -> dict | None:
    from cnnedge.verify import load_test_images

    try:
        images, labels, _, split = load_test_images(run_dir, n)
    except Exception as e:  # noqa: BLE001 - no dataset here: time on random pixels instead
        notes.append(f"{run_dir}: test images unavailable ({' '.join(str(e).split())[:200]}); "
                     f"no accuracy, timings on random pixels")
        return None
    tag = len(list(workdir.glob("images_*.npy")))
    ip, lp = workdir / f"images_{tag}.npy", workdir / f"labels_{tag}.npy"
    np.save(ip, np.ascontiguousarray(images, dtype=np.uint8))
    np.save(lp, np.asarray(labels).astype(np.int64))
    return {"images": str(ip), "labels": str(lp), "n": int(len(labels)), "split": split,
            "image_size": list(images.shape[1:3]), "channels": int(images.shape[3])}


# ------------------------------------------------------------------------------ bench
def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    mem = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gb": mem, "python": platform.python_version()}


def _row(art: _Artifact, runtime_name: str, threads, summary: dict) -> dict:
    meta = art.meta or {}
    suffix = art.path.suffix.lower()
    fmt = meta.get("format") or {".keras": "keras", ".h5": "keras"}.get(suffix, suffix.lstrip("."))
    prec = meta.get("precision") or ("qat" if art.name == "qat.h5" else
                                     "fp32" if suffix in (".keras", ".h5") else None)
    row = {c: None for c in COLUMNS}
    row.update(artifact=art.name, runtime=runtime_name, threads=threads, format=fmt,
               precision=prec, path=str(art.path),
               file_bytes=art.path.stat().st_size if art.path.is_file() else None,
               params=meta.get("params", summary.get("params")),
               macs_per_image=meta.get("macs_per_image", summary.get("macs_per_image")))
    return row


def bench(targets, *, runtimes=None, threads=None, n: int | None = None, quick: bool = False,
          out=None, compare=None, fail_under=None, batch_sizes=None, timing: Timing | None = None,
          timeout: float = WORKER_TIMEOUT_S, write: bool = True, command: str | None = None,
          progress=None) -> dict:
    """Benchmark a run directory or artifact files; returns the report (see module docstring).

    ``runtimes``: bench runtime names to keep (default: every one); ``threads``: list or "1,2"
    (default 1 and all cores); ``n``: test images for accuracy (default all; ``quick``: at most
    1,000); ``compare``: another bench.json; ``fail_under``: {"accuracy"|"speed"|"throughput":
    x} or ["accuracy=0.9", ...]; ``progress(row)`` is called after each row.
    """
    from cnnedge import runtime
    from cnnedge.utils import environment

    gates = parse_gates(fail_under)
    if ("speed" in gates or "throughput" in gates) and not compare:
        raise CnnedgeError("--fail-under speed=/throughput= needs --compare OTHER/bench.json")
    baseline = _load_baseline(compare) if compare else None
    keep = _select_runtimes(runtimes)
    thread_list = parse_threads(threads)
    sizes = parse_batch_sizes(batch_sizes)
    if n is not None and int(n) < 1:
        raise CnnedgeError(f"-n must be >= 1, got {n}")
    timing = timing or (QUICK if quick else Timing())
    if quick and n is None:
        n = QUICK_MAX_IMAGES
    paths, run_dir = resolve_targets(targets)
    out_dir = Path(out) if out else (run_dir or Path.cwd())

    artifacts = []
    for p in paths:
        art = _Artifact(p, None)
        if not p.is_file():
            art.error = f"no model file at {p}"
        elif p.suffix.lower() in ARTIFACT_SUFFIXES:
            try:
                art.meta = runtime.read_metadata(p)
            except CnnedgeError as e:
                art.error = str(e)
        art.run_dir = _run_of(p, art.meta)
        artifacts.append(art)

    notes: list[str] = []
    rows: list[dict] = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="cnnedge-bench-") as tmp:
        workdir = Path(tmp)
        data_by_run: dict = {}
        for art in artifacts:
            if art.error is None and art.run_dir is not None and art.run_dir not in data_by_run:
                data_by_run[art.run_dir] = _test_images(art.run_dir, n, workdir, notes)
        for art in artifacts:
            summary = _summary(art.run_dir)
            names = _runtimes_for(art.path)
            if not names:
                names = ["?"]
            if keep is not None:
                names = [r for r in names if r in keep]
            mcu = None
            if art.error is None and art.path.suffix.lower() == ".tflite":
                try:
                    mcu = tflite_memory_estimate(art.path)
                except CnnedgeError as e:
                    notes.append(f"{art.name}: no microcontroller estimate ({e})")
            data = data_by_run.get(art.run_dir)
            for rt in names:
                ok, why = (False, "no runtime runs this file type") if rt == "?" else \
                    runtime.runtime_status(_registry_name(rt))
                if not ok or art.error is not None:
                    row = _row(art, rt, None, summary)
                    row.update(status=UNAVAILABLE if not ok else FAILED,
                               reason=why if not ok else art.error)
                    rows.append(row)
                    _emit(progress, row)
                    continue
                meta = art.meta or {}
                img_size = (data or {}).get("image_size") or meta.get("image_size") or \
                    [max(32, int(meta.get("min_input_size") or 1))] * 2
                for k, t in enumerate(thread_list):
                    shared = rt == "keras-predict" and "keras-tf.function" in names
                    spec = {"path": str(art.path), "runtime": rt, "threads": t,
                            "timing": asdict(timing), "batch_sizes": sizes, "seed": 0,
                            "accuracy": k == 0 and data is not None and not shared,
                            "images": (data or {}).get("images"),
                            "labels": (data or {}).get("labels"),
                            "image_size": list(img_size),
                            "channels": int((data or {}).get("channels")
                                            or meta.get("channels") or 1)}
                    row = _row(art, rt, t, summary)
                    res = _spawn(spec, workdir, timeout)
                    row.update({k2: v for k2, v in res.items() if k2 in row})
                    if mcu:
                        row.update(mcu_arena_bytes=mcu["arena_bytes"],
                                   mcu_flash_bytes=mcu["flash_bytes"],
                                   mcu_weight_bytes=mcu["weight_bytes"])
                    rows.append(row)
                    _emit(progress, row)
    # accuracy is measured once per (artifact, runtime): share it with the other thread rows
    # (keras-predict runs the very model keras-tf.function runs: it takes that row's accuracy)
    acc = {(r["path"], r["runtime"]): (r["accuracy"], r["images"]) for r in rows
           if r["accuracy"] is not None}
    for r in rows:
        key = (r["path"], "keras-tf.function" if r["runtime"] == "keras-predict" else r["runtime"])
        if r["status"] == OK and r["accuracy"] is None:
            r["accuracy"], r["images"] = acc.get((r["path"], r["runtime"])) or acc.get(key) \
                or (None, None)

    comparison = _apply_compare(rows, baseline) if baseline else None
    gate_failures = _check_gates(rows, gates)
    failed = [r for r in rows if r["status"] == FAILED]
    report = {
        "header": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command or " ".join(["cnnedge", "bench", *map(str, paths)]),
            "machine": machine_info(),
            "versions": environment(),
            "threads": thread_list, "batch_sizes": sizes, "quick": bool(quick),
            "timing": asdict(timing),
            "images": {str(k): ({kk: v[kk] for kk in ("n", "split", "image_size")} if v else None)
                       for k, v in data_by_run.items()},
            "seconds": round(time.time() - started, 1),
        },
        "notes": notes,
        "rows": rows,
        "compare": comparison,
        "fail_under": gates,
        "gate_failures": gate_failures,
        "failed_rows": len(failed),
        "exit_code": 1 if failed or gate_failures else 0,
        "out_dir": str(out_dir),
        "files": {},
    }
    if write:
        report["files"] = write_report(report, out_dir)
    return report


def _emit(progress, row):
    if progress is not None:
        progress(row)


# ------------------------------------------------------------------------------ compare / gates
def _key(r: dict) -> tuple:
    return (r.get("artifact"), r.get("runtime"), r.get("threads"))


def _load_baseline(path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CnnedgeError(f"--compare: cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise CnnedgeError(f"--compare: {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise CnnedgeError(f"--compare: {path} is not a bench.json (no 'rows' list)")
    data["_path"] = str(path)
    return data


def _ratio(a, b):
    if a is None or b is None or not b or not a:
        return None
    return float(a) / float(b)


def _apply_compare(rows: list[dict], baseline: dict) -> dict:
    base = {_key(r): r for r in baseline["rows"] if r.get("status") == OK}
    matched = []
    for r in rows:
        b = base.get(_key(r))
        if r["status"] != OK or b is None:
            continue
        r["speed_ratio"] = _ratio(b.get("p50_us"), r["p50_us"])
        for bs in BATCH_SIZES:
            r[f"throughput_ratio_b{bs}"] = _ratio(r.get(f"ips_b{bs}"), b.get(f"ips_b{bs}"))
        matched.append({"artifact": r["artifact"], "runtime": r["runtime"],
                        "threads": r["threads"], "p50_us": r["p50_us"],
                        "baseline_p50_us": b.get("p50_us"), "speed_ratio": r["speed_ratio"],
                        **{f"throughput_ratio_b{bs}": r[f"throughput_ratio_b{bs}"]
                           for bs in BATCH_SIZES}})
    return {"baseline": baseline["_path"], "baseline_date": (baseline.get("header") or {})
            .get("date"), "matched": len(matched), "rows": matched}


def _check_gates(rows: list[dict], gates: dict) -> list[str]:
    out = []
    for r in rows:
        if r["status"] != OK:
            continue
        who = f"{r['artifact']} on {r['runtime']} ({r['threads']} thread{'s' * (r['threads'] != 1)})"
        if "accuracy" in gates and r["accuracy"] is not None and r["accuracy"] < gates["accuracy"]:
            out.append(f"{who}: accuracy {r['accuracy']:.4f} < {gates['accuracy']}")
        if "speed" in gates and r["speed_ratio"] is not None and r["speed_ratio"] < gates["speed"]:
            out.append(f"{who}: speed ratio {r['speed_ratio']:.2f} (p50 vs baseline) < "
                       f"{gates['speed']}")
        if "throughput" in gates:
            for bs in BATCH_SIZES:
                v = r.get(f"throughput_ratio_b{bs}")
                if v is not None and v < gates["throughput"]:
                    out.append(f"{who}: throughput ratio at batch {bs} {v:.2f} < "
                               f"{gates['throughput']}")
    return out


# ------------------------------------------------------------------------------ output files
def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def plot(rows: list[dict], out: Path, title: str = "") -> Path:
    """bench.png: accuracy vs p50 latency (log x), one labelled point per ✅ row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnnedge.utils import atomic_path

    pts = [r for r in rows if r["status"] == OK and r.get("p50_us") and r.get("accuracy")
           is not None]
    fig, ax = plt.subplots(figsize=(11, 6.5))
    runtimes = sorted({r["runtime"] for r in pts})
    threads = sorted({r["threads"] for r in pts})
    markers = "o^sDvP*X"
    cmap = plt.get_cmap("tab10")
    for j, rt in enumerate(runtimes):
        for m, th in enumerate(threads):
            sel = [r for r in pts if r["runtime"] == rt and r["threads"] == th]
            if sel:
                ax.scatter([r["p50_us"] for r in sel], [r["accuracy"] for r in sel], s=40,
                           color=cmap(j % 10), marker=markers[m % len(markers)], zorder=3,
                           label=f"{rt}, {th} thread{'s' * (th != 1)}")
    # labels: staggered so that points at the same accuracy stay readable
    offsets = [(5, 4), (5, -10), (5, 12), (5, -18), (5, 20), (5, -26)]
    for k, r in enumerate(sorted(pts, key=lambda r: (r["accuracy"], r["p50_us"]))):
        ax.annotate(f"{r['artifact'].replace('model_', '')}·t{r['threads']}",
                    (r["p50_us"], r["accuracy"]), fontsize=6.5, xytext=offsets[k % len(offsets)],
                    textcoords="offset points", alpha=0.85)
    if pts:
        ax.set_xscale("log")
        ax.legend(fontsize=7, loc="best", ncol=2)
    else:
        ax.text(0.5, 0.5, "no successful row with accuracy", ha="center", va="center",
                transform=ax.transAxes)
    ax.set(xlabel="p50 latency per call at batch 1 (µs, log scale)", ylabel="test accuracy",
           title=title or "cnnedge bench: accuracy vs latency")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


def write_report(report: dict, out_dir) -> dict:
    from cnnedge.utils import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out_dir / "bench.json"), "csv": str(out_dir / "bench.csv"),
             "png": str(out_dir / "bench.png")}
    report["files"] = files
    m = report["header"]["machine"]
    plot(report["rows"], Path(files["png"]),
         title=f"cnnedge bench — {m['cpu']}, {m['cores']} cores")
    atomic_write_text(files["csv"], to_csv(report["rows"]))
    atomic_write_json(files["json"], report)
    return files


# ------------------------------------------------------------------------------ terminal table
def _fmt(v, spec="{:,.1f}"):
    return "–" if v is None else spec.format(v)


def _us(v):
    if v is None:
        return "–"
    return f"{v:,.1f}" if v < 1000 else f"{v:,.0f}"


def _num(v) -> str:
    """Compact: 3 significant digits, k/M suffixes (table cells)."""
    if v is None:
        return "–"
    v = float(v)
    for div, suffix in ((1e6, "M"), (1e3, "k"), (1, "")):
        if abs(v) >= div * 0.9995 or div == 1:
            x = v / div
            digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if suffix else 1
            if not suffix and abs(x) >= 100:
                digits = 0
            return f"{x:.{digits}f}{suffix}"
    return str(v)


def table(report: dict):
    """The rich Table of a report's rows (the CLI prints it); the reason of each ❌/➖ row is
    a line under the table (mean latency, run counts, ratios: bench.json/.csv)."""
    from rich import box
    from rich.table import Table

    h = report["header"]
    notes = []
    for r in report["rows"]:
        if r["status"] != OK:
            notes.append(f"{STATUS_MARK[r['status']]} {r['artifact']} on {r['runtime']}"
                         + (f" ({r['threads']} threads)" if r["threads"] else "")
                         + f": {r['reason']}")
    t = Table(title=f"cnnedge bench — {h['machine']['cpu']}, {h['machine']['cores']} cores"
                    + (" (quick)" if h.get("quick") else ""), box=box.SIMPLE_HEAD, pad_edge=False,
              show_edge=False, collapse_padding=True,
              caption="\n".join(notes) or None, caption_justify="left")
    for col in ("artifact", "runtime", "thr", "", "acc", "KB", "load ms", "1st ms", "p50 µs",
                "p90 µs", "p99 µs", "img/s b1", "b32", "b256", "mem MB", "arena KB"):
        t.add_column(col, justify="left" if col in ("artifact", "runtime", "") else "right",
                     no_wrap=True)
    for r in report["rows"]:
        t.add_row(r["artifact"], r["runtime"], "–" if r["threads"] is None else str(r["threads"]),
                  STATUS_MARK[r["status"]], _fmt(r["accuracy"], "{:.4f}"),
                  _num(r["file_bytes"] / 1024 if r["file_bytes"] else None),
                  _num(r["load_ms"]), _num(r["first_ms"]), _num(r["p50_us"]), _num(r["p90_us"]),
                  _num(r["p99_us"]), _num(r["ips_b1"]), _num(r["ips_b32"]), _num(r["ips_b256"]),
                  _num(r["mem_mb"]),
                  _num(r["mcu_arena_bytes"] / 1024 if r["mcu_arena_bytes"] else None))
    return t


def compare_table(report: dict):
    from rich import box
    from rich.table import Table

    c = report["compare"]
    t = Table(title=f"vs {c['baseline']} ({c['matched']} matching rows; speed = baseline p50 / "
                    f"p50, > 1 is faster)", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("artifact", "runtime", "thr", "p50 µs", "base p50 µs", "speed",
                "thrpt b1", "thrpt b32", "thrpt b256"):
        t.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
    for m in c["rows"]:
        t.add_row(m["artifact"], m["runtime"], str(m["threads"]), _us(m["p50_us"]),
                  _us(m["baseline_p50_us"]), _fmt(m["speed_ratio"], "×{:.2f}"),
                  *[_fmt(m[f"throughput_ratio_b{b}"], "×{:.2f}") for b in BATCH_SIZES])
    return t


def progress_line(row: dict) -> str:
    thr = "" if row["threads"] is None else f" t={row['threads']}"
    if row["status"] == OK:
        return (f"{STATUS_MARK[OK]} {row['artifact']} {row['runtime']}{thr}: p50 "
                f"{_us(row['p50_us'])} µs, {_fmt(row['ips_b1'], '{:,.0f}')} img/s")
    return f"{STATUS_MARK[row['status']]} {row['artifact']} {row['runtime']}{thr}: {row['reason']}"


def failure_lines(report: dict) -> list[str]:
    """One line per failed row and per unmet gate (the CLI prints them as errors)."""
    out = [f"{r['artifact']} on {r['runtime']}"
           + (f" ({r['threads']} thread{'s' * (r['threads'] != 1)})" if r["threads"] else "")
           + f" failed: {r['reason']}" for r in report["rows"] if r["status"] == FAILED]
    return out + [f"gate --fail-under: {g}" for g in report["gate_failures"]]


def command_line(targets, **options) -> str:
    """The ``cnnedge bench ...`` command a report came from (for its header)."""
    import shlex

    targets = [targets] if isinstance(targets, (str, Path)) else list(targets or [])
    parts = ["cnnedge", "bench", *map(str, targets)]
    for key, value in options.items():
        flag = "-n" if key == "n" else "--" + key.replace("_", "-")
        if value is None or value is False or value == [] or value == ():
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            for v in value:
                parts += [flag, str(v)]
        else:
            parts += [flag, str(value)]
    return " ".join(shlex.quote(p) for p in parts)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
