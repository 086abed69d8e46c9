"""The programs a firmware build needs, found on PATH, each missing one named with its package.

Arm targets: the GNU Arm Embedded compiler with newlib and its C++ library (Debian
``gcc-arm-none-eabi``, ``libnewlib-arm-none-eabi``, ``libstdc++-arm-none-eabi-newlib``) and QEMU's
Arm system emulator (``qemu-system-arm``); every target: ``make`` and the host C/C++ compiler
(the host firmware, and the instruction-counting QEMU plugin).
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.firmware.targets import Target

ARM_PREFIX = "arm-none-eabi-"
ARM_TOOLS = ("gcc", "g++", "ar", "as", "ld", "objcopy", "objdump", "size", "nm", "readelf")
# program -> Debian package
_PACKAGES = {
    "make": "make",
    "gcc": "gcc",
    "g++": "g++",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi",
    "arm-none-eabi-g++": "gcc-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "arm-none-eabi-readelf": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}
INSTALL = (
    "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
)


def need(program: str) -> str:
    """The path of ``program``, or a CnnedgeError naming the package that provides it."""
    path = shutil.which(program)
    if path is None:
        pkg = _PACKAGES.get(program, program)
        raise CnnedgeError(f"{program} not found: install the Debian package {pkg} ({INSTALL})")
    return path


def require(target: Target) -> None:
    """Every program a firmware for ``target`` needs, and newlib's semihosting library."""
    for p in ("make", "gcc", "g++"):
        need(p)
    if target.is_host:
        return
    for p in (
        "arm-none-eabi-gcc",
        "arm-none-eabi-g++",
        "arm-none-eabi-size",
        "arm-none-eabi-nm",
        "arm-none-eabi-readelf",
        "qemu-system-arm",
    ):
        need(p)
    if not _has_newlib():
        raise CnnedgeError(
            "newlib for arm-none-eabi not found (rdimon.specs): install the "
            f"Debian packages libnewlib-arm-none-eabi and "
            f"libstdc++-arm-none-eabi-newlib ({INSTALL})"
        )


@lru_cache(maxsize=None)
def _has_newlib() -> bool:
    r = subprocess.run(
        [need("arm-none-eabi-gcc"), "-print-file-name=rdimon.specs"], capture_output=True, text=True
    )
    return r.returncode == 0 and Path(r.stdout.strip()).is_file()


def arm_tools() -> dict[str, str]:
    """{arm-none-eabi-<tool>: path} of the Arm binutils and compilers present."""
    found = {}
    for t in ARM_TOOLS:
        path = shutil.which(ARM_PREFIX + t)
        if path:
            found[ARM_PREFIX + t] = path
    return found


@lru_cache(maxsize=None)
def version(target: Target) -> str:
    """The first line of the target compiler's ``--version`` (part of the library's stamp)."""
    cc = need("g++" if target.is_host else "arm-none-eabi-g++")
    r = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return (r.stdout.splitlines() or ["?"])[0]
