"""Small helpers shared by the pipeline stages: atomic writes, name lookups with a did-you-mean
hint, comma-separated option lists, silenced native logs, and the environment of a result."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cnnedge.errors import CnnedgeError


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    Keeps the file's extension (Keras picks the format from it). On any error the temporary
    file is removed and the old ``path`` is left untouched. A full disk becomes a CnnedgeError.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create it themselves (some refuse existing files)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        _cleanup(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise CnnedgeError(f"no space left on device writing {path}; the previous "
                               f"version (if any) was kept") from e
        raise
    except BaseException:
        _cleanup(tmp)
        raise


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


def unknown(what: str, name, choices) -> CnnedgeError:
    """``unknown <what> 'x'; did you mean 'y'? available: a, b`` as an error to raise."""
    close = did_you_mean(name, choices)
    hint = f"did you mean '{close}'? " if close else ""
    return CnnedgeError(f"unknown {what} '{name}'; {hint}available: {', '.join(map(str, choices))}")


def split_list(values) -> list[str]:
    """Comma lists from the CLI or Python: "a,b", ["a", "b,c"], None -> stripped, non-empty
    items in order."""
    if values is None:
        return []
    if isinstance(values, (str, int, float, Path)):
        values = [values]
    return [part.strip() for v in values for part in str(v).split(",") if part.strip()]


class StopOnCtrlC:
    """``with StopOnCtrlC(model):`` around Keras ``fit``: Ctrl-C (SIGINT) stops after the current
    step instead of inside a TensorFlow op (which can crash the process), and ``.stop`` tells
    the callbacks that the epoch in progress did not finish; KeyboardInterrupt follows once
    ``fit`` has returned. A second Ctrl-C interrupts at once."""

    def __init__(self, model):
        import threading

        self.model, self.stop = model, threading.Event()
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        import signal

        if self._main:  # signal handlers can only be set in the main thread
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self.stop

    def _handler(self, signum, frame):
        import signal

        self.stop.set()
        self.model.stop_training = True
        signal.signal(signal.SIGINT, self._previous)

    def __exit__(self, kind, value, tb):
        import signal

        if self._main:
            signal.signal(signal.SIGINT, self._previous)
        if self.stop.is_set() and kind is None:
            raise KeyboardInterrupt
        return False


class Interrupts:
    """``with Interrupts() as ctrl_c: ...; ctrl_c.check()``: Ctrl-C (SIGINT) raises
    KeyboardInterrupt as usual and is also remembered, so that a library which swallows it (a
    bare ``except:`` inside a converter) cannot make the command run on: ``check()`` between
    phases raises it again. Outside the main thread it only watches the flag."""

    def __init__(self):
        import threading

        self.hit = False
        self._main = threading.current_thread() is threading.main_thread()

    def __enter__(self):
        import signal

        if self._main:
            # None: a handler set outside Python; Python's own is the one to restore then
            self._previous = signal.getsignal(signal.SIGINT) or signal.default_int_handler
            if self._previous is not signal.SIG_IGN:  # a background job stays uninterruptible
                signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        raise KeyboardInterrupt

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    def __exit__(self, kind, value, tb):
        import signal

        if self._main and self._previous is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, self._previous)
        return False


def check_writable(path, what: str = "output") -> Path:
    """Fail before the work, not after it: ``path`` (a folder, or the first existing folder
    above it) must be writable."""
    path = Path(path)
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CnnedgeError(f"cannot write the {what} to {path}: {folder} is not a writable folder")
    return path


def check_output(path, what: str = "output", *, inputs=(), suffixes=None, replaces=None,
                 folder: bool = False) -> Path:
    """Refuse, before any work, an output that would destroy something it is not an earlier
    version of: one of the command's ``inputs`` (the same file, or an existing file inside an
    input folder, of ``suffixes`` when given), an existing folder (or, with ``folder``, an
    existing file), or an existing file or folder that ``replaces(path)`` does not accept as an
    earlier output. Then the folder above it must be writable (:func:`check_writable`)."""
    p = Path(path).expanduser()
    for src in inputs:
        if _is_input(p, Path(src).expanduser(), suffixes):
            raise CnnedgeError(f"{what} {p} is one of the command's inputs ({src}); pick "
                               "another name")
    if p.is_dir() and not folder:
        raise CnnedgeError(f"{what} {p} is a folder; give a file name")
    if folder and (p.exists() or p.is_symlink()) and not p.is_dir():
        raise CnnedgeError(f"{what} {p} is an existing file, not a folder; pick another name")
    if (p.exists() or p.is_symlink()) and replaces is not None and not replaces(p):
        kind = "folder" if p.is_dir() else "file"
        raise CnnedgeError(f"{what} {p} is an existing {kind} that is not an earlier {what}; "
                           "move it away or pick another name")
    check_writable(p.parent, what)
    return p


def _is_input(out: Path, src: Path, suffixes) -> bool:
    if not out.exists() or not src.exists():  # what does not exist is read by no one
        return False
    if os.path.samefile(out, src) or (out.is_dir() and _inside(src, out)):  # a folder replaced
        return True
    return src.is_dir() and _inside(out, src) and (suffixes is None or
                                                   out.suffix.lower() in suffixes)


def _inside(path: Path, folder: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(folder).rstrip(os.sep) + os.sep)


def default_mode(path) -> None:
    """Give a file made by ``tempfile.mkstemp`` (always 0600) the mode a plain ``open`` would
    have under the umask, before it is renamed into place as an output."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _cleanup(tmp):
    with contextlib.suppress(OSError):
        if os.path.isdir(tmp):
            import shutil

            shutil.rmtree(tmp)
        else:
            os.unlink(tmp)


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def atomic_write_csv(path, rows, fields) -> None:
    """Write dict rows as CSV (header ``fields``) atomically; missing keys become empty cells."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git_sha(cwd=None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=cwd or Path(__file__).parent, timeout=5)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "-uno"], capture_output=True,
                               text=True, cwd=cwd or Path(__file__).parent, timeout=5).stdout
        return sha + ("-dirty" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


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
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tf2onnx", "onnx",
                "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "numpy"):
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
