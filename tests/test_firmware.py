"""Firmware: the session's TFLM bundle (``tflm_run``) built against TFLite Micro for host,
Cortex-M4 and Cortex-M55, run natively and on QEMU's board models, measured (flash/RAM split
against the linker, arena, instructions) and fed test images for on-device parity; the rows
that verify and bench show; every bad input refused with one line and nothing written.

The TFLM tree comes from ``$CNNEDGE_TFLM`` (``make test`` passes ../shared/tflm); its
libraries are built by ``make setup`` (``cnnedge firmware --prepare``) and cached, so the
builds here take seconds."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from helpers import one_error

from cnnedge.cli import main
from cnnedge.errors import CnnedgeError

pytestmark = pytest.mark.skipif(
    not os.environ.get("CNNEDGE_TFLM"), reason="CNNEDGE_TFLM not set (make test passes ../shared/tflm)"
)
PARITY = 48


@pytest.fixture(scope="module")
def fw_run(tflm_run, tmp_path_factory):
    """A copy of the exported run: firmware results go into <run>/firmware."""
    out = tmp_path_factory.mktemp("fw") / "run"
    shutil.copytree(tflm_run["run"], out)
    return out


@pytest.fixture(scope="module")
def built(fw_run):
    """{target: FirmwareReport} for host, cortex-m4 and cortex-m55 (PARITY images each)."""
    from cnnedge.firmware import build_firmwares

    reports = build_firmwares(fw_run, "host,cortex-m4,cortex-m55", parity_images=PARITY)
    return {r.target: r for r in reports}


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m55"])
def test_firmware_passes_self_check_and_parity(built, fw_run, target):
    r = built[target]
    assert r.folder == fw_run / "firmware" / target
    saved = json.loads((r.folder / "report.json").read_text())
    assert saved == r.to_dict() and saved["target"] == target
    p = r.parity
    assert p["images"] == PARITY and p["passed"] and p["top1_agreement"] == 1.0
    assert p["max_step_diff"] <= 1 and p["accuracy_device"] == p["accuracy_litert"] > 0.3
    # the arena TFLM really allocates on the core, beside the bundle's x86-64 measurement
    assert 0 < r.arena_used <= r.arena_declared
    assert abs(r.arena_used - r.arena_host) < 0.25 * r.arena_host
    if target == "host":
        assert r.board is None and r.instructions is None and not r.flash
    else:
        assert r.board == {"cortex-m4": "mps2-an386", "cortex-m55": "mps3-an547"}[target]
        assert r.kernels == "cmsis_nn" and r.instructions > r.macs_per_image / 4
        assert r.instructions_total > r.instructions  # start-up and printing not counted
        assert p["instructions_mean"] == pytest.approx(r.instructions, rel=0.05)


@pytest.mark.full
@pytest.mark.parametrize("target", ["cortex-m3", "cortex-m7", "cortex-m33"])
def test_the_other_cores(fw_run, target):
    """make test-full: the cores the default suite leaves out (their TFLM libraries are built on
    first use, minutes each)."""
    from cnnedge.firmware import build_firmware

    r = build_firmware(fw_run, target, parity_images=PARITY, out=fw_run / "firmware-full")
    assert r.parity["passed"] and r.instructions > r.macs_per_image / 4
    assert r.flash["total"] > r.flash["model"] > 0 and r.arena_used <= r.arena_declared


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m55"])
def test_flash_and_ram_split_adds_up_to_the_linker(built, fw_run, target):
    from cnnedge.firmware import memory

    r = built[target]
    elf = r.folder / "firmware.elf"
    sizes = memory.size_tool(elf)
    assert r.flash["total"] == sizes["flash"]
    assert r.flash["total"] == sum(r.flash[k] for k in memory.OWNERS)
    model = (fw_run / "export" / "model_int8_static.tflite").stat().st_size
    assert model <= r.flash["model"] < model + 64  # the array and its length
    assert r.flash["tflm"] > 20_000 and r.flash["runtime"] > 5_000
    assert r.ram["arena"] == r.arena_declared  # the static array, whatever TFLM uses of it
    assert sizes["data"] + sizes["bss"] == sum(r.ram[k] for k in (*memory.OWNERS, "arena"))
    assert 200 < r.ram["stack"] < 32 << 10 and r.ram["total"] > r.ram["arena"]


def test_verify_and_bench_show_the_firmware(built, fw_run):
    from cnnedge.bench import QUICK, bench
    from cnnedge.verify import verify

    rep = verify(fw_run, n=32, write=False)
    rows = {r["target"]: r for r in rep.firmware}
    assert set(rows) == {"host", "cortex-m4", "cortex-m55"}
    assert all(r["gate"] == "pass" and r["images"] == PARITY for r in rows.values())
    static = fw_run / "export" / "model_int8_static.tflite"
    b = bench(
        [static],
        runtimes=["tflm"],
        threads=[1],
        n=16,
        quick=True,
        timing=QUICK,
        write=False,
        isolate=False,
        mcu_targets="cortex-m4",
    )
    (row,) = [r for r in b.rows if r.get("mcu_target")]
    m4 = built["cortex-m4"]
    assert row["status"] == "ok" and row["runtime"] == "firmware-cortex-m4"
    assert row["fw_instructions"] == m4.instructions and row["fw_flash_bytes"] == m4.flash["total"]
    assert row["tflm_arena_bytes"] == m4.arena_used and row["accuracy"] is not None


def test_a_report_for_another_model_is_stale(built, fw_run, tmp_path):
    from cnnedge.firmware.report import parity_rows

    run = tmp_path / "run"
    shutil.copytree(fw_run, run)
    static = run / "export" / "model_int8_static.tflite"
    static.write_bytes(static.read_bytes() + b"\0")
    assert {r["gate"] for r in parity_rows(run)} == {"stale"}


def test_instructions_grow_with_the_models_macs(easy_idx, tmp_path):
    """Two models of different sizes: the counted instructions follow the multiply-accumulates
    (CMSIS-NN's cost per MAC is nearly constant)."""
    from cnnedge import models
    from cnnedge.export import export
    from cnnedge.firmware import build_firmware

    counts = []
    for name in ("gmp_xs", "gmp_s"):
        path = tmp_path / f"{name}.keras"
        models.create_model(name, num_classes=4, channels=1).save(path)
        export(
            path,
            formats="tflm",
            out_dir=tmp_path / name,
            calibration=str(easy_idx),
            image_size="28x28",
            verify=0,
        )
        r = build_firmware(tmp_path / name, "cortex-m4", parity_images=0)
        counts.append((models.count_macs(models.load_model(path), (28, 28, 1)), r.instructions))
    (mac_a, ins_a), (mac_b, ins_b) = sorted(counts)
    assert mac_b > 2 * mac_a and ins_b > ins_a
    per_mac = (ins_a / mac_a, ins_b / mac_b)
    assert max(per_mac) < 3 * min(per_mac), counts


# ------------------------------------------------------------------ bad input: one line, exit 2
@pytest.fixture
def export_copy(tflm_run, tmp_path):
    """The run's export folder (fixed-size file + tflm/ bundle) alone, to edit."""
    out = tmp_path / "export"
    (out / "tflm").parent.mkdir(parents=True)
    shutil.copytree(tflm_run["bundle"], out / "tflm")
    shutil.copy(tflm_run["file"], out)
    return out


def _nothing_written(folder):
    return not (folder / "firmware").exists() or not any(
        p.name != ".lock" for p in (folder / "firmware").rglob("*")
    )


def test_unknown_target_and_missing_tree(export_copy, capsys, monkeypatch):
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--target", "cortex-m5"]),
        "unknown target 'cortex-m5'",
        "did you mean",
    )
    monkeypatch.delenv("CNNEDGE_TFLM")
    one_error(
        capsys,
        main(["firmware", str(export_copy)]),
        "no TFLite Micro source tree",
        "--tflm-dir",
        "CNNEDGE_TFLM",
    )
    assert _nothing_written(export_copy)


