"""CIFAR-10 download: a tiny tarball served on 127.0.0.1 stands in for the real one (no internet)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import socket
import tarfile
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import write_cifar_py

from cnnedge import data
from cnnedge.data import resolve
from cnnedge.errors import CnnedgeError

TAR = "cifar-10-python.tar.gz"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):  # keep pytest output clean
        pass


class _Truncating(_Quiet):
    """Promises more bytes than it sends, then hangs up: an interrupted download."""

    def do_GET(self):
        body = (Path(self.directory) / TAR).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) * 2))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


def _serve(folder: Path, handler=_Quiet):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _tarball(root: Path, extra=()) -> tuple[Path, Path]:
    """``root/www/cifar-10-python.tar.gz`` in the official layout (5 train batches of 2 + 3 test),
    plus ``extra`` TarInfo members; returns it and the folder it was made from."""
    src = root / "src" / resolve.CIFAR_PY
    write_cifar_py(src, sizes=(2, 2, 2, 2, 2), n_test=3)
    www = root / "www"
    www.mkdir()
    with tarfile.open(www / TAR, "w:gz") as tar:
        tar.add(src, arcname=resolve.CIFAR_PY)
        for info in extra:
            payload = b"evil" if info.isfile() else b""
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload else None)
    return www / TAR, src


@pytest.fixture
def env(tmp_path, monkeypatch):
    """HOME in tmp_path, no $CNNEDGE_DATA, no proxy, and any URL but 127.0.0.1 refused."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setattr("pathlib.Path.home", lambda: home)
    monkeypatch.delenv("CNNEDGE_DATA", raising=False)
    monkeypatch.setenv("no_proxy", "*")
    real = urllib.request.urlopen

    def loopback_only(url, *a, **k):
        host = urllib.parse.urlsplit(url if isinstance(url, str) else url.full_url).hostname
        assert host == "127.0.0.1", f"test tried to reach {url}"
        return real(url, *a, **k)

    monkeypatch.setattr("urllib.request.urlopen", loopback_only)
    return home / ".keras" / "datasets"


def _point_at(monkeypatch, server, md5):
    monkeypatch.setattr(resolve, "CIFAR_URL", f"http://127.0.0.1:{server.server_port}/{TAR}")
    monkeypatch.setattr(resolve, "CIFAR_MD5", md5)


def _leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_download_then_open(tmp_path, env, monkeypatch):
    archive, src_dir = _tarball(tmp_path)
    server = _serve(archive.parent)
    try:
        _point_at(monkeypatch, server, _md5(archive))
        src = data.open_dataset("cifar10")
    finally:
        server.shutdown()
    assert src.info.format == "cifar-py" and src.info.name == "cifar10"
    assert src.info.split_sizes == {"train": 10, "test": 3}
    assert src.info.class_names[0] == "airplane"
    names = ["batches.meta", "test_batch", *(f"data_batch_{i}" for i in range(1, 6))]
    assert _leftovers(env) == sorted([resolve.CIFAR_PY, *(f"{resolve.CIFAR_PY}/{n}" for n in names)])
    for n in names:  # unpacked byte for byte
        assert (env / resolve.CIFAR_PY / n).read_bytes() == (src_dir / n).read_bytes()
    # found next time: the server is gone, so a second download would fail
    assert data.open_dataset("cifar-10").info.split_sizes == {"train": 10, "test": 3}


def test_no_download_when_not_allowed(env):
    with pytest.raises(CnnedgeError, match="CIFAR-10 not found") as e:
        data.open_dataset("cifar10", download=False)
    _one_line(e)
    assert _leftovers(env) == []


def test_checksum_mismatch_keeps_nothing(tmp_path, env, monkeypatch):
    archive, _ = _tarball(tmp_path)
    server = _serve(archive.parent)
    try:
        _point_at(monkeypatch, server, "0" * 32)
        with pytest.raises(CnnedgeError, match="md5") as e:
            data.open_dataset("cifar10")
    finally:
        server.shutdown()
    _one_line(e, resolve.CIFAR_URL, _md5(archive), "0" * 32)
    assert _leftovers(env) == []


def test_interrupted_download_keeps_nothing(tmp_path, env, monkeypatch):
    archive, _ = _tarball(tmp_path)
    server = _serve(archive.parent, _Truncating)
    try:
        _point_at(monkeypatch, server, _md5(archive))
        with pytest.raises(CnnedgeError, match="cannot download CIFAR-10") as e:
            data.open_dataset("cifar10")
    finally:
        server.shutdown()
    _one_line(e, resolve.CIFAR_URL, "by hand")
    assert _leftovers(env) == []


def _member(name, kind=tarfile.REGTYPE, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.mark.parametrize(
    "bad, why",
    [
        (_member("../evil"), "'..'"),
        (_member(f"{resolve.CIFAR_PY}/../../evil"), "'..'"),
        (_member("/tmp/cnnedge-test-evil"), "absolute path"),
        (_member(f"{resolve.CIFAR_PY}/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
        (_member(f"{resolve.CIFAR_PY}/hard", tarfile.LNKTYPE, "../../../etc/passwd"), "link"),
        (_member(f"{resolve.CIFAR_PY}/dev", tarfile.CHRTYPE), "special file"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink", "device"],
)
def test_unsafe_member_is_refused_before_extracting(tmp_path, env, monkeypatch, bad, why):
    archive, _ = _tarball(tmp_path, [bad])
    extracted = []
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda *a, **k: extracted.append(a))
    server = _serve(archive.parent)
    try:
        _point_at(monkeypatch, server, _md5(archive))
        with pytest.raises(CnnedgeError, match="refusing unsafe tarball member") as e:
            data.open_dataset("cifar10")
    finally:
        server.shutdown()
    _one_line(e, resolve.CIFAR_URL, repr(bad.name), why)
    assert extracted == []
    assert _leftovers(env) == []
    assert not list(tmp_path.rglob("*evil*")) and not Path("/tmp/cnnedge-test-evil").exists()


def test_server_unreachable_is_one_line(env, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(resolve, "CIFAR_URL", f"http://127.0.0.1:{port}/{TAR}")
    with pytest.raises(CnnedgeError, match="cannot download CIFAR-10") as e:
        data.open_dataset("cifar10")
    _one_line(e, resolve.CIFAR_URL, "by hand", resolve.CIFAR_PY, "$CNNEDGE_DATA")
    assert _leftovers(env) == []
