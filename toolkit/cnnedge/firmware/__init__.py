"""Firmware: a run's TFLite Micro bundle built for a core, run on it, and measured.

    report = build_firmware("runs/cifar10/exp", "cortex-m4", tflm_dir="~/tflite-micro")
    report.flash["total"], report.ram["total"], report.instructions, report.parity

One call per target: the bundle (``export/tflm/``, exported first when missing) is compiled
against TFLM's library for the target (:mod:`.tflm_tree`, cached), linked (:mod:`.build`), run
on QEMU's board model of the core or natively (:mod:`.emulate`) until its self-check passes,
measured (:mod:`.memory`: flash and RAM by owner, the arena TFLM allocated, stack and heap
used; instructions per inference from the emulator) and, with ``parity``, fed N test images
whose outputs are compared with LiteRT's (:mod:`.parity`). Everything is built in a temporary
folder and moved to ``<out>/<target>/`` only when all of it passed; ``report.json`` there is
what ``verify`` and ``bench`` read.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.firmware import build, emulate, memory, parity, tflm_tree, toolchain
from cnnedge.firmware import targets as _targets
from cnnedge.firmware.report import REPORT, FirmwareReport, load_report
from cnnedge.firmware.source import Source, resolve_source

__all__ = ["build_firmware", "FirmwareReport", "load_report", "target_names", "REPORT"]
target_names = _targets.names
RUN_TIMEOUT = 600.0  # seconds one emulated run may take; a crashed core loops, never exits


def build_firmware(
    source,
    target: str = "cortex-m4",
    *,
    tflm_dir=None,
    kernels=None,
    out=None,
    parity_images: int = 300,
    data: str | None = None,
    max_flash: int | None = None,
    max_ram: int | None = None,
    timeout: float = RUN_TIMEOUT,
    jobs: int | None = None,
    log=None,
) -> FirmwareReport:
    """Build, run and measure the firmware of ``source`` for ``target``.

    Args:
        source: A run directory, its export folder, a TFLM bundle folder, a ``.keras`` model or
            a shipped checkpoint's name (the last two are exported to TFLM first).
        target: One of :func:`target_names` (``host``, ``cortex-m3`` … ``cortex-m55``).
        tflm_dir: The TFLite Micro tree (default ``$CNNEDGE_TFLM``).
        kernels: ``cmsis_nn`` (Arm default) or ``reference``.
        out: Folder of the results (default ``<run>/firmware``); ``<out>/<target>/`` is replaced.
        parity_images: Test images run on the firmware and compared with LiteRT (0 = none).
        data: The dataset of those images when ``source`` is not a run.
        max_flash, max_ram: Bytes the board has: a firmware over either is refused.
        timeout: Seconds each emulated run may take before it is killed.
        jobs: Parallel compile jobs of a TFLM library build (default: every core).
        log: Called with progress lines.

    Returns:
        A :class:`FirmwareReport` (also written to ``<out>/<target>/report.json``).
    """
    t = _targets.get(target)
    kern = _targets.kernels_for(t, kernels)
    toolchain.require(t)
    tree = tflm_tree.source_dir(tflm_dir)
    src = resolve_source(source, out, log=log)
    if parity_images and src.run is None and not (data or src.dataset):
        raise CnnedgeError(
            f"{src.bundle}: on-device parity needs test images: give the run, "
            f"or --data with the model's dataset (or --parity 0)"
        )
    from cnnedge.files import check_output

    check_output(src.out / t.name, "firmware folder", folder=True, replaces=lambda p: (p / REPORT).is_file())
    stamp = tflm_tree.library(tree, t, kern, jobs=jobs, log=log)
    lock = src.run.lock("cnnedge firmware") if src.run is not None else contextlib.nullcontext()
    with lock:
        report = _build(
            src,
            t,
            kern,
            stamp,
            tflm_tree.work_tree(tree),
            parity_images,
            data,
            (max_flash, max_ram),
            timeout,
            log,
        )
    return report


def _build(src: Source, t, kern, stamp, tree, parity_images, data, limits, timeout, log) -> FirmwareReport:
    """Everything in a temporary folder beside ``<out>/<target>``, which it replaces at the
    end; on any failure nothing stays (not even ``<out>`` when this call made it)."""
    made_out = not src.out.exists()
    src.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{t.name}.", dir=src.out))
    try:
        report = _measure(src, t, kern, stamp, tree, tmp, timeout, log)
        _check_limits(report, *limits)
        if parity_images:
            report.parity = _parity(src, t, stamp, tree, tmp, parity_images, data, timeout, log)
        report.write(tmp / REPORT)
        _replace(tmp, src.out / t.name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_out:
            shutil.rmtree(src.out, ignore_errors=True)
        raise
    report.folder = src.out / t.name
    return report


def _measure(src: Source, t, kern, stamp, tree, tmp: Path, timeout, log) -> FirmwareReport:
    if log:
        log(f"{t.name}: building {src.bundle}")
    exe = build.link(src.bundle, tmp, t, stamp, tree)
    if log:
        log(f"{t.name}: running {exe.name}" + (f" on QEMU {t.board}" if t.board else ""))
    res = emulate.run(exe, t, timeout)
    if "self-check: passed" not in res.text or res.returncode != 0:
        tail = " | ".join(res.text.strip().splitlines()[-4:]) or "no output"
        raise CnnedgeError(f"the firmware for {t.name} failed its self-check (exit {res.returncode}): {tail}")
    report = FirmwareReport.from_run(src, t, kern, stamp, exe, res)
    if not t.is_host:
        report.flash, report.ram = _split(tmp / "firmware.map", exe, res)
    return report


def _split(map_file: Path, exe: Path, res) -> tuple[dict, dict]:
    s = memory.split(map_file, res.value(r"stack: (\d+) of"), res.value(r"heap: (\d+) bytes"))
    sizes = memory.size_tool(exe)
    if s["flash"]["total"] != sizes["flash"]:
        raise CnnedgeError(
            f"{map_file}: the map's flash ({s['flash']['total']:,} B) differs "
            f"from the ELF's loaded sections ({sizes['flash']:,} B)"
        )
    return s["flash"], s["ram"]


def _check_limits(report: FirmwareReport, max_flash, max_ram) -> None:
    for what, limit, used in (
        ("flash", max_flash, report.flash.get("total")),
        ("RAM", max_ram, report.ram.get("total")),
    ):
        if limit and used and used > limit:
            raise CnnedgeError(
                f"the firmware for {report.target} needs {used:,} bytes of "
                f"{what}, over --max-{what.lower()} {int(limit):,}"
            )


def _parity(src: Source, t, stamp, tree, tmp: Path, n: int, data, timeout, log) -> dict:
    images, labels = parity.sample(src.meta, n, run=src.run, dataset=data or src.dataset)
    x = parity.quantize(images, src.meta)
    parity.write_images(x, tmp)
    exe = build.link(src.bundle, tmp, t, stamp, tree, name="parity", images=parity.IMAGE_FILE)
    if log:
        log(f"{t.name}: {len(x)} test images through the firmware")
    res = emulate.run(exe, t, timeout * max(1.0, len(x) / 100), cwd=tmp)
    if res.returncode != 0:
        tail = " | ".join(res.text.strip().splitlines()[-3:])
        raise CnnedgeError(f"the parity firmware for {t.name} failed: {tail}")
    device = parity.read_outputs(tmp, len(x), len(src.meta["class_names"]))
    row = parity.compare(device, parity.litert(src.tflite, x), labels)
    if res.icount.get("windows"):
        row["instructions_mean"] = res.icount["window_insns"] / res.icount["windows"]
    (tmp / parity.IMAGE_FILE).unlink()
    (tmp / (parity.IMAGE_FILE + ".out")).unlink()
    return row


def _replace(tmp: Path, dest: Path) -> None:
    """``tmp`` becomes ``dest``; an earlier ``dest`` goes only once the new one is in place."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    try:
        tmp.rename(dest)
    except OSError:
        if old is not None:
            old.rename(dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_firmwares(source, targets="cortex-m4", **kwargs) -> list[FirmwareReport]:
    """:func:`build_firmware` for each of ``targets`` (a name, comma list or list; ``all``: every
    target), in order; the same keyword arguments. The targets are checked before any build."""
    from cnnedge.utils import split_list

    names = split_list(targets)
    if names == ["all"]:
        names = _targets.names()
    for n in names:  # every target's kernels and tools, before the first build replaces anything
        t = _targets.get(n)
        _targets.kernels_for(t, kwargs.get("kernels"))
        toolchain.require(t)
    return [build_firmware(source, n, **kwargs) for n in names]


def parse_bytes(text, flag: str) -> int | None:
    """``256K``, ``1M``, ``65536`` (bytes; K and M are 1024 and 1024²) -> bytes."""
    if text is None:
        return None
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20}.get(s[-1:], 1)
    try:
        value = float(s[:-1] if scale > 1 else s) * scale
    except ValueError:
        value = -1.0
    if not (1 <= value < 1 << 40) or value != value:
        raise CnnedgeError(f"{flag} {text}: expected a size in bytes such as 262144, 256K or 2M")
    return int(value)


def prepare(targets="cortex-m4", *, tflm_dir=None, kernels=None, jobs=None, log=None) -> list:
    """Build (or find cached) TFLM's library for each of ``targets`` without building a
    firmware: the install step that makes later firmware builds take seconds. Returns the
    library paths."""
    from cnnedge.utils import split_list

    names = split_list(targets)
    names = _targets.names() if names == ["all"] else names
    found = [_targets.get(n) for n in names]
    for t in found:
        _targets.kernels_for(t, kernels)
        toolchain.require(t)
    tree = tflm_tree.source_dir(tflm_dir)
    libs = []
    for t in found:
        stamp = tflm_tree.library(tree, t, _targets.kernels_for(t, kernels), jobs=jobs, log=log)
        libs.append(Path(stamp["flags"]["LIB"]))
    return libs
