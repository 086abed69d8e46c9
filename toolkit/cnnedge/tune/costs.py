"""What a candidate costs on the board, measured before any training.

RAM, flash and instructions do not depend on the weights: the candidate is built untrained,
quantized to int8 on a few of the data's images (at the candidate's size), exported as a TFLM
bundle and built, run and measured as firmware for the target (:func:`cnnedge.firmware.
build_firmware`). For ``host`` there is no cross build: RAM is the arena TFLM allocates on the
host and flash the model file, both labelled as host figures. Results are kept per candidate in
the tune folder, so a resumed search does not measure again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.tune.space import Candidate

CALIBRATION_IMAGES = 16


def calibration_images(dataset: str, size: int, channels: int | None = None):
    """A few uint8 images of ``dataset``'s train split at ``size``×``size`` (converted to
    ``channels`` where given)."""
    from cnnedge import data
    from cnnedge.quantize import representative_images

    src = data.open_dataset(str(dataset), image_size=(size, size), channels=channels)
    split = "train" if "train" in src.info.split_sizes else src.splits[0]
    return list(representative_images(src, CALIBRATION_IMAGES, seed=0, split=split))


def measure(
    c: Candidate,
    *,
    dataset: str,
    num_classes: int,
    channels: int,
    target: str,
    folder: Path,
    tflm_dir=None,
    log=None,
) -> dict:
    """The costs of candidate ``c``, measured on its untrained int8 firmware (cached in
    ``folder/<id>/costs.json``).

    Args:
        c: The candidate.
        dataset: The data its 16 calibration images come from.
        num_classes: Classes of the model.
        channels: The data's channels (a grey candidate of colour data takes 1).
        target: The core (``cnnedge firmware`` targets) or ``host``.
        folder: The search's costs folder.
        tflm_dir: The TFLite Micro tree.
        log: Called with a progress line.

    Returns:
        {"params", "macs", "ram", "flash", "arena", "instructions", "estimate_ms", "source"}.
    """
    from cnnedge.files import atomic_write_json
    from cnnedge.firmware.tflm_tree import COMMIT

    out = folder / c.id
    cached = out / "costs.json"
    key = {
        "target": target,
        "classes": int(num_classes),
        "channels": int(channels),
        "dataset": str(dataset),
        "tflm": COMMIT,
    }
    if cached.is_file():
        try:
            figures = json.loads(cached.read_text())
        except ValueError:
            figures = {}
        if figures.get("key") == key:  # measured for the same target, data and TFLM
            return figures
    if out.exists():
        shutil.rmtree(out)  # an interrupted measurement: nothing of it is kept
    out.mkdir(parents=True)
    try:
        costs = _measure(c, dataset, num_classes, channels, target, out, tflm_dir, log)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    costs["key"] = key
    atomic_write_json(cached, costs)
    return costs


def _measure(c, dataset, num_classes, channels, target, out: Path, tflm_dir, log) -> dict:
    from cnnedge import models
    from cnnedge.export import export
    from cnnedge.firmware import build_firmware

    channels = c.channels(channels)
    model = models.create_model(c.model, num_classes=num_classes, channels=channels, **c.kwargs())
    path = out / "untrained.keras"
    model.save(path)
    if log:
        log(f"costs of {c.id}")
    export(
        path,
        formats="tflm",
        precisions="int8",
        out_dir=out / "export",
        calibration=calibration_images(dataset, c.size, channels),
        image_size=f"{c.size}x{c.size}",
        verify=0,
    )
    costs = {
        "params": int(model.count_params()),
        "macs": int(models.count_macs(model, (c.size, c.size, channels))),
    }
    try:
        r = build_firmware(out / "export", target, tflm_dir=tflm_dir, parity_images=0, out=out / "firmware")
    except CnnedgeError as e:
        if "does not fit" not in str(e):
            raise
        # bigger than the emulated board's memory: over any budget that board allows
        costs.update(
            ram=None,
            flash=None,
            arena=None,
            instructions=None,
            estimate_ms=None,
            clock_mhz=None,
            source=f"firmware {target}",
            no_fit=str(e).split(": ", 1)[-1],
        )
        shutil.rmtree(out / "export", ignore_errors=True)
        path.unlink()
        return costs
    if r.board is None:  # host: no cross build, so no flash image; the host's own figures
        static = out / "export" / "model_int8_static.tflite"
        costs.update(ram=r.arena_declared, flash=static.stat().st_size, source="host TFLM")
    else:
        costs.update(ram=r.ram["total"], flash=r.flash["total"], source=f"firmware {target}")
    costs.update(
        arena=r.arena_used, instructions=r.instructions, estimate_ms=r.estimate_ms, clock_mhz=r.clock_mhz
    )
    for sub in ("firmware", "export"):  # keep the figures, not the build products
        shutil.rmtree(out / sub, ignore_errors=True)
    path.unlink()
    return costs


def over_budget(costs: dict, budget: dict) -> list[str]:
    """What ``costs`` breaks of ``budget`` ({"ram", "flash", "ms"}), as short phrases."""
    if costs.get("no_fit"):
        return [costs["no_fit"]]
    out = []
    for key, unit in (("ram", "RAM"), ("flash", "flash")):
        if budget.get(key) and costs[key] > budget[key]:
            out.append(f"{unit} {costs[key] / 1024:.1f} KiB > {budget[key] / 1024:.1f} KiB")
    if budget.get("ms"):
        ms = latency_ms(costs, budget)
        if ms is None:
            raise CnnedgeError(
                "--max-ms needs a latency estimate, which this core has no "
                "calibration for (cortex-m4 and cortex-m7 have one)"
            )
        if ms > budget["ms"]:
            out.append(f"{ms:.1f} ms > {budget['ms']:g} ms (estimate)")
    return out


def latency_ms(costs: dict, budget: dict) -> float | None:
    """The estimated latency at the budget's clock (else the core's stated clock)."""
    est, clock = costs.get("estimate_ms"), costs.get("clock_mhz")
    if est is None or not clock:
        return None
    return est * clock / float(budget.get("clock_mhz") or clock)
