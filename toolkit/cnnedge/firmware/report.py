"""What a firmware build measured, as written to ``<out>/<target>/report.json``.

Instructions are counted by the emulator between the firmware's inference markers: an
instruction count, not a cycle count. A latency is given only as an estimate, at the target's
stated clock, with cycles per instruction calibrated on MLPerf Tiny's ResNet-8 against its
published Cortex-M4 and Cortex-M7 results (``calibration.json``, written by
``python -m cnnedge.firmware.calibrate``); a core without its own calibration has no estimate.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.files import atomic_write_json
from cnnedge.utils import cpu_model

REPORT = "report.json"
CALIBRATION = Path(__file__).parent / "calibration.json"


def calibration() -> dict:
    """{target: {"cycles_per_instruction", "method", …}} (empty when never calibrated)."""
    try:
        return json.loads(CALIBRATION.read_text())
    except (OSError, ValueError):
        return {}


@dataclass
class FirmwareReport:
    target: str
    board: str | None
    kernels: str
    model: str
    image_size: list
    macs_per_image: int | None
    tflm_commit: str
    compiler: str
    model_sha256: str = ""  # of the .tflite the firmware holds
    arena_used: int | None = None  # arena_used_bytes() on the target
    arena_declared: int | None = None  # kTensorArenaSize
    arena_host: int | None = None  # the bundle's x86-64 reference measurement
    instructions: int | None = None  # per inference, between the markers
    instructions_total: int | None = None  # the whole run: start-up, allocation, printing
    clock_mhz: int | None = None
    estimate_ms: float | None = None
    estimate_method: str | None = None
    flash: dict = field(default_factory=dict)
    ram: dict = field(default_factory=dict)
    parity: dict | None = None
    run_seconds: float | None = None
    date: str = ""
    host_cpu: str = ""
    folder: Path | None = None

    @classmethod
    def from_run(cls, src, t, kernels: str, stamp: dict, exe, res) -> "FirmwareReport":
        meta = src.meta
        windows = res.icount.get("windows") or 0
        r = cls(
            target=t.name,
            board=t.board,
            kernels=kernels,
            model=src.tflite.name,
            image_size=list(meta["image_size"]),
            macs_per_image=meta.get("macs_per_image"),
            tflm_commit=stamp["commit"],
            compiler=stamp["compiler"],
            model_sha256=sha256(src.tflite),
            arena_used=res.value(r"arena: (\d+) of"),
            arena_declared=res.value(r"arena: \d+ of (\d+) bytes"),
            arena_host=meta.get("tflm_arena_bytes"),
            instructions=res.icount["window_insns"] // windows if windows else None,
            instructions_total=res.icount.get("total"),
            clock_mhz=t.clock_mhz,
            run_seconds=round(res.seconds, 2),
            date=datetime.date.today().isoformat(),
            host_cpu=cpu_model(),
        )
        r._estimate()
        return r

    def _estimate(self) -> None:
        cal = calibration().get(self.target)
        if cal and self.instructions and self.clock_mhz:
            cycles = self.instructions * float(cal["cycles_per_instruction"])
            self.estimate_ms = round(cycles / (self.clock_mhz * 1e3), 2)
            self.estimate_method = cal["method"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("folder")
        return d

    def write(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


def load_report(folder) -> FirmwareReport:
    """The report in ``folder`` (``<out>/<target>``)."""
    path = Path(folder) / REPORT
    try:
        d = json.loads(path.read_text())
        r = FirmwareReport(**d)
    except (OSError, ValueError, TypeError) as e:
        raise CnnedgeError(f"cannot read the firmware report {path}: {e}") from e
    r.folder = Path(folder)
    return r


def sha256(path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


FIRMWARE_DIR = "firmware"


def parity_rows(run_dir) -> list[dict]:
    """The on-device parity rows of a run's firmware reports (``<run>/firmware/*/report.json``),
    one per target: ``gate`` pass (100 % top-1, outputs within one step), fail, or stale (the
    firmware holds another model than the run's ``model_int8_static.tflite``)."""
    from cnnedge.run import Run

    run = Run(run_dir)
    static = run.export_dir / "model_int8_static.tflite"
    current = sha256(static) if static.is_file() else None
    rows = []
    for f in sorted((run.path / FIRMWARE_DIR).glob(f"[!.]*/{REPORT}")):  # not temporary ones
        try:
            r = load_report(f.parent)
        except CnnedgeError:
            continue
        if not r.parity:
            continue
        p = r.parity
        ok = p.get("passed", p["top1_agreement"] == 1.0 and p["within_tolerance"])
        gate = "stale" if r.model_sha256 != current else "pass" if ok else "fail"
        rows.append(
            {"target": r.target, "board": r.board, "kernels": r.kernels, **p, "date": r.date, "gate": gate}
        )
    return rows
