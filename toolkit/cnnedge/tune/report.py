"""What a tune shows: one row per candidate (tune.csv, tune.json's ``candidates``, the terminal
table) and tune.png — proxy accuracy against measured RAM and against instructions per
inference, the budget drawn as lines, the Pareto front marked, candidates over budget shown
where their cost puts them (untrained, on the floor)."""

from __future__ import annotations

from pathlib import Path

COLUMNS = [
    "id",
    "model",
    "width",
    "size",
    "pool",
    "grey",
    "kernel",
    "params",
    "macs",
    "ram",
    "flash",
    "arena",
    "instructions",
    "estimate_ms",
    "source",
    "status",
    "reason",
    "rung",
    "val_accuracy",
]


def rows(state: dict) -> list[dict]:
    """The candidates of a search state with their best trial: status over budget, trained
    (rung k), finalist (the last rung) or winner."""
    best: dict[str, dict] = {}
    for t in state.get("trials", []):
        b = best.get(t["id"])
        if b is None or (t["rung"], t["val_accuracy"] or 0) > (b["rung"], b["val_accuracy"] or 0):
            best[t["id"]] = t
    out = []
    for c in state["candidates"]:
        t = best.get(c["id"])
        status = (
            "over budget"
            if c.get("over")
            else f"same network as {c['same_as']}"
            if c.get("same_as")
            else "winner"
            if c["id"] == state.get("winner")
            else "finalist"
            if t and t.get("final")
            else f"trained (rung {t['rung']})"
            if t
            else "fits, not trained"
        )
        out.append(
            {
                **{k: c.get(k) for k in COLUMNS},
                "status": status,
                "reason": "; ".join(c.get("over") or []) or None,
                "rung": t["rung"] if t else None,
                "val_accuracy": t["val_accuracy"] if t else None,
            }
        )
    return out


def to_csv(table: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(table)
    return buf.getvalue()


def pareto(points: list[tuple[float, float, str]]) -> list[str]:
    """Ids of the (cost, accuracy, id) points no other beats on both (cheaper and better)."""
    return [
        i for c, a, i in points if not any(c2 <= c and a2 >= a and (c2 < c or a2 > a) for c2, a2, _ in points)
    ]


def plot(table: list[dict], budget: dict, out: Path, title: str) -> Path:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from cnnedge.files import atomic_path

    fig = Figure(figsize=(12, 5.2))
    axes = fig.subplots(1, 2)
    panels = (
        ("ram", 1024, "RAM (KiB, measured)", budget.get("ram")),
        ("instructions", 1e6, "instructions per inference (millions, counted)", None),
    )
    for ax, (key, scale, label, limit) in zip(axes, panels):
        trained = [r for r in table if r["val_accuracy"] is not None and r.get(key)]
        pts = [(r[key] / scale, r["val_accuracy"], r["id"]) for r in trained]
        for r, (x, y, i) in zip(trained, pts):
            colour = "C0" if i != table_winner(table) else "C3"
            if r.get("grey"):  # hollow squares: the one-channel models of --colors grey
                ax.plot([x], [y], "s", mec=colour, mfc="none", ms=7, mew=1.5)
            else:
                ax.plot([x], [y], "o", color=colour, ms=7)
        if any(r.get("grey") for r in trained):
            ax.plot([], [], "o", color="C0", label="colour input")
            ax.plot([], [], "s", mec="C0", mfc="none", mew=1.5, label="grey input")
        front = set(pareto(pts))
        on_front = sorted(p for p in pts if p[2] in front)
        for k, (x, y, i) in enumerate(on_front):  # alternate above/below: close points stay legible
            ax.annotate(
                i, (x, y), xytext=(4, 4 if k % 2 == 0 else -11), textcoords="offset points", fontsize=7
            )
        over = [r[key] / scale for r in table if r["status"] == "over budget" and r.get(key)]
        if over:
            ax.plot(over, [0] * len(over), "x", color="0.5", label="over budget (not trained)")
        if limit:
            ax.axvline(limit / scale, color="C3", ls="--", label="budget")
        ax.set_xscale("log")  # over-budget candidates reach 10-100× the budget
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # labels on minor ticks overlap
        ax.set(xlabel=label + ", log scale", ylabel="validation accuracy (best rung)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out


def table_winner(table: list[dict]) -> str | None:
    return next((r["id"] for r in table if r["status"] == "winner"), None)
