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
from cnnedge.bench.worker import FAILED, OK, STATUS_MARK
from cnnedge.errors import CnnedgeError
from cnnedge.run import Run

# flat columns of bench.csv (and the order of keys in each bench.json row)
COLUMNS = ["artifact", "runtime", "threads", "status", "reason", "format", "precision",
           "accuracy", "images", "file_bytes", "params", "macs_per_image", "import_ms", "load_ms",
           "first_ms", "runs", "mean_us", "p50_us", "p90_us", "p99_us",
           "ips_b1", "ips_b32", "ips_b256", "runs_b32", "runs_b256", "peak_rss_mb", "mem_mb",
           "mcu_arena_bytes", "mcu_flash_bytes", "mcu_weight_bytes", "providers",
           "speed_ratio", "throughput_ratio_b1", "throughput_ratio_b32",
           "throughput_ratio_b256", "path"]



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
        matched.append({"artifact": r["artifact"], "runtime": r["runtime"],
                        "threads": r["threads"], "p50_us": r["p50_us"],
                        "baseline_p50_us": b.get("p50_us"), "speed_ratio": r["speed_ratio"],
                        **{f"throughput_ratio_b{bs}": r[f"throughput_ratio_b{bs}"]
                           for bs in BATCH_SIZES}})
    return {"baseline": baseline["_path"], "baseline_date": (baseline.get("header") or {})
            .get("date"), "matched": len(matched), "rows": matched}


def check_gates(rows: list[dict], gates: dict) -> list[str]:
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
    files = {Path(name).suffix[1:]: str(out_dir / name) for name in Run.BENCH}
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
