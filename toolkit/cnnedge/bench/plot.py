"""bench.png: accuracy against p50 latency of every row that ran, one thing per channel
(colour = runtime, marker = artifact, a panel per thread count), the Pareto front labelled, and
a panel of microcontroller rows when --target ran."""

from __future__ import annotations

from pathlib import Path

from cnnedge.bench.worker import OK


def pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no other row dominates (as fast or faster and as accurate or more, better in
    one), by latency: the best accuracy each latency budget buys. Identical points both stay."""

    def dominated(r):
        return any(
            o["p50_us"] <= r["p50_us"]
            and o["accuracy"] >= r["accuracy"]
            and (o["p50_us"] < r["p50_us"] or o["accuracy"] > r["accuracy"])
            for o in rows
        )

    return sorted((r for r in rows if not dominated(r)), key=lambda r: (r["p50_us"], r["accuracy"]))


def row_label(r: dict) -> str:
    return f"{r['artifact']} · {r['runtime']} · {r['threads']}t"


def accuracy_label(rows: list[dict], images: dict | None) -> str:
    """'accuracy on the test split (1,000 images)': the split from the report header's images
    (what save_test_images chose), the count from the rows (the number measured on)."""
    splits = sorted({v["split"] for v in (images or {}).values() if v and v.get("split")})
    counts = sorted({int(r["images"]) for r in rows if r.get("images")})
    where = f" on the {' / '.join(splits)} split" if splits else ""
    many = " / ".join(f"{c:,}" for c in counts)
    return f"accuracy{where}" + (f" ({many} images)" if counts else "")


def figure(rows: list[dict], title: str = "", images: dict | None = None):
    """The bench.png Figure: accuracy vs p50 latency (log x) of every ✅ row with an accuracy,
    one panel per thread count, each with its Pareto front.

    One thing per channel, so that a reader can match a point to its row: the colour is the
    runtime, the marker the artifact, the panel the thread count (two short legends instead of
    one entry per row). The front's points are labelled beside them: they are the few rows worth
    reading off, and a step line through them shows what each latency budget buys.
    """
    from matplotlib.figure import Figure

    pts = [r for r in rows if r["status"] == OK and r.get("p50_us") and r.get("accuracy") is not None]
    pts = [r for r in pts if not r.get("mcu_target")]
    fw = [r for r in rows if r.get("mcu_target") and r["status"] == OK]
    threads = sorted({r["threads"] for r in pts}, key=lambda t: (t is None, t or 0)) or [None]
    fig = Figure(figsize=(min(6.0 * (len(threads) + bool(fw)), 24) + 2.6, 6.0))
    axes = fig.subplots(1, len(threads) + bool(fw), squeeze=False)[0]
    for ax in axes[1 : len(threads)]:
        ax.sharey(axes[0])
    if fw:
        firmware_panel(axes[-1], fw)
        axes = axes[:-1]
    runtimes = list(dict.fromkeys(r["runtime"] for r in pts))
    arts = list(dict.fromkeys(r["artifact"] for r in pts))
    colour = {rt: f"C{i % 10}" for i, rt in enumerate(runtimes)}
    marker = {a: _MARKERS[i % len(_MARKERS)] for i, a in enumerate(arts)}
    for ax, t in zip(axes, threads):
        mine = [r for r in pts if r["threads"] == t]
        for r in mine:  # hollow: rows at the same point (a tie) still show each outline
            ax.plot(
                [r["p50_us"]],
                [r["accuracy"]],
                linestyle="none",
                ms=8,
                mfc="none",
                mew=1.6,
                marker=marker[r["artifact"]],
                color=colour[r["runtime"]],
                label=row_label(r),
                zorder=3,
            )
        _front(ax, mine)
        ax.set(
            xlabel="p50 latency per call at batch 1 (µs, log scale)",
            title="threads: n/a" if t is None else f"{t} thread{'s' * (t != 1)}",
        )
        ax.grid(alpha=0.3, which="both")
        if mine:
            ax.set_xscale("log")
    axes[0].set_ylabel(accuracy_label(pts, images))
    if pts:
        _legends(fig, colour, marker)
    else:
        axes[0].text(
            0.5, 0.5, "no successful row with accuracy", ha="center", va="center", transform=axes[0].transAxes
        )
    fig.suptitle(title or "cnnedge bench: accuracy vs latency")
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / fig.get_figwidth(), 1))
    return fig


_MARKERS = "o^sDvP*XhpH<>d8"


def firmware_panel(ax, rows: list[dict]) -> None:
    """bench.png's microcontroller panel: instructions per inference by core (estimated ms at
    the stated clock written on each bar where a calibration exists)."""
    mine = [
        r
        for r in rows
        if r.get("mcu_target") and r["status"] == OK and r["fw_instructions"] and r["fw_flash_bytes"]
    ]
    names = [r["mcu_target"] for r in mine]
    values = [r["fw_instructions"] / 1e6 for r in mine]
    bars = ax.barh(names, values, color="C0")
    for bar, r in zip(bars, mine):
        text = f"{r['fw_flash_bytes'] / 1024:.0f} KiB flash, {r['fw_ram_bytes'] / 1024:.0f} KiB RAM"
        if r.get("fw_est_ms") is not None:
            text += f", ≈{r['fw_est_ms']:.0f} ms @ {r['fw_clock_mhz']} MHz (estimate)"
        ax.annotate(
            text,
            (bar.get_width(), bar.get_y() + bar.get_height() / 2),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=7,
        )
    ax.set(
        xlabel="instructions per inference (millions, counted under QEMU)",
        title="microcontroller firmware (TFLite Micro)",
    )
    ax.grid(alpha=0.3, axis="x")


def _front(ax, rows: list[dict]) -> None:
    """The panel's Pareto front: a step line through grey halos, each point labelled."""
    front = pareto_front(rows)
    if not front:
        return
    # steps-post: from each front row, its accuracy holds until a slower row buys more
    ax.plot(
        [r["p50_us"] for r in front],
        [r["accuracy"] for r in front],
        color="0.35",
        lw=1.2,
        ls="--",
        drawstyle="steps-post",
        zorder=2,
        gid="pareto",
        marker="o",
        ms=17,
        mfc="0.82",
        mec="none",
        label=f"Pareto front ({len(front)} rows)",
    )
    for i, r in enumerate(front):  # alternate above/below: neighbours on a step do not collide
        ax.annotate(
            f"{Path(r['artifact']).name} · {r['runtime']}",
            (r["p50_us"], r["accuracy"]),
            xytext=(6, 9 if i % 2 == 0 else -13),
            textcoords="offset points",
            fontsize=7,
            color="0.2",
            gid="front-label",
        )


