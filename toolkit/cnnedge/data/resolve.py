"""``open_dataset``: turn a name or a path into a :class:`Source`.

Names: ``fashion-mnist`` (``fashion_mnist``) and ``cifar10`` (``cifar-10``). They are searched in
``data_dir``, ``$CNNEDGE_DATA``, ``~/.keras/datasets``, and for Fashion-MNIST also in
``/usr/share/datasets`` (the Debian package ``dataset-fashion-mnist``); nowhere else. When
``download`` is true and nothing is found, either is fetched into ``~/.keras/datasets`` (checksum
checked, written atomically). Paths: an IDX folder, a ``cifar-10-batches-bin|py`` folder, a packed
TFRecord folder (``dataset.json``, any gfile URL) or an image folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from cnnedge.data import cifar, idx
from cnnedge.data.folder import FolderSource
from cnnedge.data.records import RecordSource, is_packed, looks_partial
from cnnedge.errors import CnnedgeError, one_line
from cnnedge.files import default_mode

FASHION_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# sha256 of the original Fashion-MNIST files (zalandoresearch; same bytes as the Keras mirror)
FASHION_SHA256 = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
FASHION_NAMES = ("fashion-mnist", "fashion_mnist", "fashionmnist")
CIFAR_NAMES = ("cifar10", "cifar-10", "cifar_10")
CIFAR_DIRS = ("cifar-10-batches-bin", "cifar-10-batches-py", "cifar10-images", "cifar10")
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # the one checksum the dataset's page publishes
CIFAR_PY = "cifar-10-batches-py"


def _base_dirs(data_dir) -> list[Path]:
    dirs = []
    if data_dir:
        dirs.append(Path(data_dir).expanduser())
    if os.environ.get("CNNEDGE_DATA"):
        dirs.append(Path(os.environ["CNNEDGE_DATA"]).expanduser())
    dirs.append(Path.home() / ".keras" / "datasets")
    return dirs


def _fashion_dirs(data_dir) -> list[Path]:
    out = []
    for d in _base_dirs(data_dir):
        out += [d, d / "fashion-mnist"]
    out.append(Path("/usr/share/datasets/fashion-mnist"))
    return out


def download_fashion(dest: Path, searched: list[Path]) -> Path:
    """Fetch the four files into ``dest`` (temp file + rename, SHA-256 checked)."""
    missing_msg = (
        f"Fashion-MNIST files not found in {', '.join(str(s) for s in searched)}; "
        "install the Debian package dataset-fashion-mnist (apt-get install "
        "dataset-fashion-mnist) or put the four *-ubyte.gz files in $CNNEDGE_DATA"
    )
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for name, sha in FASHION_SHA256.items():
            target = dest / name
            if target.is_file() and _sha256(target) == sha:
                continue
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=dest)
            try:
                h = hashlib.sha256()
                _fetch(FASHION_URL + name, fd, h)
                if h.hexdigest() != sha:
                    raise CnnedgeError(
                        f"downloaded {FASHION_URL + name} has sha256 {h.hexdigest()}, expected {sha}"
                    )
                default_mode(tmp)
                os.replace(tmp, target)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except CnnedgeError:
        raise
    except Exception:  # noqa: BLE001 - offline, DNS, HTTP, disk: one clear message
        raise CnnedgeError(missing_msg) from None
    return dest


def _fetch(url: str, fd: int, h) -> tuple[int, str | None]:
    """Stream ``url`` into the open file ``fd``, feeding hasher ``h``; (bytes received, the
    server's Content-Length or None)."""
    got = 0
    with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=60) as r:
        size = r.headers.get("Content-Length")
        while chunk := r.read(1 << 20):
            h.update(chunk)
            f.write(chunk)
            got += len(chunk)
    return got, size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _open_fashion(data_dir, download, kw):
    searched = _fashion_dirs(data_dir)
    for d in searched:
        if d.is_dir() and idx.has_idx(d):
            return idx.open_idx(d, fashion=True, **kw)
    if not download:
        raise CnnedgeError(
            f"Fashion-MNIST files not found in {', '.join(str(s) for s in searched)}; install "
            "the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
            "or put the four *-ubyte.gz files in $CNNEDGE_DATA"
        )
    dest = download_fashion(Path.home() / ".keras" / "datasets" / "fashion-mnist", searched)
    return idx.open_idx(dest, fashion=True, **kw)


