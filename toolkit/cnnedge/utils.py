"""Small helpers shared by the pipeline stages: name lookups with a did-you-mean hint,
comma-separated option lists, silenced native logs, the environment of a result, stratified
samples and class weights. Writing outputs is :mod:`cnnedge.files`, Ctrl-C handling
:mod:`cnnedge.interrupts`."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError


def debug_enabled() -> bool:
    """``cnnedge --debug`` / ``CNNEDGE_DEBUG=1``: show tracebacks and library logs."""
    return os.environ.get("CNNEDGE_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def quiet_stderr(enabled: bool | None = None):
    """Send fd 2 to /dev/null while native code (TensorFlow, LiteRT, the TFLite converter) logs
    there. Default: silent unless ``--debug``. Python exceptions still propagate."""
    if enabled is None:
        enabled = not debug_enabled()
    if not enabled:
        yield
        return
    fd = 2  # native code writes to fd 2 whatever sys.stderr is
    try:
        sys.stderr.flush()
        saved = os.dup(fd)
    except (OSError, ValueError):  # no real fd 2 (e.g. some notebook frontends)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


@contextlib.contextmanager
def captured_stderr():
    """Collect what native code writes to fd 2 (TFLite Micro's allocation report and errors):
    yields a list that holds the text once the block ends."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        try:
            os.dup2(f.fileno(), 2)
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            out.append(f.read().decode("utf-8", "replace"))


def did_you_mean(name, choices) -> str | None:
    """The choice closest to a mistyped ``name``, if one is close enough."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return close[0] if close else None


def unknown(what: str, name, choices, *, of: str = "", hints=None) -> CnnedgeError:
    """``unknown <what> 'x'[ of <of>]; did you mean 'y'? available: a, b`` as an error to raise;
    ``hints``: the names a hint is drawn from when ``choices`` are descriptions."""
    close = did_you_mean(name, choices if hints is None else hints)
    hint = f"did you mean '{close}'? " if close else ""
    where = f" of {of}" if of else ""
    return CnnedgeError(f"unknown {what} '{name}'{where}; {hint}available: {', '.join(map(str, choices))}")


def split_list(values) -> list[str]:
    """Comma lists from the CLI or Python: "a,b", ["a", "b,c"], None -> stripped, non-empty
    items in order."""
    if values is None:
        return []
    if isinstance(values, (str, int, float, Path)):
        values = [values]
    return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


def git_sha(cwd=None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).parent,
            timeout=5,
        )
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "-uno"],
            capture_output=True,
            text=True,
            cwd=cwd or Path(__file__).parent,
            timeout=5,
        ).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name as lscpu prints it (/proc/cpuinfo), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict:
    """Versions and machine facts recorded next to every result."""
    from importlib import metadata

    import cnnedge

    env = {
        "cnnedge": cnnedge.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "git_sha": git_sha(),
    }
    for pkg in (
        "tensorflow",
        "tf-keras",
        "tensorflow-model-optimization",
        "tf2onnx",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "ai-edge-litert",
        "numpy",
    ):
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return env


def stratified_positions(labels, n: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of ``n`` examples drawn with a fixed seed, each class in proportion to
    its share of ``labels`` (never "the first n" of a class-sorted folder)."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    rank = np.empty(len(labels))
    for c in np.unique(labels):
        members = order[labels[order] == c]  # this class in shuffled order
        rank[members] = (np.arange(len(members)) + rng.random()) / len(members)
    return np.sort(np.argsort(rank, kind="stable")[:n])


def folder_name(class_name: str) -> str:
    """A class name as a folder name ("T-shirt/top" -> "T-shirt_top"; never '.', '..' or
    hidden): the class folders of `demo --collect` and `predict --save-dir`."""
    s = "".join("_" if c in "/\\" or ord(c) < 32 else c for c in str(class_name)).strip()
    return s.lstrip(".") or "_"


def balanced_weights(labels, k: int) -> dict:
    """{class: weight} inversely proportional to the class counts of ``labels`` (mean 1)."""
    counts = np.bincount(np.asarray(labels), minlength=k)
    w = counts.sum() / (k * np.maximum(counts, 1))
    return {i: float(v) for i, v in enumerate(w)}