def _legends(fig, colour: dict, marker: dict) -> None:
    from matplotlib.lines import Line2D

    def handles(items, style):
        return [
            Line2D([], [], linestyle="none", ms=7, mfc="none", mew=1.6, label=k, **style(v))
            for k, v in items.items()
        ]

    first = fig.legend(
        handles=handles(colour, lambda c: {"marker": "o", "color": c}),
        title="colour: runtime",
        loc="upper right",
        fontsize=7,
        title_fontsize=7.5,
    )
    fig.add_artist(first)
    fig.legend(
        handles=handles(marker, lambda m: {"marker": m, "color": "0.2"}),
        title="marker: artifact",
        loc="center right",
        fontsize=7,
        title_fontsize=7.5,
    )
    fig.legend(
        handles=[
            Line2D(
                [],
                [],
                color="0.35",
                ls="--",
                marker="o",
                ms=11,
                mfc="0.82",
                mec="none",
                label="Pareto front: none faster\nand more accurate",
            )
        ],
        loc="lower right",
        fontsize=7,
    )


def plot(rows: list[dict], out: Path, title: str = "", images: dict | None = None) -> Path:
    """Write bench.png (see :func:`figure`)."""
    from cnnedge.files import atomic_path

    fig = figure(rows, title, images)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    return out
