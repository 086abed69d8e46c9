"""Bench rows for microcontroller cores (``cnnedge bench RUN --target cortex-m4``): the run's
TFLM firmware built, run and measured on each core by :func:`cnnedge.firmware.build_firmware`
(or its report reused while it holds the same model), one row per core with flash, RAM, the
arena TFLM allocated, instructions per inference and the latency estimate at the core's stated
clock. These rows have no host timings; their accuracy is the on-device parity run's."""

from __future__ import annotations

from pathlib import Path

from cnnedge.bench.report import COLUMNS
from cnnedge.bench.worker import FAILED, OK
from cnnedge.errors import CnnedgeError

STATIC = "model_int8_static.tflite"


def firmware_source(paths, run) -> Path:
    """What the firmware is built from: a fixed-size TFLM file's folder (its ``tflm/`` bundle
    beside it), else the run directory (exported to TFLM when it has no bundle)."""
    for p in paths:
        if Path(p).name == STATIC and (Path(p).parent / "tflm").is_dir():
            return Path(p).parent
    if run is not None:
        return run.path
    raise CnnedgeError(
        f"--target needs a run directory or a {STATIC} with its tflm/ bundle "
        f"beside it (cnnedge export RUN --format tflm)"
    )


def _fresh_report(source: Path, target: str):
    """The firmware report of ``source`` for ``target`` when it holds the current model."""
    from cnnedge.firmware import load_report
    from cnnedge.firmware.report import sha256
    from cnnedge.firmware.source import resolve_source

    src = resolve_source(source)
    folder = src.out / target
    if not (folder / "report.json").is_file():
        return None
    from cnnedge.firmware import targets, tflm_tree

    try:
        r = load_report(folder)
    except CnnedgeError:
        return None
    t = targets.get(target)
    same = (
        r.model_sha256 == sha256(src.tflite)
        and r.tflm_commit == tflm_tree.COMMIT
        and r.kernels == targets.kernels_for(t, None)
    )
    return r if same else None


def firmware_rows(paths, run, targets, *, tflm_dir=None, parity_images: int = 0, log=None) -> list[dict]:
    """One bench row per core of ``targets`` (a failed build is a ❌ row with its reason)."""
    from cnnedge.firmware import build_firmware

    source = firmware_source(paths, run)
    rows = []
    for target in targets:
        row = dict.fromkeys(COLUMNS)
        row.update(
            artifact=STATIC,
            runtime=f"firmware-{target}",
            threads=1,
            format="tflm",
            precision="int8",
            mcu_target=target,
        )
        try:
            rep = _fresh_report(source, target) or build_firmware(
                source, target, tflm_dir=tflm_dir, parity_images=parity_images, log=log
            )
        except CnnedgeError as e:
            row.update(status=FAILED, reason=str(e))
            rows.append(row)
            continue
        rows.append(_fill(row, rep))
    return rows


def _fill(row: dict, rep) -> dict:
    p = rep.parity or {}
    folder = Path(rep.folder)
    row.update(
        status=OK,
        reason=None,
        path=str(folder / "report.json"),
        accuracy=p.get("accuracy_device"),
        images=p.get("images"),
        file_bytes=rep.flash.get("model") or None,
        macs_per_image=rep.macs_per_image,
        tflm_arena_bytes=rep.arena_used,
        fw_flash_bytes=rep.flash.get("total"),
        fw_ram_bytes=rep.ram.get("total"),
        fw_instructions=rep.instructions,
        fw_est_ms=rep.estimate_ms,
        fw_clock_mhz=rep.clock_mhz,
    )
    return row
