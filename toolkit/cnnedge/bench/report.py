"""Bench reports: machine facts, --compare ratios, --fail-under gates, bench.json/.csv/.png and
the terminal tables."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from pathlib import Path

from cnnedge.bench.options import BATCH_SIZES
from cnnedge.bench.plot import plot
from cnnedge.bench.result import BenchReport
from cnnedge.bench.worker import FAILED, OK, STATUS_MARK
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run

# flat columns of bench.csv (and the order of keys in each bench.json row)
COLUMNS = [
    "artifact",
    "runtime",
    "threads",
    "status",
    "reason",
    "format",
    "precision",
    "accuracy",
    "images",
    "file_bytes",
    "params",
    "macs_per_image",
    "import_ms",
    "load_ms",
    "first_ms",
    "runs",
    "mean_us",
    "p50_us",
    "p90_us",
    "p99_us",
    "ips_b1",
    "ips_b32",
    "ips_b256",
    "runs_b32",
    "runs_b256",
    "peak_rss_mb",
    "mem_mb",
    "mcu_arena_bytes",
    "mcu_flash_bytes",
    "mcu_weight_bytes",
    "tflm_arena_bytes",
    "mcu_target",
    "fw_flash_bytes",
    "fw_ram_bytes",
    "fw_instructions",
    "fw_est_ms",
    "fw_clock_mhz",
    "providers",
    "speed_ratio",
    "throughput_ratio_b1",
    "throughput_ratio_b32",
    "throughput_ratio_b256",
    "path",
]


def machine_info() -> dict:
    from cnnedge.utils import cpu_model

    cpu = cpu_model()
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem,
        "python": platform.python_version(),
    }


# ------------------------------------------------------------------------------ compare / gates
def _key(r: dict) -> tuple:
    return (r.get("artifact"), r.get("runtime"), r.get("threads"))


def load_baseline(path) -> dict:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as e:
        raise CnnedgeError(f"--compare: cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise CnnedgeError(f"--compare: {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise CnnedgeError(f"--compare: {path} is not a {Run.BENCH[0]} (no 'rows' list)")
    data["_path"] = str(path)
    return data


def _ratio(a, b):
    if a is None or b is None or not b or not a:
        return None
    return float(a) / float(b)


def apply_compare(rows: list[dict], baseline: dict) -> dict:
    base = {_key(r): r for r in baseline["rows"] if r.get("status") == OK}
    matched = []
    for r in rows:
        b = base.get(_key(r))
        if r["status"] != OK or b is None:
            continue
        r["speed_ratio"] = _ratio(b.get("p50_us"), r["p50_us"])
        for bs in BATCH_SIZES:
            r[f"throughput_ratio_b{bs}"] = _ratio(r.get(f"ips_b{bs}"), b.get(f"ips_b{bs}"))
        matched.append(
            {
                "artifact": r["artifact"],
                "runtime": r["runtime"],
                "threads": r["threads"],
                "p50_us": r["p50_us"],
                "baseline_p50_us": b.get("p50_us"),
                "speed_ratio": r["speed_ratio"],
                **{f"throughput_ratio_b{bs}": r[f"throughput_ratio_b{bs}"] for bs in BATCH_SIZES},
            }
        )
    return {
        "baseline": baseline["_path"],
        "baseline_date": (baseline.get("header") or {}).get("date"),
        "matched": len(matched),
        "rows": matched,
    }


def check_gates(rows: list[dict], gates: dict) -> list[str]:
    out = []
    for r in rows:
        if r["status"] != OK:
            continue
        who = f"{r['artifact']} on {r['runtime']} ({r['threads']} thread{'s' * (r['threads'] != 1)})"
        if "accuracy" in gates and r["accuracy"] is not None and r["accuracy"] < gates["accuracy"]:
            out.append(f"{who}: accuracy {r['accuracy']:.4f} < {gates['accuracy']}")
        if "speed" in gates and r["speed_ratio"] is not None and r["speed_ratio"] < gates["speed"]:
            out.append(f"{who}: speed ratio {r['speed_ratio']:.2f} (p50 vs baseline) < {gates['speed']}")
        if "throughput" in gates:
            for bs in BATCH_SIZES:
                v = r.get(f"throughput_ratio_b{bs}")
                if v is not None and v < gates["throughput"]:
                    out.append(f"{who}: throughput ratio at batch {bs} {v:.2f} < {gates['throughput']}")
    return out


# ------------------------------------------------------------------------------ output files
def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    return buf.getvalue()


def write_report(report: BenchReport, out_dir, failed: bool = False) -> dict:
    """bench.json/.csv/.png in ``out_dir``, each replaced atomically; a complete report also
    removes the bench.failed.* of an earlier failed bench. ``failed`` (rows that could not
    run): bench.failed.json/.csv/.png instead, and the previous report stays as it was."""
    from cnnedge.files import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = {Path(name).suffix[1:]: out_dir / name for name in Run.BENCH}
    files = {k: str(Run.failed_report(p) if failed else p) for k, p in names.items()}
    report.files = files
    m = report.header["machine"]
    plot(
        report.rows,
        Path(files["png"]),
        title=f"cnnedge bench — {m['cpu']}, {m['cores']} "
        f"cores" + (" (quick: not figures to report)" if report.header.get("quick") else ""),
        images=report.header.get("images"),
    )
    atomic_write_text(files["csv"], to_csv(report.rows))
    atomic_write_json(files["json"], report.to_dict())
    for path in names.values() if not failed else ():
        Run.failed_report(path).unlink(missing_ok=True)
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


def _firmware_note(r: dict) -> str:
    est = (
        f", ≈{r['fw_est_ms']:.1f} ms at {r['fw_clock_mhz']} MHz (estimate)"
        if r.get("fw_est_ms") is not None
        else ""
    )

    def kib(v):
        return "–" if v is None else f"{v / 1024:.1f} KiB"

    ins = "–" if r.get("fw_instructions") is None else f"{r['fw_instructions'] / 1e6:.2f} M"
    return (
        f"{r['runtime']}: flash {kib(r['fw_flash_bytes'])}, RAM {kib(r['fw_ram_bytes'])}, "
        f"{ins} instructions per inference{est}"
    )


def table(report: BenchReport):
    """The rich Table of a report's rows (the CLI prints it); the reason of each ❌/➖ row is
    a line under the table (mean latency, run counts, ratios: bench.json/.csv)."""
    from rich import box
    from rich.table import Table

    h = report.header
    notes = []
    for r in report.rows:
        if r["status"] == OK and r.get("mcu_target"):
            notes.append(_firmware_note(r))
        if r["status"] != OK:
            notes.append(
                f"{STATUS_MARK[r['status']]} {r['artifact']} on {r['runtime']}"
                + (f" ({r['threads']} threads)" if r["threads"] else "")
                + f": {r['reason']}"
            )
    t = Table(
        title=f"cnnedge bench — {h['machine']['cpu']}, {h['machine']['cores']} cores"
        + (" (quick)" if h.get("quick") else ""),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
        caption="\n".join(notes) or None,
        caption_justify="left",
    )
    for col in (
        "artifact",
        "runtime",
        "thr",
        "",
        "acc",
        "KB",
        "load ms",
        "1st ms",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "img/s b1",
        "b32",
        "b256",
        "mem MB",
        "arena KB",
        "TFLM arena KB",
    ):
        t.add_column(col, justify="left" if col in ("artifact", "runtime", "") else "right", no_wrap=True)
    for r in report.rows:
        t.add_row(
            r["artifact"],
            r["runtime"],
            "–" if r["threads"] is None else str(r["threads"]),
            STATUS_MARK[r["status"]],
            _fmt(r["accuracy"], "{:.4f}"),
            _num(r["file_bytes"] / 1024 if r["file_bytes"] else None),
            _num(r["load_ms"]),
            _num(r["first_ms"]),
            _num(r["p50_us"]),
            _num(r["p90_us"]),
            _num(r["p99_us"]),
            _num(r["ips_b1"]),
            _num(r["ips_b32"]),
            _num(r["ips_b256"]),
            _num(r["mem_mb"]),
            _num(r["mcu_arena_bytes"] / 1024 if r["mcu_arena_bytes"] else None),
            _num(r["tflm_arena_bytes"] / 1024 if r.get("tflm_arena_bytes") else None),
        )
    return t


def compare_table(report: BenchReport):
    from rich import box
    from rich.table import Table

    c = report.compare
    t = Table(
        title=f"vs {c['baseline']} ({c['matched']} matching rows; speed = baseline p50 / p50, > 1 is faster)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in (
        "artifact",
        "runtime",
        "thr",
        "p50 µs",
        "base p50 µs",
        "speed",
        "thrpt b1",
        "thrpt b32",
        "thrpt b256",
    ):
        t.add_column(col, justify="left" if col in ("artifact", "runtime") else "right")
    for m in c["rows"]:
        t.add_row(
            m["artifact"],
            m["runtime"],
            str(m["threads"]),
            _us(m["p50_us"]),
            _us(m["baseline_p50_us"]),
            _fmt(m["speed_ratio"], "×{:.2f}"),
            *[_fmt(m[f"throughput_ratio_b{b}"], "×{:.2f}") for b in BATCH_SIZES],
        )
    return t


def profile_table(report: BenchReport, top: int = 5):
    """The --profile summary: per onnxruntime row its top nodes by kernel time and their share
    of the profiled calls; other runtimes' rows say "no profiler"."""
    from rich import box
    from rich.table import Table

    # the profiled calls run slower than the timed ones (the profiler's own bookkeeping), so
    # the shares are the figures to read; the row's p50 comes from an unprofiled session
    t = Table(
        title="per-node profile (onnxruntime profiler, separate from the timed calls; % of "
        "the profiled calls' time)",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("artifact", "runtime", "thr", "node", "op", "total µs", "median µs", "%"):
        t.add_column(
            col,
            justify="right" if col in ("thr", "total µs", "median µs", "%") else "left",
            no_wrap=col != "node",
        )
    for p in report.profiles or []:
        head = [p["artifact"], p["runtime"], str(p["threads"])]
        if not p.get("nodes"):
            t.add_row(*head, p.get("note") or "no node events", "", "", "", "")
            continue
        for k, n in enumerate(p["nodes"][:top]):
            t.add_row(
                *(head if k == 0 else ["", "", ""]),
                n["node"],
                n["op"] or "",
                _num(n["total_us"]),
                _num(n["median_us"]),
                _fmt(None if n["share"] is None else 100 * n["share"], "{:.1f}"),
            )
    return t


def progress_line(row: dict) -> str:
    thr = "" if row["threads"] is None else f" t={row['threads']}"
    if row["status"] == OK:
        return (
            f"{STATUS_MARK[OK]} {row['artifact']} {row['runtime']}{thr}: p50 "
            f"{_us(row['p50_us'])} µs, {_fmt(row['ips_b1'], '{:,.0f}')} img/s"
        )
    return f"{STATUS_MARK[row['status']]} {row['artifact']} {row['runtime']}{thr}: {row['reason']}"


def failure_lines(report: BenchReport) -> list[str]:
    """One line per failed row and per unmet gate (the CLI prints them as errors)."""
    out = [
        f"{r['artifact']} on {r['runtime']}"
        + (f" ({r['threads']} thread{'s' * (r['threads'] != 1)})" if r["threads"] else "")
        + f" failed: {r['reason']}"
        for r in report.rows
        if r["status"] == FAILED
    ]
    return out + [f"gate --fail-under: {g}" for g in report.gate_failures]


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
