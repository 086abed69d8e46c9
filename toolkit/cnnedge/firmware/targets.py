"""The cores a firmware is built for: one row per target, like the artifact table.

Each Arm row names the TFLM build (``TARGET=cortex_m_qemu TARGET_ARCH=…``: soft-float, Thumb-2,
semihosting), the Cortex_DFP device whose start-up file and linker script the image uses, and the
QEMU board model that runs it, with the board's code and data memories (TrustZone boards boot in
the secure state, so their images sit at the secure aliases). ``host`` builds the same sources
natively with TFLM's reference kernels. The clock is the one an estimate is stated at.
"""

from __future__ import annotations

from dataclasses import dataclass

from cnnedge.errors import CnnedgeError


@dataclass(frozen=True)
class Target:
    name: str
    board: str | None  # QEMU machine (-M); None: runs natively on the host
    device: str | None  # Cortex_DFP device folder (ARMCM4 …)
    flash: tuple[int, int] = (0, 0)  # code memory: origin, bytes
    ram: tuple[int, int] = (0, 0)  # data memory: origin, bytes
    kernels: tuple[str, ...] = ("cmsis_nn", "reference")
    clock_mhz: int | None = None
    note: str = ""

    @property
    def is_host(self) -> bool:
        return self.board is None

    def make_args(self, kernels: str) -> list[str]:
        """TFLM Makefile variables that pick this core and kernel library."""
        args = (
            ["TARGET=linux", "TARGET_ARCH=x86_64"]
            if self.is_host
            else ["TARGET=cortex_m_qemu", f"TARGET_ARCH={self.name}"]
        )
        return args + ([] if kernels == "reference" else [f"OPTIMIZED_KERNEL_DIR={kernels}"])


_MIB = 1 << 20
_TARGETS = {
    t.name: t
    for t in [
        Target(
            "host", None, None, kernels=("reference",), note="x86-64, TFLM reference kernels, run natively"
        ),
        Target(
            "cortex-m3",
            "mps2-an385",
            "ARMCM3",
            (0x0, 4 * _MIB),
            (0x20000000, 4 * _MIB),
            clock_mhz=100,
            note="no DSP extension: CMSIS-NN's plain C path",
        ),
        Target(
            "cortex-m4",
            "mps2-an386",
            "ARMCM4",
            (0x0, 4 * _MIB),
            (0x20000000, 4 * _MIB),
            clock_mhz=120,
            note="DSP extension (SIMD MACs)",
        ),
        Target(
            "cortex-m7",
            "mps2-an500",
            "ARMCM7",
            (0x0, 4 * _MIB),
            (0x20000000, 4 * _MIB),
            clock_mhz=280,
            note="DSP extension, dual-issue pipeline",
        ),
        Target(
            "cortex-m33",
            "mps2-an505",
            "ARMCM33",
            (0x10000000, 4 * _MIB),
            (0x38000000, 2 * _MIB),
            clock_mhz=160,
            note="ARMv8-M Mainline with DSP, secure state",
        ),
        Target(
            "cortex-m55",
            "mps3-an547",
            "ARMCM55",
            (0x10000000, 512 << 10),
            (0x30000000, 512 << 10),
            clock_mhz=160,
            note="ARMv8.1-M; soft-float build: CMSIS-NN's DSP path, not Helium (MVE)",
        ),
    ]
}


def names() -> list[str]:
    return list(_TARGETS)


def get(name: str) -> Target:
    if name not in _TARGETS:
        from cnnedge.utils import unknown

        raise unknown("target", name, list(_TARGETS))
    return _TARGETS[name]


def kernels_for(target: Target, kernels: str | None) -> str:
    """The kernel library to build with: the target's first (optimized) one by default."""
    if kernels is None:
        return target.kernels[0]
    if kernels not in target.kernels:
        raise CnnedgeError(f"--kernels {kernels}: {target.name} builds with {' or '.join(target.kernels)}")
    return kernels
