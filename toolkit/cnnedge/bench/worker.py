"""One benchmark row, measured in a process of its own: timing, accuracy and memory.

``python -m cnnedge.bench SPEC.json`` runs :func:`run_row` and writes its result JSON;
:func:`spawn` starts it and turns a crash or a hang into a failed row. Timer:
``time.perf_counter_ns`` around the runtime call alone (``runner.run_prepared(x)`` on inputs
prepared beforehand in the artifact's own dtype). Warm-up calls are not timed. Memory: the peak
RSS of the process (``VmHWM``, reset via ``/proc/self/clear_refs`` after the test images are
loaded; else ``ru_maxrss``) minus the RSS before the runtime package was imported.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError

ACC_BATCH = 256
# profiled calls per row: ORT writes ~2 KB of JSON per node per call, so a few MB at most
PROFILE_MAX_RUNS = 100
PROFILE_TOP = 10
# a fresh session's first calls grow its arena; even --quick's 3 warm-up calls are too few
PROFILE_WARMUP = 10
OK, FAILED, UNAVAILABLE = "ok", "failed", "unavailable"
STATUS_MARK = {OK: "✅", FAILED: "❌", UNAVAILABLE: "➖"}


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


QUICK = Timing(
    min_runs=50,
    min_seconds=0.0,
    max_seconds=0.3,
    batch_min_runs=3,
    batch_min_seconds=0.0,
    batch_max_seconds=0.3,
    warmup_runs=3,
    warmup_seconds=0.0,
)


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


def _images(spec: dict):
    """(images, labels or None): the run's test images, or random pixels at the file's size."""
    if spec.get("images"):
        labels = np.load(spec["labels"]) if spec.get("labels") else None
        return np.load(spec["images"]), labels
    h, w = spec["image_size"]
    shape = (max(spec["batch_sizes"]), h, w, spec["channels"])
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8), None


def _latency(fn, xs: dict, timing: Timing, res: dict) -> np.ndarray:
    """Batch-1 latency (µs per call, returned; its statistics into ``res``) and the throughput
    of every other batch size in ``xs``, each after its own warm-up."""
    _warm(fn, xs[1], timing.warmup_runs, timing.warmup_seconds)
    t = _time_calls(fn, xs[1], timing.min_runs, timing.min_seconds, timing.max_seconds, timing.max_runs)
    t = t / 1e3
    res.update(
        runs=int(len(t)),
        mean_us=float(t.mean()),
        p50_us=float(np.percentile(t, 50)),
        p90_us=float(np.percentile(t, 90)),
        p99_us=float(np.percentile(t, 99)),
        ips_b1=float(len(t) / (t.sum() / 1e6)),
    )
    for b, x in xs.items():
        if b == 1:
            continue
        _warm(fn, x, max(1, timing.warmup_runs // 5), timing.warmup_seconds)
        runs = (timing.batch_min_runs, timing.batch_min_seconds, timing.batch_max_seconds, timing.max_runs)
        tb = _time_calls(fn, x, *runs) / 1e9
        res[f"ips_b{b}"] = float(b * len(tb) / tb.sum())
        res[f"runs_b{b}"] = int(len(tb))
    return t


def run_row(spec: dict) -> dict:
    """Measure one (artifact, runtime, threads) row in this process (the worker's body).

    ``spec``: path, runtime (registry name), mode, threads, timing, batch_sizes, seed,
    accuracy (bool), images/labels (.npy paths) or image_size + channels for random pixels.
    """
    from cnnedge import runtime

    res: dict = {"status": FAILED}
    name, threads = spec["runtime"], int(spec["threads"])
    timing = Timing(**spec["timing"])
    images, labels = _images(spec)
    reset = _reset_peak()
    base_kb = _rss_kb("VmRSS") if reset else _peak_kb()
    try:
        t0 = time.perf_counter_ns()
        runtime.runtime_class(name).import_package(threads)
        res["import_ms"] = (time.perf_counter_ns() - t0) / 1e6
        t0 = time.perf_counter_ns()
        runner = runtime.load(spec["path"], runtime=name, threads=threads, mode=spec.get("mode"))
        res["load_ms"] = (time.perf_counter_ns() - t0) / 1e6
        if hasattr(runner, "providers"):
            res["providers"] = ",".join(runner.providers)
            if runner.provider and runner.provider not in runner.providers:
                res.update(
                    status=UNAVAILABLE,
                    reason=f"not available: {runner.provider} did not "
                    f"start (no usable GPU?); onnxruntime would run on {res['providers']}",
                )
                return res
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
        t = _latency(fn, xs, timing, res)
        if spec.get("profile"):
            try:
                res["profile"] = _profile(
                    runner, xs[1], min(len(t), PROFILE_MAX_RUNS), PROFILE_WARMUP, spec["profile"]
                )
            except Exception as e:  # noqa: BLE001 - the row's own figures still stand
                res["profile"] = {"note": f"profiler failed: {' '.join(str(e).split())[:200]}"}
        if spec.get("accuracy") and labels is not None:
            res["accuracy"] = _accuracy(runner, fn, images, labels, dynamic_batch)
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


def _profile(runner, x, runs: int, warmup: int, prefix: str) -> dict:
    """onnxruntime's per-node profile of ``runs`` batch-1 calls on ``x`` ({"note": "no
    profiler"} for other runtimes).

    A second session, built from the runner's own session options and providers with profiling
    on, runs after the timed calls: the profiler's per-node bookkeeping costs more than a small
    model's nodes, so profiling the timed session itself would inflate the row's p50. The
    runner keeps its session private (``_sess``; the runtime module is not the bench's), hence
    the getattr.
    """
    sess = getattr(runner, "_sess", None)
    if getattr(runner, "package", None) != "onnxruntime" or sess is None:
        return {"note": "no profiler"}
    import onnxruntime as ort

    so = sess.get_session_options()
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    providers = sess.get_providers()
    popts = sess.get_provider_options()
    prof = ort.InferenceSession(
        str(runner.path), so, providers=providers, provider_options=[popts.get(p, {}) for p in providers]
    )
    feed, out = {runner.input_details["name"]: x}, [sess.get_outputs()[0].name]
    for _ in range(warmup + runs):
        prof.run(out, feed)
    path = prof.end_profiling()
    summary = profile_summary(json.loads(Path(path).read_text()), warmup)
    return dict(summary, file=str(path))


def profile_summary(events: list[dict], warmup: int = 0, top: int = PROFILE_TOP) -> dict:
    """Top nodes and op types by total kernel time over the profiled calls after ``warmup``,
    each with its share of the calls' total (``model_run``) time, and per node the median of
    its calls (one preempted call can make a node's mean several times its usual time)."""
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    start = runs[warmup - 1]["ts"] + runs[warmup - 1]["dur"] if 0 < warmup <= len(runs) else 0
    runs = runs[warmup:]
    run_us = float(sum(e["dur"] for e in runs))
    nodes: dict = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        k = e["name"][: -len("_kernel_time")]
        args = e.get("args") or {}
        n = nodes.setdefault(
            k,
            {
                "node": k,
                "op": args.get("op_name"),
                "provider": args.get("provider"),
                "calls": 0,
                "total_us": 0.0,
                "_durs": [],
            },
        )
        n["calls"] += 1
        n["total_us"] += float(e["dur"])
        n["_durs"].append(float(e["dur"]))
    ops: dict = {}
    for n in nodes.values():
        n["median_us"] = float(np.median(n.pop("_durs")))
        o = ops.setdefault(n["op"], {"op": n["op"], "nodes": 0, "total_us": 0.0})
        o["nodes"] += 1
        o["total_us"] += n["total_us"]
    for d in (*nodes.values(), *ops.values()):
        d["share"] = d["total_us"] / run_us if run_us else None

    def best(d):
        return sorted(d.values(), key=lambda v: -v["total_us"])[:top]

    return {
        "runs": len(runs),
        "warmup": warmup,
        "run_us": run_us,
        "mean_run_us": run_us / len(runs) if runs else None,
        "median_run_us": float(np.median([e["dur"] for e in runs])) if runs else None,
        "kernel_share": sum(n["total_us"] for n in nodes.values()) / run_us if run_us else None,
        "nodes": best(nodes),
        "ops": best(ops),
    }


def _accuracy(runner, fn, images, labels, dynamic_batch: bool) -> float:
    correct = 0
    for i in range(0, len(images), ACC_BATCH):
        chunk = images[i : i + ACC_BATCH]
        if not dynamic_batch:
            out = np.concatenate(
                [
                    runner.postprocess(np.asarray(fn(runner.prepare(chunk[j : j + 1]))))
                    for j in range(len(chunk))
                ]
            )
        else:
            out = runner.postprocess(np.asarray(fn(runner.prepare(chunk))))
        correct += int((out.argmax(-1) == labels[i : i + ACC_BATCH]).sum())
    return correct / len(images)


def spawn(spec: dict, workdir: Path, timeout: float) -> dict:
    """Run one row in a fresh interpreter; a crash or timeout becomes a failed result."""
    k = len(list(workdir.glob("spec_*.json")))
    spec_path, result = workdir / f"spec_{k}.json", workdir / f"result_{k}.json"
    spec = dict(spec, result=str(result))
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), PYTHONHASHSEED="0")
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cnnedge.bench", str(spec_path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
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
    return {"status": FAILED, "reason": f"worker crashed ({what})" + (f": {err[-1][:200]}" if err else "")}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m cnnedge.bench SPEC.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    res = run_row(spec)
    Path(spec["result"]).write_text(json.dumps(res))
    return 0
