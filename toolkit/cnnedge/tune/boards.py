"""Boards as data: the core a firmware is built for, its clock, RAM and flash — the budgets of a
``cnnedge tune --board NAME``. A user adds their own in a JSON or YAML file (``--boards FILE``:
``{name: {core, clock_mhz, ram, flash, note}}``, sizes as ``256K`` or bytes). A board whose core
QEMU does not model here (an ESP32-S3's Xtensa, an RP2040's Cortex-M0+) is listed with the reason
it cannot be measured, and refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnedge.errors import CnnedgeError


@dataclass(frozen=True)
class Board:
    name: str
    core: str | None  # a cnnedge firmware target, or None: not measurable here
    clock_mhz: int
    ram: int  # bytes
    flash: int  # bytes
    note: str = ""


_K, _M = 1 << 10, 1 << 20
BOARDS = {
    b.name: b
    for b in [
        Board("nano33ble", "cortex-m4", 64, 256 * _K, 1 * _M, "Arduino Nano 33 BLE (nRF52840, Cortex-M4F)"),
        Board(
            "nucleo-l4r5zi",
            "cortex-m4",
            120,
            640 * _K,
            2 * _M,
            "STM32L4R5 (Cortex-M4F), MLPerf Tiny's reference board",
        ),
        Board(
            "stm32f746-disco",
            "cortex-m7",
            216,
            320 * _K,
            1 * _M,
            "STM32F746 Discovery (Cortex-M7), MCUNet's board",
        ),
        Board(
            "stm32h747-disco",
            "cortex-m7",
            400,
            1 * _M,
            2 * _M,
            "STM32H747 Discovery (Cortex-M7 core), the STM32 model zoo's board",
        ),
        Board("nrf5340", "cortex-m33", 128, 512 * _K, 1 * _M, "nRF5340 application core (M33)"),
        Board(
            "alif-e7-he",
            "cortex-m55",
            160,
            256 * _K,
            2 * _M,
            "Alif Ensemble E7 high-efficiency core (Cortex-M55)",
        ),
        Board(
            "esp32-s3",
            None,
            240,
            512 * _K,
            8 * _M,
            "Xtensa LX7: no Arm build, no QEMU board model here — not measurable",
        ),
        Board(
            "rp2040",
            None,
            133,
            264 * _K,
            2 * _M,
            "Cortex-M0+: TFLM builds for it, but QEMU 7.2 has no M0+ board — not measurable",
        ),
    ]
}


def parse_bytes(text, flag: str) -> int | None:
    """``64K``, ``64k``, ``64KB``, ``64KiB``, ``0.5M``, ``65536`` -> bytes (K = 1024, M =
    1024²); anything else is refused with the syntax."""
    from cnnedge.firmware import parse_bytes as parse

    return parse(text, flag)


def load_boards(path=None) -> dict[str, Board]:
    """The built-in boards, plus (overriding by name) those of ``path``."""
    boards = dict(BOARDS)
    if path is None:
        return boards
    path = Path(path)
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except (OSError, ValueError) as e:
        raise CnnedgeError(f"cannot read boards file {path}: {e}") from e
    except Exception as e:  # noqa: BLE001 - yaml's errors: one line naming the file
        raise CnnedgeError(f"cannot read boards file {path}: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise CnnedgeError(f"{path}: expected {{name: {{core, clock_mhz, ram, flash}}}}")
    for name, d in data.items():
        boards[str(name)] = _board(path, str(name), d)
    return boards


def _board(path: Path, name: str, d) -> Board:
    from cnnedge.firmware import targets

    if not isinstance(d, dict) or not {"core", "ram", "flash"} <= set(d):
        raise CnnedgeError(f"{path}: board {name} needs core, ram and flash (clock_mhz optional)")
    core = d["core"]
    if core is not None:
        targets.get(str(core))
    from cnnedge.numbers import Range, number

    clock = number(d.get("clock_mhz") or 0, f"{path}: {name}.clock_mhz", Range(0, 100000, integer=True))
    return Board(
        name,
        core,
        clock,
        parse_bytes(d["ram"], f"{path}: {name}.ram"),
        parse_bytes(d["flash"], f"{path}: {name}.flash"),
        str(d.get("note", "")),
    )


def get(name: str, path=None) -> Board:
    boards = load_boards(path)
    if name not in boards:
        from cnnedge.utils import unknown

        raise unknown("board", name, list(boards))
    b = boards[name]
    if b.core is None:
        raise CnnedgeError(f"board {name}: {b.note}; pick a measurable board or --target")
    return b
