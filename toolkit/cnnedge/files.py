"""Writing outputs: atomically (a temporary file beside the target, renamed over it only on
success), with the mode a plain ``open`` would give, and refused before any work when the output
would destroy an input or something that is not an earlier version of it."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

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
            raise CnnedgeError(
                f"no space left on device writing {path}; the previous version (if any) was kept"
            ) from e
        raise
    except BaseException:
        _cleanup(tmp)
        raise


def check_writable(path, what: str = "output") -> Path:
    """Fail before the work, not after it: ``path`` (a folder, or the first existing folder
    above it) must be writable."""
    path = Path(path)
    folder = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise CnnedgeError(f"cannot write the {what} to {path}: {folder} is not a writable folder")
    return path


def check_output(
    path, what: str = "output", *, inputs=(), suffixes=None, replaces=None, folder: bool = False
) -> Path:
    """Refuse, before any work, an output that would destroy something it is not an earlier
    version of: one of the command's ``inputs`` (the same file, or an existing file inside an
    input folder, of ``suffixes`` when given), an existing folder (or, with ``folder``, an
    existing file), or an existing file or folder that ``replaces(path)`` does not accept as an
    earlier output. Then the folder above it must be writable (:func:`check_writable`)."""
    p = Path(path).expanduser()
    for src in inputs:
        if _is_input(p, Path(src).expanduser(), suffixes):
            raise CnnedgeError(f"{what} {p} is one of the command's inputs ({src}); pick another name")
    if p.is_dir() and not folder:
        raise CnnedgeError(f"{what} {p} is a folder; give a file name")
    if folder and (p.exists() or p.is_symlink()) and not p.is_dir():
        raise CnnedgeError(f"{what} {p} is an existing file, not a folder; pick another name")
    if (p.exists() or p.is_symlink()) and replaces is not None and not replaces(p):
        kind = "folder" if p.is_dir() else "file"
        raise CnnedgeError(
            f"{what} {p} is an existing {kind} that is not an earlier {what}; "
            "move it away or pick another name"
        )
    check_writable(p.parent, what)
    return p


def _is_input(out: Path, src: Path, suffixes) -> bool:
    if not out.exists() or not src.exists():  # what does not exist is read by no one
        return False
    if os.path.samefile(out, src) or (out.is_dir() and _inside(src, out)):  # a folder replaced
        return True
    return src.is_dir() and _inside(out, src) and (suffixes is None or out.suffix.lower() in suffixes)


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
