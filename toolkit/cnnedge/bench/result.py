"""What :func:`cnnedge.bench.bench` returns: :class:`BenchReport`, whose :meth:`~BenchReport.to_dict`
is bench.json."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class BenchReport:
    """A bench: its header (date, command, machine, versions, settings, test images), notes, one
    row per artifact × runtime (× mode) × threads (a dict with the bench.csv columns), the
    onnxruntime profiles, the ``--compare`` ratios, the gates, and where the report went."""

    header: dict
    notes: list
    rows: list
    profiles: list = field(default_factory=list)
    compare: dict | None = None  # matched rows against the baseline bench.json
    fail_under: dict = field(default_factory=dict)  # the gates asked for
    gate_failures: list = field(default_factory=list)  # one line per unmet gate
    failed_rows: int = 0  # ❌ rows
    exit_code: int = 0  # 1 when a row failed or a gate was not met
    out_dir: str = ""
    files: dict = field(default_factory=dict)  # json, csv, png paths written (none: {})

    def to_dict(self) -> dict:
        """The report as bench.json holds it (the same keys, in the same order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
