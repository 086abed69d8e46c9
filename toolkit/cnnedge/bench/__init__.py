"""`cnnedge bench`: speed, accuracy, size and memory of every artifact on every runtime.

    report = bench("runs/fashion_mnist/exp")                   # all artifacts, all runtimes
    report = bench(["model_int8.tflite"], runtimes=["litert"], threads=[1], quick=True)
    report.rows[0]["p50_us"], report.exit_code, report.to_dict()  # to_dict(): bench.json

One row per artifact × runtime (× mode) × threads, each measured in a fresh process
(:mod:`.worker`) so memory figures and thread pools never mix; which runtimes run a file comes
from the artifact table, a runtime that is not installed is a ➖ row with its install hint, a
crash or hang a ❌ row. Parts: :mod:`.options` (runtimes, threads, batch sizes, gates),
:mod:`.targets` (files, runs, test images), :mod:`.mcu` (microcontroller estimate),
:mod:`.worker` (timing and memory), :mod:`.report` (compare, gates, files, tables). The method
is described in docs/bench.md.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from cnnedge import artifacts
from cnnedge.bench.mcu import greedy_plan, tflite_memory_estimate
from cnnedge.bench.options import (
    BATCH_SIZES,
    bench_runtimes,
    parse_batch_sizes,
    parse_gates,
    parse_threads,
    row_runtimes,
    select_runtimes,
)
from cnnedge.bench.report import (
    COLUMNS,
    apply_compare,
    check_gates,
    command_line,
    compare_table,
    failure_lines,
    load_baseline,
    machine_info,
    profile_table,
    progress_line,
    table,
    to_csv,
    write_report,
)
from cnnedge.bench.result import BenchReport
from cnnedge.bench.targets import (
    Target,
    open_targets,
    resized_images,
    resolve_targets,
    save_test_images,
)
from cnnedge.bench.worker import FAILED, OK, QUICK, UNAVAILABLE, Timing, run_row, spawn
from cnnedge.errors import CnnedgeError
from cnnedge.files import check_writable
from cnnedge.run import Run

__all__ = [
    "BATCH_SIZES",
    "COLUMNS",
    "QUICK",
    "BenchReport",
    "Timing",
    "bench",
    "bench_runtimes",
    "command_line",
    "compare_table",
    "failure_lines",
    "greedy_plan",
    "parse_batch_sizes",
    "parse_gates",
    "parse_threads",
    "profile_name",
    "profile_table",
    "progress_line",
    "resolve_targets",
    "run_row",
    "table",
    "tflite_memory_estimate",
    "to_csv",
    "write_report",
]

WORKER_TIMEOUT_S = 600
QUICK_MAX_IMAGES = 1000


def _row(t: Target, bench_name: str, threads) -> dict:
    meta, summary = t.meta or {}, t.summary
    row = {c: None for c in COLUMNS}
    table_row = t.row
    row.update(
        artifact=t.name,
        runtime=bench_name,
        threads=threads,
        format=meta.get("format") or (table_row.format if table_row else t.path.suffix.lower().lstrip(".")),
        precision=meta.get("precision") or (table_row.precision if table_row else None),
        path=str(t.path),
        file_bytes=t.path.stat().st_size if t.path.is_file() else None,
        params=meta.get("params", summary.get("params")),
        macs_per_image=meta.get("macs_per_image", summary.get("macs_per_image")),
    )
    return row


def bench(
    targets,
    *,
    runtimes=None,
    threads=None,
    n: int | None = None,
    quick: bool = False,
    out=None,
    compare=None,
    fail_under=None,
    batch_sizes=None,
    timing: Timing | None = None,
    timeout: float = WORKER_TIMEOUT_S,
    write: bool = True,
    command: str | None = None,
    progress=None,
    isolate: bool = True,
    profile: bool = False,
    mcu_targets=None,
    tflm_dir=None,
) -> BenchReport:
    """Benchmark a run directory or artifact files (see the module docstring).

    Args:
        targets: A run directory, or artifact files (.tflite, .onnx, .keras, .h5).
        runtimes: Bench row names to keep (list or comma string; default: every one).
        threads: Thread counts, a list or ``"1,2"`` (default: 1 and all cores).
        n: Test images for accuracy, a seeded sample stratified by class (default: all;
            ``quick``: at most 1,000).
        quick: Few timed runs and at most 1,000 images: a smoke test, not figures to report.
        out: Folder of bench.json/.csv/.png (default: the run directory, else the current one).
        compare: An earlier bench.json: p50 and throughput ratios of matching rows.
        fail_under: Gates, ``{"accuracy"|"speed"|"throughput": x}`` or
            ``["accuracy=0.9", ...]`` (speed and throughput need ``compare``).
        batch_sizes: Throughput batch sizes, a list or ``"1,32,256"``.
        timing: Timed-run counts and durations (default: :class:`Timing`, or ``QUICK``).
        timeout: Seconds a row's worker process may take before it is a ❌ row.
        write: Write the report files (nothing is written where nothing was measured).
        command: The command line recorded in the header (default: ``cnnedge bench <targets>``).
        progress: Called with each row (a dict) as it is measured.
        isolate: Measure each row in a fresh process (False: in this one; tests, smoke checks).
        profile: onnxruntime's per-node profile of each onnxruntime row, written as
            profile_<row>.json beside bench.json and summarised in ``profiles``.
        mcu_targets: Microcontroller cores (list or comma string, e.g. ``cortex-m4``): a row
            each from the run's firmware (:mod:`cnnedge.bench.firmware`).
        tflm_dir: The TFLite Micro tree those firmwares build against.

    Returns:
        A :class:`BenchReport`; ``exit_code`` is 1 when a row failed or a gate was not met.

    Raises:
        CnnedgeError: a bad option, no target, an output folder that cannot be written.
    """
    gates = parse_gates(fail_under)
    if ("speed" in gates or "throughput" in gates) and not compare:
        raise CnnedgeError(f"--fail-under speed=/throughput= needs --compare OTHER/{Run.BENCH[0]}")
    baseline = load_baseline(compare) if compare else None
    keep = select_runtimes(runtimes)
    thread_list = parse_threads(threads)
    sizes = parse_batch_sizes(batch_sizes)
    if n is not None and int(n) < 1:
        raise CnnedgeError(f"-n must be >= 1, got {n}")
    timing = timing or (QUICK if quick else Timing())
    if quick and n is None:
        n = QUICK_MAX_IMAGES
    paths, run = resolve_targets(targets)
    mcu_list = _mcu_targets(mcu_targets)
    out_dir = Path(out) if out else (run.path if run is not None else Path.cwd())
    write = write and (out is not None or any(p.is_file() for p in paths))  # no report of nothing
    if write:
        check_writable(out_dir, "bench report")
    files = open_targets(paths)

    # one command at a time writes a run's reports (and reads its files while it measures)
    with Run.lock_of(out_dir if write else None, "cnnedge bench"):
        started = time.time()
        rows, notes, profiles, data_by_run = _measure(
            files,
            n,
            (keep, thread_list, sizes, timing),
            timeout,
            progress,
            isolate,
            profile,
            out_dir if write else None,
        )
        if mcu_targets:
            from cnnedge.bench.firmware import firmware_rows

            rows += firmware_rows(paths, run, mcu_list, tflm_dir=tflm_dir)
        comparison = apply_compare(rows, baseline) if baseline else None
        gate_failures = check_gates(rows, gates)
        failed = [r for r in rows if r["status"] == FAILED]
        report = BenchReport(
            header=_header(command, paths, thread_list, sizes, quick, profile, timing, data_by_run, started),
            notes=notes,
            rows=rows,
            profiles=profiles,
            compare=comparison,
            fail_under=gates,
            gate_failures=gate_failures,
            failed_rows=len(failed),
            exit_code=1 if failed or gate_failures else 0,
            out_dir=str(out_dir),
            files={},
        )
        # a bench with failed rows leaves the previous report as it was (its own goes to
        # bench.failed.*), and writes nothing at all where it measured nothing outside a run
        measured = any(r["status"] == OK for r in rows)
        if write and (not failed or measured or out is not None or run is not None):
            report.files = write_report(report, out_dir, failed=bool(failed))
    return report


def _header(command, paths, thread_list, sizes, quick, profile, timing, data_by_run, started) -> dict:
    """bench.json's header: when, the command, the machine and versions, the plan, the images."""
    from cnnedge.utils import environment

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command or " ".join(["cnnedge", "bench", *map(str, paths)]),
        "machine": machine_info(),
        "versions": environment(),
        "threads": thread_list,
        "batch_sizes": sizes,
        "quick": bool(quick),
        "profile": bool(profile),
        "timing": asdict(timing),
        "images": {
            str(k): ({kk: v[kk] for kk in ("n", "split", "image_size")} if v else None)
            for k, v in data_by_run.items()
        },
        "seconds": round(time.time() - started, 1),
    }


