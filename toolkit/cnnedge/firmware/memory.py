"""Flash and RAM of a linked firmware, split by owner, from its linker map.

Every input section the linker placed is attributed to its owner: ``model`` (``model_data``),
``tflm`` (TFLM's library: interpreter, kernels, CMSIS-NN), ``runtime`` (newlib, libgcc,
libstdc++: the C/C++ run-time) and ``app`` (the bundle's ``main.cc``, test image, start-up
code); the tensor arena gets its own line. Flash holds code and read-only data plus the initial
values of ``.data``; RAM is ``.data`` + ``.bss`` (the arena included) + the stack and heap the
run really used (the firmware paints its stack and reports the high-water mark, and the heap's
end) — not the sizes the linker script reserves for them.
"""

from __future__ import annotations

import re
from pathlib import Path

OWNERS = ("model", "tflm", "app", "runtime")
FLASH_SECTIONS = (
    ".text",
    ".ARM.extab",
    ".ARM.exidx",
    ".copy.table",
    ".zero.table",
    ".gnu.sgstubs",
    ".rodata",
)
RAM_SECTIONS = (".data", ".bss")
_RUNTIME = re.compile(
    r"/(libc|libc_nano|libg|libg_nano|libm|librdimon|librdimon_nano|libgcc|"
    r"libstdc\+\+|libstdc\+\+_nano|libsupc\+\+|libnosys)\.a\(|/crt\w*\.o$"
)
_HEADER = re.compile(r"^\.\S+\s+0x[0-9a-fA-F]+\s+0x([0-9a-fA-F]+)")
_INPUT = re.compile(r"^ (\S+)?\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)(?:\s+(\S.*))?\s*$")


def owner(path: str, section: str) -> str:
    if "tensor_arena" in section:
        return "arena"
    if "libtensorflow-microlite.a" in path:
        return "tflm"
    if _RUNTIME.search(path):
        return "runtime"
    if Path(path.split("(")[0]).name.startswith("model_data"):
        return "model"
    return "app"


def _entries(text: str) -> dict[str, list]:
    """{output section: [(address, size, owner)]} of a GNU ld map file's memory map; fill
    (alignment padding) is owned by what precedes it."""
    text = text.split("Linker script and memory map", 1)[-1]
    out: dict[str, list] = {}
    current = pending = None
    lines = text.splitlines()
    for k, line in enumerate(lines):
        if line and not line[0].isspace():
            name = line.split()[0]
            current = name if name.startswith(".") and not name.startswith(".debug") else None
            pending = None
            head = _HEADER.match(
                line + ("" if len(line.split()) > 1 or k + 1 == len(lines) else " " + lines[k + 1].strip())
            )
            if current and head:
                out.setdefault(current, []).append((-1, int(head.group(1), 16), "total"))
            continue
        m = _INPUT.match(line) if current else None
        if not m:
            stripped = line.strip()
            pending = stripped if stripped.startswith(".") and " " not in stripped else None
            continue
        section, pending = m.group(1) or pending or "", None
        addr, size, what = int(m.group(2), 16), int(m.group(3), 16), (m.group(4) or "").strip()
        if size == 0 or what.startswith("load address"):
            continue
        entries = out.setdefault(current, [])
        who = (entries[-1][2] if entries else "app") if section == "*fill*" else owner(what, section)
        entries.append((addr, size, who))
    return out


def parse_map(text: str) -> dict[str, dict[str, int]]:
    """{output section: {owner: bytes}} of the allocated sections in a GNU ld map file. An
    input section counts up to where the next one starts: merged strings (``.str1.1``) are
    listed at their size before merging, and overlap."""
    out: dict[str, dict[str, int]] = {}
    for name, entries in _entries(text).items():
        total = next((size for addr, size, who in entries if who == "total"), None)
        entries = sorted(e for e in entries if e[2] != "total")
        bucket = out.setdefault(name, {})
        for i, (addr, size, who) in enumerate(entries):
            if i + 1 < len(entries):
                size = min(size, max(entries[i + 1][0] - addr, 0))
            bucket[who] = bucket.get(who, 0) + size
        if total is not None and total > sum(bucket.values()):  # the section's end alignment
            bucket["app"] = bucket.get("app", 0) + total - sum(bucket.values())
    return out


def split(map_file: Path, stack_used: int | None, heap_used: int | None) -> dict:
    """{"flash": {owner: bytes, "total"}, "ram": {owner: bytes, "arena", "stack", "heap",
    "total"}} of a linked firmware."""
    sections = parse_map(Path(map_file).read_text(errors="replace"))
    flash = dict.fromkeys(OWNERS, 0)
    ram = dict.fromkeys((*OWNERS, "arena"), 0)
    for name, owners in sections.items():
        for who, size in owners.items():
            if name in RAM_SECTIONS:
                ram[who] = ram.get(who, 0) + size
            if name in FLASH_SECTIONS or name == ".data":  # .data's initial values are in flash
                flash[who if who != "arena" else "app"] += size
    ram["stack"] = int(stack_used or 0)
    ram["heap"] = int(heap_used or 0)
    flash["total"] = sum(flash[k] for k in OWNERS)
    ram["total"] = sum(v for k, v in ram.items() if k != "total")
    return {"flash": flash, "ram": ram}


def size_tool(elf: Path) -> dict[str, int]:
    """The ELF's own section table (``arm-none-eabi-readelf -S``), a cross-check of the map:
    ``flash`` = every allocated section with contents (what gets programmed, ``.data``'s
    initial values included), ``data`` and ``bss`` their sizes."""
    import subprocess

    from cnnedge.errors import CnnedgeError
    from cnnedge.firmware import toolchain

    r = subprocess.run(
        [toolchain.need("arm-none-eabi-readelf"), "-S", "-W", str(elf)], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise CnnedgeError(f"cannot read the sections of {elf}: {r.stderr.strip()[:200]}")
    out = {"flash": 0, "data": 0, "bss": 0}
    for line in r.stdout.splitlines():
        if "]" not in line:
            continue
        parts = line.split("]", 1)[1].split()
        if len(parts) < 10 or "A" not in parts[6]:
            continue  # not allocated (debug info, comments, attributes)
        name, kind, size = parts[0], parts[1], int(parts[4], 16)
        if kind != "NOBITS":
            out["flash"] += size
        if name in ("data", ".data", ".bss"):
            out[name.lstrip(".")] += size
    return out