def test_a_tree_at_another_commit_is_refused(export_copy, tmp_path, capsys):
    from cnnedge.firmware import tflm_tree

    fake = tmp_path / "tflm"
    for d in tflm_tree.THIRD_PARTY:
        (fake / tflm_tree.DOWNLOADS / d).mkdir(parents=True)
    for rel in [tflm_tree.MAKEFILE, *tflm_tree.FINGERPRINT]:
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        (fake / rel).write_text("another version\n")
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--tflm-dir", str(fake)]),
        "differs from TFLite Micro commit 90b983c2b3f1",
    )
    shutil.rmtree(fake / tflm_tree.DOWNLOADS / "cmsis_nn")
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--tflm-dir", str(fake)]),
        "third-party code missing",
        "cmsis_nn",
    )
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--tflm-dir", str(tmp_path)]),
        "not a TFLite Micro source tree",
    )
    assert _nothing_written(export_copy)


def test_a_missing_toolchain_names_its_package(export_copy, tmp_path, capsys, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "gcc", "g++"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--target", "cortex-m4"]),
        "arm-none-eabi-gcc not found",
        "gcc-arm-none-eabi",
    )
    assert _nothing_written(export_copy)


def test_a_firmware_over_the_boards_memory_is_refused(export_copy, capsys):
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--max-flash", "64K", "--parity", "0"]),
        "bytes of flash, over --max-flash 65,536",
    )
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--max-ram", "4K", "--parity", "0"]),
        "bytes of RAM, over --max-ram 4,096",
    )
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--max-ram", "lots"]),
        "--max-ram lots: expected a size in bytes",
    )
    assert _nothing_written(export_copy)