def _mcu_targets(names) -> list[str]:
    from cnnedge.firmware import targets as fw_targets
    from cnnedge.utils import split_list

    out = split_list(names) if names else []
    out = fw_targets.names() if out == ["all"] else out
    for name in out:
        fw_targets.get(name)
    return out


def _measure(files, n, plan, timeout, progress, isolate, profile, out_dir):
    """(rows, notes, profile summaries, test images by run) of every file; ``plan``: (runtimes
    kept, thread counts, batch sizes, timing). Profiler files go to ``out_dir`` unless a row
    failed (the earlier ones stay) or it is None."""
    notes: list[str] = []
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="cnnedge-bench-") as tmp:
        workdir = Path(tmp)
        data_by_run: dict = {}
        for t in files:
            if t.error is None and t.run is not None and t.run.path not in data_by_run:
                data_by_run[t.run.path] = save_test_images(t.run, n, workdir, notes)
        for t in files:
            rows += _rows_of(t, *plan, data_by_run, workdir, timeout, notes, progress, isolate, profile)
        # the profiler files live in the worker folder, which goes away with this block
        if any(r["status"] == FAILED for r in rows):
            out_dir = None
        profiles = [_keep_profile(r, out_dir) for r in rows if "_profile" in r]
    # accuracy is measured once per (artifact, runtime): the other thread counts and modes of
    # the same runtime (keras-predict runs the very model keras-tf.function runs) share it
    acc = {}
    for r in rows:
        if r["accuracy"] is not None:
            acc.setdefault((r["path"], r["_runtime"]), (r["accuracy"], r["images"]))
    for r in rows:
        if r["status"] == OK and r["accuracy"] is None:
            r["accuracy"], r["images"] = acc.get((r["path"], r["_runtime"]), (None, None))
        del r["_runtime"]
        r.pop("_profile", None)
    return rows, notes, profiles, data_by_run


