"""The TFLite Micro sources a firmware builds against, and its library, built once and cached.

The tree is the tflite-micro repository at :data:`COMMIT` with the third-party code its Makefile
downloads (flatbuffers, gemmlowp, ruy, kissfft, CMSIS 6 + Cortex_DFP, CMSIS-NN) in
``tensorflow/lite/micro/tools/make/downloads/``, given by ``--tflm-dir`` or ``$CNNEDGE_TFLM``.
It is checked (files present; the commit from git, or the fingerprint of files that change with
it) and copied once into the cache, where the Makefile may write; the Arm tools are linked
where the Makefile looks for its own toolchain, so it downloads nothing. TFLM's own Makefile
builds ``libtensorflow-microlite.a`` per (commit, target, kernels); a stamp records the make
arguments and the compiler, and the library is rebuilt when they change. Builds take a lock, so
two commands never build the same library at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.firmware import toolchain
from cnnedge.firmware.targets import Target

COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"
ENV = "CNNEDGE_TFLM"
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
THIRD_PARTY = ("flatbuffers", "gemmlowp", "ruy", "kissfft", "cmsis", "cmsis_nn", "cmsis/Cortex_DFP")
# sha256 of files that change with the commit: a tree without .git is checked by these.
FINGERPRINT = {
    "tensorflow/lite/micro/tools/make/third_party_downloads.inc": "745adf15bf6dbc1248806676d9ed6142b0255ef314f5e18ee913a75eacbf085a",  # noqa: E501
    "tensorflow/lite/micro/micro_interpreter.cc": "b5ff9c9dc0d589b4dca51176b6e38175ba737c951a340836c554e07e884a39ff",  # noqa: E501
    "tensorflow/lite/micro/micro_allocator.cc": "73f7eecb3fcdd45629240b9840e715847a053f99318c70b81f5c6c4884a285e6",  # noqa: E501
    "tensorflow/lite/micro/tools/make/ext_libs/cmsis_nn_download.sh": "154cb284af81ce5b05fea8aa0669f5a852e37a4366f4e041b63eb4c0b5757a9e",  # noqa: E501
}
_FETCH = (
    f"git clone https://github.com/tensorflow/tflite-micro DIR && git -C DIR checkout "
    f"{COMMIT[:12]} (its Makefile downloads the third-party code on the first build)"
)
BUILD_TIMEOUT = 3 * 3600


def cache_root() -> Path:
    """``$CNNEDGE_CACHE``, else ``$XDG_CACHE_HOME/cnnedge``, else ``~/.cache/cnnedge``."""
    if os.environ.get("CNNEDGE_CACHE"):
        return Path(os.environ["CNNEDGE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnedge"


def source_dir(tflm_dir=None) -> Path:
    """The TFLM tree given by ``tflm_dir`` or ``$CNNEDGE_TFLM``, checked (:func:`check_tree`)."""
    given = tflm_dir or os.environ.get(ENV)
    if not given:
        raise CnnedgeError(
            f"no TFLite Micro source tree: pass --tflm-dir DIR or set ${ENV} "
            f"(tflite-micro at commit {COMMIT[:12]}: {_FETCH})"
        )
    return check_tree(Path(given).expanduser())


def check_tree(tree: Path) -> Path:
    """``tree`` itself when it holds TFLM at :data:`COMMIT` with its third-party code."""
    if not (tree / MAKEFILE).is_file():
        raise CnnedgeError(f"{tree}: not a TFLite Micro source tree (no {MAKEFILE})")
    missing = [d for d in THIRD_PARTY if not (tree / DOWNLOADS / d).is_dir()]
    if missing:
        raise CnnedgeError(
            f"{tree}: third-party code missing in {DOWNLOADS}/: "
            f"{', '.join(missing)} (build TFLM once where online, e.g. make -f "
            f"{MAKEFILE} third_party_downloads, to fetch them)"
        )
    head = _git_head(tree)
    if head is not None and head != COMMIT:
        raise CnnedgeError(
            f"{tree}: TFLite Micro at commit {head[:12]}; cnnedge builds with "
            f"{COMMIT[:12]} (git -C {tree} checkout {COMMIT[:12]})"
        )
    if head is None:
        for rel, digest in FINGERPRINT.items():
            f = tree / rel
            if not f.is_file() or hashlib.sha256(f.read_bytes()).hexdigest() != digest:
                raise CnnedgeError(
                    f"{f}: {'missing' if not f.is_file() else 'differs from'} "
                    f"TFLite Micro commit {COMMIT[:12]}; use the tree at that "
                    f"commit"
                )
    return tree


def _git_head(tree: Path) -> str | None:
    if not (tree / ".git").exists() or shutil.which("git") is None:
        return None
    r = subprocess.run(["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def work_tree(source: Path) -> Path:
    """A writable copy of ``source`` in the cache (made once per commit), with the Arm tools
    linked where TFLM's Makefile looks for its toolchain."""
    root = cache_root() / "tflm" / COMMIT[:12]
    tree = root / "tree"
    if (tree / MAKEFILE).is_file():
        return tree
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tree.", dir=root))
    try:
        shutil.copytree(
            source, tmp, dirs_exist_ok=True, symlinks=True, ignore=shutil.ignore_patterns(".git", "gen")
        )
        for p in [tmp, *tmp.rglob("*")]:
            if not p.is_symlink():
                p.chmod(p.stat().st_mode | 0o200)
        bin_dir = tmp / DOWNLOADS / "gcc_embedded" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for tool, path in toolchain.arm_tools().items():
            (bin_dir / tool).symlink_to(path)
        tmp.rename(tree)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if (tree / MAKEFILE).is_file():  # another process finished the same copy first
            return tree
        raise CnnedgeError(
            f"cannot copy the TFLite Micro tree {source} into {root}: {e.strerror or e}"
        ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tree


def _make(tree: Path, target: Target, kernels: str, gen: Path, *extra) -> list[str]:
    return ["make", "-s", "-f", MAKEFILE, *extra, *target.make_args(kernels), f"BASE_GENDIR={gen}"]


def _env() -> dict:
    # TFLM's Makefile runs python3 scripts that import numpy and Pillow: this interpreter's.
    import sys

    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def build_dir(target: Target, kernels: str) -> Path:
    return cache_root() / "tflm" / COMMIT[:12] / "build" / f"{target.name}-{kernels}"


def library(source: Path, target: Target, kernels: str, jobs: int | None = None, log=None) -> dict:
    """Build (or find in the cache) TFLM's library for ``target``; returns the stamp: make
    arguments, compiler, library path and the flags to compile the firmware's own sources."""
    import fcntl

    tree = work_tree(source)
    out = build_dir(target, kernels)
    out.mkdir(parents=True, exist_ok=True)
    want = {"commit": COMMIT, "make": target.make_args(kernels), "compiler": toolchain.version(target)}
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same library: wait for it
        stamp = _read_stamp(out)
        if (
            stamp
            and all(stamp.get(k) == v for k, v in want.items())
            and Path(stamp["flags"]["LIB"]).is_file()
        ):
            return stamp
        if log:
            log(f"building TFLite Micro for {target.name} ({kernels} kernels) into {out}: minutes, once")
        gen = out / "gen"
        shutil.rmtree(gen, ignore_errors=True)
        cmd = _make(tree, target, kernels, gen) + [f"-j{jobs or os.cpu_count() or 1}", "microlite"]
        with open(out / "build.log", "w") as f:
            r = subprocess.run(
                cmd, cwd=tree, env=_env(), stdout=f, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT
            )
        if r.returncode != 0:
            tail = (out / "build.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise CnnedgeError(
                f"building TFLite Micro for {target.name} failed (log: "
                f"{out / 'build.log'}): {' | '.join(tail)}"
            )
        stamp = {**want, "flags": flags(tree, target, kernels, gen)}
        from cnnedge.files import atomic_write_json

        atomic_write_json(out / "stamp.json", stamp)
        return stamp


def _read_stamp(out: Path) -> dict | None:
    try:
        return json.loads((out / "stamp.json").read_text())
    except (OSError, ValueError):
        return None


def flags(tree: Path, target: Target, kernels: str, gen: Path) -> dict:
    """What TFLM compiled its library with (CXX, CXXFLAGS, INCLUDES, LDFLAGS, LIBS, LIB), read
    from its Makefile; relative include paths made absolute."""
    extra = ["-f", str(Path(__file__).parent / "csrc" / "flags.mk")]
    r = subprocess.run(
        _make(tree, target, kernels, gen, *extra) + ["cnnedge_flags"],
        cwd=tree,
        env=_env(),
        capture_output=True,
        text=True,
    )
    out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    if r.returncode != 0 or "LIB" not in out:
        raise CnnedgeError(
            f"cannot read TFLite Micro's build flags for {target.name}: "
            f"{(r.stderr or r.stdout).strip()[-300:]}"
        )
    out["INCLUDES"] = " ".join(
        f"-I{(tree / i[2:]).resolve()}" if i.startswith("-I") and not i[2:].startswith("/") else i
        for i in out["INCLUDES"].split()
    )
    return out