def _cause(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason  # the socket error it wraps says more ("Connection refused")
    return one_line(e, 200) or type(e).__name__


def _unsafe_member(m: tarfile.TarInfo, root: Path) -> str | None:
    """Why ``m`` must not be extracted under ``root`` (None: safe)."""
    name = m.name.replace("\\", "/")
    if name.startswith("/") or os.path.isabs(m.name) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in name.split("/"):
        return "'..' in the path"
    if not (m.isfile() or m.isdir()):  # symlinks, hard links, devices, FIFOs
        return "link or special file"
    if not (root / name).resolve().is_relative_to(root.resolve()):
        return "outside the target folder"
    return None


def _extract_safely(archive: Path, work: Path) -> None:
    """Every member is checked before anything is written; ``filter="data"`` is a second guard."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                why = _unsafe_member(m, work)
                if why:
                    raise CnnedgeError(
                        f"{CIFAR_URL}: refusing unsafe tarball member {m.name!r} "
                        f"({why}); nothing was extracted"
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(work, members=members, filter="data")
            else:  # a Python without PEP 706: the checks above are the guard
                tar.extractall(work, members=members)
    except CnnedgeError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:  # damaged gzip or tar
        raise CnnedgeError(
            f"{CIFAR_URL}: cannot unpack the tarball ({_cause(e)}); nothing was kept"
        ) from None


def download_cifar(base: Path) -> Path:
    """Fetch the python tarball, check its MD5, unpack it to ``base/cifar-10-batches-py``.

    The tarball goes to a temp file and is unpacked into a temp sibling folder that is renamed
    into place only when complete, so a failure at any point leaves nothing behind.
    """
    dest = base / CIFAR_PY
    if dest.is_dir() and any(dest.iterdir()):  # don't fetch 170 MB only to fail the rename
        raise CnnedgeError(
            f"{dest} exists but holds no CIFAR-10 batches; remove it or put "
            "data_batch_1..5 and test_batch there"
        )
    manual = (
        f"download it by hand, unpack it and put {CIFAR_PY}/ in $CNNEDGE_DATA or "
        "--data-dir, or pass the folder's path"
    )
    tmp = work = None
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".cifar-10-python.", suffix=".tar.gz", dir=base)
        h = hashlib.md5(usedforsecurity=False)  # integrity against the published sum only
        try:
            got, size = _fetch(CIFAR_URL, fd, h)
            # read(n) returns b"" when the server hangs up early: name that, not a bad checksum
            if size and size.isdigit() and got != int(size):
                raise OSError(f"connection closed after {got} of {size} bytes")
        except Exception as e:  # noqa: BLE001 - offline, DNS, HTTP, short read, disk
            raise CnnedgeError(f"cannot download CIFAR-10 from {CIFAR_URL} ({_cause(e)}); {manual}") from None
        if h.hexdigest() != CIFAR_MD5:
            raise CnnedgeError(
                f"downloaded {CIFAR_URL} has md5 {h.hexdigest()}, expected "
                f"{CIFAR_MD5} (truncated or altered); nothing was kept; {manual}"
            )
        work = Path(tempfile.mkdtemp(prefix=f".{CIFAR_PY}.", dir=base))
        _extract_safely(Path(tmp), work)
        if not cifar.is_cifar_py(work / CIFAR_PY):
            raise CnnedgeError(
                f"{CIFAR_URL}: the tarball holds no {CIFAR_PY}/ with data_batch_* files; nothing was kept"
            )
        try:
            os.rename(work / CIFAR_PY, dest)  # same folder, so atomic: complete or absent
        except OSError as e:
            if not cifar.is_cifar_py(dest):  # else another process finished first: use its copy
                raise CnnedgeError(f"cannot move the unpacked CIFAR-10 to {dest} ({_cause(e)})") from None
    except OSError as e:  # mkdir, mkstemp, mkdtemp: disk full, read-only home
        raise CnnedgeError(f"cannot download CIFAR-10 into {base} ({_cause(e)}); {manual}") from None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if work:
            shutil.rmtree(work, ignore_errors=True)
    return dest


def _open_cifar(data_dir, download, kw):
    searched = []
    for b in _base_dirs(data_dir):
        for d in (b, *(b / n for n in CIFAR_DIRS)):
            searched.append(d)
            if d.is_dir():
                src = _open_dir(d, kw, name="cifar10", cifar_only=True)
                if src is not None:
                    return src
    if download:
        dest = download_cifar(Path.home() / ".keras" / "datasets")
        return _open_dir(dest, kw, name="cifar10", cifar_only=True)
    bases = ", ".join(str(b) for b in _base_dirs(data_dir))
    raise CnnedgeError(
        f"CIFAR-10 not found: none of {', '.join(CIFAR_DIRS)} in {bases}; put "
        "one there, set $CNNEDGE_DATA, or pass the folder's path"
    )


def _open_dir(d: Path, kw, *, name=None, cifar_only=False):
    folder_kw = {k: v for k, v in kw.items() if k not in ("keep_size",)}
    if cifar.is_cifar_bin(d):
        return cifar.CifarBinSource(d, name=name or "cifar10", **folder_kw)
    if cifar.is_cifar_py(d):
        return cifar.CifarPySource(d, name=name or "cifar10", **folder_kw)
    for sub in ("cifar-10-batches-bin", "cifar-10-batches-py"):
        if (d / sub).is_dir():
            return _open_dir(d / sub, kw, name=name)
    if cifar_only:
        if d.name in ("cifar10-images", "cifar10") or (d / "train" / "airplane").is_dir():
            if is_packed(str(d)):
                return RecordSource(str(d), name=name, **kw)
            return FolderSource(d, name=name, **kw)
        return None
    if is_packed(str(d)):
        return RecordSource(str(d), name=name, **kw)
    if looks_partial(str(d)):
        raise CnnedgeError(f"{d}: TFRecord files without dataset.json (an interrupted pack?); pack it again")
    if idx.has_idx(d):
        return idx.open_idx(d, fashion="fashion" in d.name.lower(), name=name, **folder_kw)
    return FolderSource(d, name=name, **kw)


def _checked_size(image_size):
    if image_size is None:
        return None
    try:
        out = (int(image_size[0]), int(image_size[1]))
        ok = min(out) > 0
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise CnnedgeError(f"image_size must be (height, width) > 0, got {image_size!r}")
    return out


def open_dataset(
    spec,
    *,
    data_dir=None,
    val_fraction: float = 0.0,
    seed: int = 0,
    image_size=None,
    keep_size: bool = False,
    batch_mode: str = "pad",
    download: bool = True,
    val_split: str = "random",
    channels: int | None = None,
):
    """Open a dataset by name or path; nothing is read beyond headers and labels.

    Args:
        spec: A dataset name (``fashion-mnist``, ``cifar10``), a folder (class folders, IDX or
            CIFAR files, a packed dataset) or a packed dataset's URL.
        data_dir: Folder searched first for the dataset's files.
        val_fraction: Fraction of train carved out as the "val" split (0: none).
        seed: Seed of that carve-out.
        image_size: (H, W) every image is resized to (None: the source's own size).
        keep_size: Keep each image at its own size (variable-size batches).
        batch_mode: ``pad`` or ``bucket``: how variable-size images are batched.
        download: Fetch a named dataset that is not on disk.
        val_split: How ``val_fraction`` is carved: ``random`` or ``stratified`` (each class
            its share).
        channels: 1 or 3 converts colour to grey (luma) or grey to RGB as images are decoded
            (None: the data's own).

    Returns:
        A :class:`cnnedge.data.base.Source`.
    """
    if channels is not None:
        src = open_dataset(
            spec,
            data_dir=data_dir,
            val_fraction=val_fraction,
            seed=seed,
            image_size=image_size,
            keep_size=keep_size,
            batch_mode=batch_mode,
            download=download,
            val_split=val_split,
        )
        return src.with_channels(channels)
    if val_split not in ("random", "stratified"):
        raise CnnedgeError(f"val_split must be 'random' or 'stratified', got {val_split!r}")
    if val_split == "stratified" and val_fraction:
        src = open_dataset(
            spec,
            data_dir=data_dir,
            seed=seed,
            image_size=image_size,
            keep_size=keep_size,
            batch_mode=batch_mode,
            download=download,
        )
        try:
            return src.carve_val(float(val_fraction), int(seed))
        except CnnedgeError as e:  # the split's message does not know which data it is
            raise CnnedgeError(f"{spec}: {e}") from None
    if batch_mode not in ("pad", "bucket"):
        raise CnnedgeError(f"batch_mode must be 'pad' or 'bucket', got {batch_mode!r}")
    if data_dir and not Path(data_dir).expanduser().is_dir():  # never fall back silently
        raise CnnedgeError(f"--data-dir {data_dir}: no such folder")
    kw = {
        "val_fraction": float(val_fraction),
        "seed": int(seed),
        "resize": _checked_size(image_size),
        "keep_size": bool(keep_size),
        "batch_mode": batch_mode,
    }
    spec = str(spec)
    key = spec.strip().lower()
    if key in FASHION_NAMES:
        return _open_fashion(data_dir, download, {k: v for k, v in kw.items() if k != "keep_size"})
    if key in CIFAR_NAMES:
        return _open_cifar(data_dir, download, kw)
    if "://" in spec:
        from cnnedge.backend import tf

        if not tf.io.gfile.exists(spec.rstrip("/") + "/dataset.json"):
            raise CnnedgeError(f"{spec}: no dataset.json (only packed datasets are read from URLs)")
        return RecordSource(spec, **kw)
    candidates = [Path(spec).expanduser()]
    if data_dir and not Path(spec).is_absolute():
        candidates.insert(0, Path(data_dir).expanduser() / spec)
    for p in candidates:
        if p.is_dir():
            return _open_dir(p.resolve(), kw)
        if p.is_file():
            raise CnnedgeError(f"{p}: is a file; pass the folder that holds the dataset")
    raise CnnedgeError(
        f"dataset {spec!r} not found: not a known name ({FASHION_NAMES[0]}, "
        f"{CIFAR_NAMES[0]}) and no such directory"
    )