def _rows_of(
    t: Target,
    keep,
    thread_list,
    sizes,
    timing,
    data_by_run,
    workdir,
    timeout,
    notes,
    progress,
    isolate,
    profile=False,
) -> list[dict]:
    """Every row of one file: runtime × mode × threads (or one ➖/❌ row per runtime)."""
    from cnnedge import runtime

    try:
        names = runtime.runtimes_for(t.path)
    except CnnedgeError:
        names = []
    plan = row_runtimes(names) or [("?", None, None)]
    if keep is not None:
        plan = [p for p in plan if p[0] in keep]
    mcu = None
    if t.error is None and t.path.suffix.lower() in {
        a.suffix for a in artifacts.TABLE if a.format == "tflite"
    }:
        try:
            mcu = tflite_memory_estimate(t.path)
        except CnnedgeError as e:
            notes.append(f"{t.name}: no microcontroller estimate ({e})")
    measured = _tflm_arena(t, mcu, notes) if t.error is None else None
    data, img_size = _test_data(t, data_by_run, workdir)
    meta = t.meta or {}
    rows, ran = [], set()
    for bench_name, name, mode in plan:
        ok, why = (False, "no runtime runs this file type") if name is None else runtime.runtime_status(name)
        if not ok or t.error is not None:
            row = _row(t, bench_name, None)
            row.update(
                status=UNAVAILABLE if not ok else FAILED, reason=why if not ok else t.error, _runtime=name
            )
            rows.append(row)
            _emit(progress, row)
            continue
        for th in thread_list:
            spec = {
                "path": str(t.path),
                "runtime": name,
                "mode": mode,
                "threads": th,
                "timing": asdict(timing),
                "batch_sizes": sizes,
                "seed": 0,
                "accuracy": data is not None and name not in ran,
                "images": (data or {}).get("images"),
                "labels": (data or {}).get("labels"),
                "image_size": list(img_size),
                "channels": int((data or {}).get("channels") or meta.get("channels") or 1),
                "profile": str(workdir / f"prof_{t.path.stem}_{bench_name}_t{th}") if profile else None,
            }
            ran.add(name)
            row = _row(t, bench_name, th)
            res = spawn(spec, workdir, timeout) if isolate else run_row(spec)
            row.update({k: v for k, v in res.items() if k in row})
            row["_runtime"] = name
            if profile and row["status"] == OK:
                row["_profile"] = res.get("profile") or {"note": "no profiler"}
            if mcu:
                # the greedy plan only where TFLM cannot measure (a dynamic-size file)
                row.update(
                    mcu_arena_bytes=mcu["arena_bytes"] if measured is None else None,
                    mcu_flash_bytes=mcu["flash_bytes"],
                    mcu_weight_bytes=mcu["weight_bytes"],
                )
            row["tflm_arena_bytes"] = measured
            rows.append(row)
            _emit(progress, row)
    return rows