def test_a_hung_firmware_is_killed_with_its_output(export_copy):
    """A core that never finishes (here: main() spins after printing) is stopped at the bound
    and reported with what it printed; the earlier results stay."""
    from cnnedge.firmware import build_firmware

    main_cc = export_copy / "tflm" / "main.cc"
    main_cc.write_text(
        main_cc.read_text().replace(
            "  tflite::InitializeTarget();",
            '  tflite::InitializeTarget();\n  printf("spinning\\n");\n  static volatile int spin = 1;\n'
            "  while (spin) {}",
        )
    )
    with pytest.raises(CnnedgeError, match="did not finish on cortex-m4 within 3 s .*spinning"):
        build_firmware(export_copy, "cortex-m4", parity_images=0, timeout=3)
    assert _nothing_written(export_copy)


def test_an_op_tflm_lacks_is_named_and_outputs_must_be_writable(export_copy, tmp_path, capsys):
    ops = export_copy / "tflm" / "model_ops.h"
    ops.write_text(
        ops.read_text().replace(
            "  return kTfLiteOk;\n}",
            "  if (resolver.AddFooBar() != kTfLiteOk) return kTfLiteError;\n  return kTfLiteOk;\n}",
        )
    )
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--parity", "0"]),
        "has no kernel for the model's op FOO_BAR",
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_error(capsys, main(["firmware", str(export_copy)]), "on-device parity needs test images", "--data")
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--parity", "0", "-o", str(blocker / "out")]),
        "is not a writable folder",
    )
    (export_copy / "firmware" / "cortex-m4").mkdir(parents=True)
    (export_copy / "firmware" / "cortex-m4" / "notes.txt").write_text("mine")
    one_error(
        capsys,
        main(["firmware", str(export_copy), "--parity", "0"]),
        "is an existing folder that is not an earlier firmware folder",
    )
    assert (export_copy / "firmware" / "cortex-m4" / "notes.txt").read_text() == "mine"
    shutil.rmtree(export_copy / "firmware")
    one_error(capsys, main(["firmware", str(tmp_path)]), "no TFLM bundle")
    assert _nothing_written(export_copy)


def test_a_cached_library_is_not_rebuilt(monkeypatch):
    from cnnedge.firmware import prepare

    real = subprocess.run

    def no_make(cmd, *a, **kw):
        assert "microlite" not in cmd, "the cached library was rebuilt"
        return real(cmd, *a, **kw)

    monkeypatch.setattr(subprocess, "run", no_make)
    (lib,) = prepare("cortex-m4")
    assert lib.name == "libtensorflow-microlite.a" and lib.is_file()


