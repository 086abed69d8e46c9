"""The parity report: :class:`VerifyReport` (``verify.json`` is its :meth:`~VerifyReport.to_dict`)
and its text, shared by ``verify.md`` and the CLI table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from cnnedge.verify.gates import HARD_GATE_IMAGES, gate

GATE_ICONS = {"pass": "✅", "fail": "❌", "inconclusive": "❔", "info": "➖"}
INTERVAL = "clopper-pearson 95 %"


@dataclass(kw_only=True)
class VerifyReport:
    """What :func:`cnnedge.verify.verify` measured. Each row (a dict, as in verify.json) is one
    artifact on one runtime, or a Keras reference: accuracy, agreement with its reference, its
    95 % interval, logit differences, flips, gate. ``passed`` (default: no row's gate failed)
    and ``inconclusive`` (default: the rows whose gate is) follow from the rows."""

    run: str
    split: str
    images: int  # images compared
    split_images: int | None = None  # images in the split
    class_names: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)  # by precision key, fractions
    gate_ptq: bool = False
    interval: str = INTERVAL
    hard_gate_images: int = HARD_GATE_IMAGES
    rows: list
    passed: bool | None = None
    inconclusive: list | None = None
    notes: list = field(default_factory=list)
    firmware: list = field(default_factory=list)  # on-device parity, one row per target

    def __post_init__(self):
        if self.passed is None:
            self.passed = all(r.get("passed", True) for r in self.rows) and all(
                r["gate"] != "fail" for r in self.firmware
            )
        if self.inconclusive is None:
            self.inconclusive = [r["artifact"] for r in self.rows if r["gate"] == "inconclusive"]

    def to_dict(self) -> dict:
        """The report as verify.json holds it (the same keys, in the same order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> VerifyReport:
        """A report read back from verify.json."""
        return cls(**d)


def flips_text(row: dict) -> str:
    """The flips cell: "59", or for int8 artifacts "59 (46 ≤ 1 step)", counting the flips the
    reference itself ranks within one output quantization step."""
    near = row.get("flips_within_one_step")
    return f"{row['flips']}" if near is None or not row["flips"] else f"{row['flips']} ({near} ≤ 1 step)"


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
    return [
        row["artifact"] + (f" at {size}" if size else ""),
        row["runtime"],
        f"{row['accuracy']:.4f}",
        row["reference"],
        f"{100 * row['agreement']:.2f} %",
        ci_text(row),
        f"{row['max_abs_logit_diff']:.4f}",
        f"{row['mean_abs_logit_diff']:.4f}",
        flips_text(row),
        gate_text(row),
    ]


def more_images(report: VerifyReport) -> str:
    """What to run for firmer evidence: more images while the split has them."""
    total, n, run = report.split_images or 0, report.images, report.run
    if total >= 2000 or not total:
        return f"rerun on more images: cnnedge verify {run} -n 2000"
    if n < total:
        return f"rerun on the whole {report.split} split: cnnedge verify {run}"
    return f"the {report.split} split holds only {total:,} images; more evidence needs a larger one"


def gate_lines(report: VerifyReport) -> list:
    """A line per inconclusive row (with the advice to rerun on more images) and per non-gated row
    that has a threshold (the PTQ model: how it fares against its bar)."""
    n, lines = report.images, []
    for r in report.rows:
        head = (
            f"{r['artifact']}: {100 * r['agreement']:.2f} % agreement on {n:,} images (95 % CI {ci_text(r)})"
        )
        thr = r.get("threshold")
        if r["gate"] == "inconclusive":
            lines.append(
                f"{head} is under its {100 * thr:g} % bar, but the interval reaches it: "
                f"inconclusive, not a failure; {more_images(report)}"
            )
        elif r["gate"] == "info" and thr is not None:
            would = gate(n - r["flips"], n, thr)
            lines.append(
                f"{head}: PTQ, a comparison point for QAT, reported but not gated "
                f"(against its {100 * thr:g} % bar: {would}; --gate-ptq gates it)"
            )
    return lines


def agreement_lines(report: VerifyReport) -> list:
    """ "<artifact> vs <other>: 100.00 % top-1 agreement" for the extra agreements (int8 ONNX and
    TFLite Micro against the int8 TFLite; TFLite Micro with its largest output difference in
    steps), with the row's note (an int8-weight ONNX that drifts on a CPU without VNNI)."""
    return [
        f"{r['artifact']} vs {k[len('agreement_with_') :]}: {100 * v:.2f} % top-1 agreement"
        + (f", outputs within {r[steps]} int8 step(s)" if r.get(steps) is not None else "")
        + (f" -- {r['note']}" if r.get("note") else "")
        for r in report.rows
        for k, v in r.items()
        if k.startswith("agreement_with_")
        for steps in ["max_steps_vs_" + k[len("agreement_with_") :]]
    ]


def title(report: VerifyReport) -> str:
    """ "parity on 120 of 10,000 test images": every report names its split and image count."""
    n, total = report.images, report.split_images
    of = f"{n:,} of {total:,}" if total and total > n else f"{n:,}"
    return f"parity on {of} {report.split} images"


def markdown(report: VerifyReport) -> str:
    lines = [
        f"P{title(report)[1:]} of {report.run}",
        "",
        "| artifact | runtime | accuracy | reference | top-1 agreement | 95 % CI | max abs "
        "logit diff | mean abs logit diff | flips | gate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in report.rows]
    lines += ["\n" + line for line in agreement_lines(report) + gate_lines(report) + report.notes]
    lines.append(
        f"\ngate: pass = agreement at or over its bar; under it, fail, except on fewer "
        f"than {HARD_GATE_IMAGES:,} images while the 95 % Clopper–Pearson interval still "
        "reaches the bar: inconclusive (rerun on more images); info = reported, not gated."
    )
    lines += firmware_lines(report.firmware)
    if any(r.get("flips_within_one_step") for r in report.rows):
        lines.append(
            "\n≤ 1 step: flips where the reference's own top-2 logits are within one "
            "int8 output quantization step of each other (near-ties, not counted as "
            "agreement)."
        )
    return "\n".join(lines) + "\n"


def firmware_lines(rows: list) -> list[str]:
    """verify.md's on-device parity table (``cnnedge firmware`` reports), or nothing. Gate: pass
    when every output is within one step and every flip a near-tie (see cnnedge.firmware.parity)."""
    if not rows:
        return []
    out = [
        "",
        "On-device parity: model_int8_static.tflite as firmware on emulated cores "
        "(cnnedge firmware) against LiteRT on the same int8 inputs",
        "",
        "| target | board | kernels | images | top-1 agreement | max step diff | accuracy "
        "(device / LiteRT) | date | gate |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['target']} | {r['board'] or 'native'} | {r['kernels']} | "
            f"{r['images']} | {pct(r['top1_agreement'])} | {r['max_step_diff']} | "
            f"{pct(r['accuracy_device'])} / {pct(r['accuracy_litert'])} | {r['date']} | "
            f"{GATE_ICONS.get(r['gate'], '➖')} {r['gate']} |"
        )
    return out