def _test_data(t: Target, data_by_run: dict, workdir: Path):
    """(test images or None, input size) a file is timed and scored at: its run's images,
    resized for a fixed-size file exported at another size; without images, its own size."""
    data = data_by_run.get(t.run.path) if t.run is not None else None
    meta = t.meta or {}
    fixed = meta.get("image_size") if meta.get("dynamic_hw") is False else None
    if data and fixed and list(data["image_size"]) != list(fixed):
        data = resized_images(data, fixed, workdir)
    img_size = (
        (data or {}).get("image_size")
        or meta.get("image_size")
        or [max(32, int(meta.get("min_input_size") or 1))] * 2
    )
    return data, img_size


def _tflm_arena(t: Target, mcu: dict | None, notes: list) -> int | None:
    """The arena TFLite Micro allocates a fixed-size file in (measured, bytes), with a note that
    sets it beside the greedy estimate and TFLM's own allocation report."""
    from cnnedge.runtime import tflm as runtime_tflm

    if not artifacts.is_static(t.path) or not runtime_tflm.check()[0]:
        return None
    try:
        m = runtime_tflm.measure_arena(t.path.read_bytes(), t.path)
    except CnnedgeError as e:
        notes.append(f"{t.name}: no TFLite Micro arena ({e})")
        return None
    a, est = m["allocations"], (mcu or {}).get("arena_bytes")
    vs = (
        f"; cnnedge's greedy estimate, {est:,} "
        f"({100 * (est - m['arena_bytes']) / m['arena_bytes']:+.0f} %), plans activations only"
        if est
        else ""
    )
    parts = ", ".join(f"{k} {v:,}" for k, v in a.items() if not k.startswith("arena "))
    notes.append(
        f"{t.name}: TFLite Micro arena {m['arena_bytes']:,} bytes (smallest that "
        f"allocates; head {a.get('arena head', 0):,} + tail {a.get('arena tail', 0):,})"
        f"{vs}; TFLM's allocations: {parts}"
    )
    return m["arena_bytes"]


def profile_name(row: dict) -> str:
    """profile_<artifact>_<runtime>_t<threads>.json: one file per row."""
    return f"profile_{Path(row['artifact']).stem}_{row['runtime']}_t{row['threads']}.json"


def _keep_profile(row: dict, out_dir: Path | None) -> dict:
    """A row's profile summary for the report's ``profiles``; its profiler JSON moved to ``out_dir``
    (no file when nothing is written)."""
    import shutil

    p = dict(row["_profile"])
    src = p.pop("file", None)
    if src and out_dir is not None and Path(src).is_file():
        dest = Path(out_dir) / profile_name(row)
        dest.parent.mkdir(parents=True, exist_ok=True)  # before write_report makes it
        shutil.move(src, dest)
        p["file"] = str(dest)
    return {"artifact": row["artifact"], "runtime": row["runtime"], "threads": row["threads"], **p}


def _emit(progress, row):
    if progress is not None:
        progress({k: v for k, v in row.items() if not k.startswith("_")})