def test_the_link_map_is_split_by_owner():
    from cnnedge.firmware.memory import parse_map

    text = """Discarded input sections
 .text.x        0x00000000       0x40 /b/main.cc.o
Linker script and memory map
.text           0x00000000      0x180
 .text.main     0x00000000       0x40 /b/main.cc.o
 .rodata.str1.1
                0x00000040       0x30 /c/libtensorflow-microlite.a(micro_interpreter.o)
 .rodata.str1.1
                0x00000060       0x10 /c/libtensorflow-microlite.a(micro_allocator.o)
 *fill*         0x00000070        0x4
 .rodata.g_model_data
                0x00000080       0xf0 /b/model_data.cc.o
 .text.memcpy   0x00000170        0x8 /usr/lib/arm-none-eabi/lib/thumb/libc.a(memcpy.o)
.bss            0x20000000      0x210
 .bss._ZL12tensor_arena
                0x20000000      0x200 /b/main.cc.o
 .bss.x         0x20000200       0x10 /usr/lib/gcc/arm-none-eabi/12.2.1/libgcc.a(x.o)
.debug_info     0x00000000     0x9999
 .debug_info    0x00000000     0x9999 /b/main.cc.o
"""
    m = parse_map(text)
    # merged strings overlap: each counts up to where the next one starts; fill goes to the
    # section before it; the gaps the section's own size leaves (alignment) go to the app
    assert m[".text"] == {"app": 0x40 + 0x14, "tflm": 0x20 + 0x10 + 0x4, "model": 0xF0, "runtime": 0x8}
    assert sum(m[".text"].values()) == 0x180
    assert m[".bss"] == {"arena": 0x200, "runtime": 0x10}
    assert ".debug_info" not in m


def test_the_bundles_makefile_builds_and_runs_it_on_the_host(tflm_run, tmp_path):
    """The bundle's own build file, without cnnedge: TFLM's Makefile compiles its sources with
    TFLM's flags, links the (cached) library and runs the self-check."""
    from cnnedge.firmware import prepare, targets, tflm_tree

    prepare("host")
    tree = tflm_tree.work_tree(tflm_tree.source_dir())
    gen = tflm_tree.build_dir(targets.get("host"), "reference") / "gen"
    bundle = tmp_path / "tflm"
    shutil.copytree(tflm_run["bundle"], bundle)
    r = subprocess.run(
        [
            "make",
            "-C",
            str(bundle),
            f"TFLM_DIR={tree}",
            "TARGET=linux",
            "TARGET_ARCH=x86_64",
            "OPTIMIZED_KERNEL_DIR=",
            f"BASE_GENDIR={gen}",
            "run",
        ],
        capture_output=True,
        text=True,
        env=tflm_tree._env(),
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    assert "self-check: passed" in r.stdout


def test_parity_counts_near_ties_apart():
    from cnnedge.firmware.parity import compare

    host = np.array([[10, 9, 0], [5, 20, 1], [3, 3, 40]], np.int8)
    labels = np.array([0, 1, 2])
    same = compare(host.copy(), host, labels)
    assert same["passed"] and same["top1_agreement"] == 1.0 and same["flips"] == 0
    tie = host.copy()
    tie[0] = [9, 10, 0]  # one step each way: the firmware's class is LiteRT's runner-up by 1
    r = compare(tie, host, labels)
    assert r["flips"] == r["flips_near_tie"] == 1 and r["passed"] and r["max_step_diff"] == 1
    wrong = host.copy()
    wrong[1] = [21, 20, 1]  # 16 steps off: a real disagreement
    r = compare(wrong, host, labels)
    assert not r["passed"] and r["flips"] == 1 and r["flips_near_tie"] == 0
    assert r["accuracy_device"] == pytest.approx(2 / 3) and r["accuracy_litert"] == 1.0
