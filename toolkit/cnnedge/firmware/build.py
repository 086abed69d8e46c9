"""Compile a TFLM bundle into an executable for one target and link it with TFLM's library.

The bundle's own files (``main.cc``, ``model_data.cc``, ``test_data.cc``, with ``model_ops.h``
and ``model_settings.h``) are compiled with the flags TFLM built its library with. An Arm image
adds the Cortex_DFP start-up and system files of the core, cnnedge's ``_start``
(``csrc/cnnedge_start.c``: stack paint and report) and the DFP's GCC linker script with the
board's memories, and links against newlib's semihosting library (``rdimon``), so ``printf`` and
``fopen`` reach the host through the emulator. The link map is kept for the flash/RAM split.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.firmware import tflm_tree
from cnnedge.firmware.targets import Target

BUNDLE_SOURCES = ("main.cc", "model_data.cc", "test_data.cc")
CSRC = Path(__file__).parent / "csrc"
STACK_BYTES = 32 << 10
HEAP_BYTES = 32 << 10


def _dfp(tree: Path, target: Target) -> Path:
    return tree / tflm_tree.DOWNLOADS / "cmsis" / "Cortex_DFP" / "Device" / target.device


def linker_script(tree: Path, target: Target, dest: Path) -> Path:
    """The DFP's GCC linker script for the core with the board's memories, stack and heap."""
    src = _dfp(tree, target) / "Config" / f"{target.device}_gcc.ld"
    text = src.read_text()
    values = {
        "__ROM_BASE": target.flash[0],
        "__ROM_SIZE": target.flash[1],
        "__RAM_BASE": target.ram[0],
        "__RAM_SIZE": target.ram[1],
        "__STACK_SIZE": STACK_BYTES,
        "__HEAP_SIZE": HEAP_BYTES,
    }
    for name, value in values.items():
        text, n = re.subn(rf"^{name}\s*=\s*[^;]+;", f"{name} = 0x{value:08X};", text, flags=re.M)
        if n != 1:
            raise CnnedgeError(f"{src}: no '{name} = …;' line to set (not Cortex_DFP's script?)")
    dest.write_text(text)
    return dest


def _sources(bundle: Path, tree: Path, target: Target) -> list[Path]:
    missing = [n for n in BUNDLE_SOURCES if not (bundle / n).is_file()]
    if missing:
        raise CnnedgeError(
            f"{bundle}: not a TFLM bundle (missing {', '.join(missing)}); "
            f"write one with cnnedge export RUN --format tflm"
        )
    srcs = [bundle / n for n in BUNDLE_SOURCES]
    if not target.is_host:
        dev = _dfp(tree, target) / "Source"
        srcs += [
            dev / f"startup_{target.device}.c",
            dev / f"system_{target.device}.c",
            CSRC / "cnnedge_start.c",
        ]
    return srcs


def missing_op(tflite: Path, method: str) -> tuple[str, str | None]:
    """(builtin op, first layer using it) behind a resolver method TFLM lacks (``AddConv2D``
    -> CONV_2D): the op whose name the bundle writer turned into ``method``, looked up in the
    model's own schema; the layer is its first operator's output tensor."""
    from cnnedge import artifacts
    from cnnedge.export.tflm import operators
    from cnnedge.export.tflm_bundle import resolver_method

    guess = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", method[3:]).upper()
    try:
        buf = tflite.read_bytes()
        schema, _ = artifacts.tflite_model(buf, tflite)
        ops = operators(buf, tflite)
    except (OSError, CnnedgeError):
        return guess, None
    names = [k for k in vars(schema.BuiltinOperator) if not k.startswith("_")]
    op = next((name for name in names if resolver_method(name) == method), guess)
    return op, next((layer for name, layer in ops if name == op), None)


def _compile(src: Path, obj: Path, flags: dict, defines: list[str], extra_inc: list[str]):
    cxx = src.suffix == ".cc"
    cmd = (
        [flags["CXX" if cxx else "CC"]]
        + shlex.split(flags["CXXFLAGS" if cxx else "CCFLAGS"])
        + defines
        + shlex.split(flags["INCLUDES"])
        + extra_inc
        + ["-c", str(src), "-o", str(obj)]
    )
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        missing = re.search(r"has no member named '?‘?(Add\w+)", r.stderr)
        if missing:  # model_ops.h registers an op this TFLM has no kernel for
            op, layer = missing_op(src.parent.parent / "model_int8_static.tflite", missing.group(1))
            raise CnnedgeError(
                f"{src.parent / 'model_ops.h'}: TFLite Micro "
                f"({tflm_tree.COMMIT[:12]}) has no kernel for the model's op "
                f"{op} ({missing.group(1)}" + (f", layer {layer}" if layer else "") + "); replace that layer "
                "or use a newer TFLite Micro"
            )
        raise CnnedgeError(f"compiling {src} failed: {_first_error(r.stderr)}")
    return obj


def _first_error(text: str) -> str:
    lines = (
        [
            ln
            for ln in text.splitlines()
            if ("error" in ln or "undefined reference" in ln) and "collect2" not in ln
        ]
        or text.splitlines()
        or ["?"]
    )
    return lines[0].strip()[:400]


def link(
    bundle: Path,
    out: Path,
    target: Target,
    stamp: dict,
    tree: Path,
    name: str = "firmware",
    images: str | None = None,
) -> Path:
    """Build ``out/<name>`` (``.elf`` on Arm) from ``bundle``; ``images``: the image file the
    parity build reads (``-DCNNEDGE_IMAGES``). Returns the executable."""
    flags = stamp["flags"]
    obj_dir = out / f"{name}.obj"
    obj_dir.mkdir(parents=True, exist_ok=True)
    defines = [f'-DCNNEDGE_IMAGES="{images}"'] if images else []
    inc = [f"-I{bundle}"]
    if not target.is_host:
        inc += [f"-I{_dfp(tree, target) / 'Include'}", f"-D{target.device}"]
    srcs = _sources(bundle, tree, target)
    with ThreadPoolExecutor(max_workers=2) as pool:
        objs = list(pool.map(lambda s: _compile(s, obj_dir / (s.name + ".o"), flags, defines, inc), srcs))
    exe = out / (name if target.is_host else f"{name}.elf")
    cmd = [flags["CXX"]] + shlex.split(flags["CXXFLAGS"]) + [str(o) for o in objs]
    if not target.is_host:
        ld = linker_script(tree, target, out / f"{name}.ld")
        cmd += ["-nostartfiles", f"-T{ld}", f"-Wl,-Map={out / (name + '.map')}"]
    cmd += [flags["LIB"]] + shlex.split(flags["LDFLAGS"]) + shlex.split(flags["LIBS"])
    cmd += ["-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CnnedgeError(f"linking {exe} failed: {_link_error(r.stderr, target)}")
    return exe


def _link_error(text: str, target: Target) -> str:
    m = re.search(r"region `(\w+)' overflowed by (\d+) bytes", text)
    if m:
        mem = "code memory (flash)" if m.group(1) == "FLASH" else "data memory (RAM)"
        return f"the firmware does not fit {target.board}'s {mem}: {int(m.group(2)):,} bytes over"
    return _first_error(text)
