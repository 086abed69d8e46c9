"""Run a firmware: on QEMU's board model of its core (semihosting for its console and files), or
natively for ``host``; with a TCG plugin that counts the instructions run between the firmware's
``cnnedge_inference_begin``/``_end`` markers (``csrc/icount.c``, built once with the host C
compiler). A run that does not end within its bound is killed and reported with its output.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.firmware import tflm_tree, toolchain
from cnnedge.firmware.targets import Target

PLUGIN_SRC = Path(__file__).parent / "csrc" / "icount.c"
MARKERS = ("cnnedge_inference_begin", "cnnedge_inference_end")


@dataclass
class RunOutput:
    returncode: int
    text: str
    seconds: float
    icount: dict = field(default_factory=dict)  # total, windows, window_insns

    def value(self, pattern: str, cast=int):
        m = re.search(pattern, self.text)
        return cast(m.group(1)) if m else None


def plugin() -> Path:
    """The instruction-counting plugin, compiled once per source version into the cache."""
    digest = hashlib.sha256(PLUGIN_SRC.read_bytes()).hexdigest()[:12]
    so = tflm_tree.cache_root() / "qemu-plugin" / f"icount-{digest}.so"
    if so.is_file():
        return so
    import os
    import tempfile

    so.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".icount.", suffix=".so", dir=so.parent)
    os.close(fd)
    r = subprocess.run(
        [toolchain.need("gcc"), "-shared", "-fPIC", "-O2", "-o", tmp, str(PLUGIN_SRC)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        os.unlink(tmp)
        raise CnnedgeError(f"compiling the QEMU plugin {PLUGIN_SRC} failed: {r.stderr[:300]}")
    os.replace(tmp, so)  # another process may have compiled the same source meanwhile
    return so


def symbol_addresses(elf: Path, names=MARKERS) -> dict[str, int]:
    r = subprocess.run([toolchain.need("arm-none-eabi-nm"), str(elf)], capture_output=True, text=True)
    found = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in names:
            found[parts[2]] = int(parts[0], 16)
    missing = [n for n in names if n not in found]
    if missing:
        raise CnnedgeError(f"{elf}: no symbol {', '.join(missing)} (not a cnnedge bundle's main.cc?)")
    return found


def command(exe: Path, target: Target, log: Path | None = None) -> list[str]:
    """The command line that runs ``exe`` (with the counting plugin on an emulated core)."""
    if target.is_host:
        return [str(exe)]
    marks = symbol_addresses(exe)
    return [
        toolchain.need("qemu-system-arm"),
        "-M",
        target.board,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-kernel",
        str(exe),
        "-plugin",
        f"{plugin()},begin={hex(marks[MARKERS[0]])},end={hex(marks[MARKERS[1]])}",
        "-d",
        "plugin",
        "-D",
        str(log or exe.with_suffix(".plugin.log")),
    ]


def run(exe: Path, target: Target, timeout: float, cwd: Path | None = None) -> RunOutput:
    """Run ``exe`` to its end (``cwd``: where its semihosting file names resolve)."""
    import time

    log = exe.parent / f"{exe.stem}.plugin.log"
    log.unlink(missing_ok=True)
    cmd = command(exe, target, log)
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            cmd,
            cwd=cwd or exe.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
        out = out.decode(errors="replace") if isinstance(out, bytes) else out
        tail = " | ".join(out.strip().splitlines()[-3:]) or "no output"
        raise CnnedgeError(
            f"{exe} did not finish on {target.name} within {timeout:.0f} s "
            f"(killed; a crashed core loops in its fault handler); its output: "
            f"{tail}"
        ) from None
    res = RunOutput(r.returncode, r.stdout + r.stderr, time.monotonic() - t0)
    if log.is_file():
        m = re.search(r"icount total=(\d+) windows=(\d+) window_insns=(\d+)", log.read_text())
        if m:
            res.icount = {
                "total": int(m.group(1)),
                "windows": int(m.group(2)),
                "window_insns": int(m.group(3)),
            }
    return res
