"""Bad input gives one-line CnnedgeErrors naming the file -- and nothing else (hypothesis)."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
from helpers import idx_bytes, write_cifar_bin, write_cifar_py, write_folder, write_idx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cnnedge import data
from cnnedge.data.cifar import load_py_batch
from cnnedge.data.idx import inspect_idx
from cnnedge.errors import CnnedgeError

FAST = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def consume(src):
    """Open-to-end: describe and stream every split, as the CLI would."""
    data.describe(src)
    for split in src.splits:
        with src.guard(split):
            for _ in src.pipeline(split, batch_size=7).as_numpy_iterator():
                pass


def one_line_error(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_missing_and_unknown(tmp_path, monkeypatch):
    with pytest.raises(CnnedgeError, match="not found") as e:
        data.open_dataset(str(tmp_path / "nope"))
    one_line_error(e, "nope")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNEDGE_DATA", raising=False)
    monkeypatch.setattr("cnnedge.data.resolve._fashion_dirs", lambda d: [tmp_path / "x"])
    with pytest.raises(CnnedgeError, match="dataset-fashion-mnist") as e:
        data.open_dataset("fashion-mnist", download=False)
    one_line_error(e, str(tmp_path / "x"))


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    monkeypatch.setattr("cnnedge.data.resolve._fashion_dirs", lambda d: [tmp_path / "x"])
    monkeypatch.setattr("pathlib.Path.home", lambda: tmp_path)
    with pytest.raises(CnnedgeError, match="apt-get install dataset-fashion-mnist") as e:
        data.open_dataset("fashion-mnist")
    one_line_error(e)
    assert not list((tmp_path / ".keras" / "datasets" / "fashion-mnist").iterdir())


@pytest.mark.parametrize(
    "damage, needle",
    [
        (lambda b: b[:-5], "wrong length"),
        (lambda b: b[:10], "truncated IDX header"),
        (lambda b: struct.pack(">I", 2049) + b[4:], "magic"),
        (lambda b: b[:8] + struct.pack(">I", 0) + b[12:], "zero"),
        (lambda b: b + b"\0", "wrong length"),
    ],
)
def test_idx_corrupt(tmp_path, damage, needle):
    write_idx(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(CnnedgeError, match=needle) as e:
        data.open_dataset(str(tmp_path))
    one_line_error(e, str(p))


def test_idx_count_mismatch_and_label_range(tmp_path):
    write_idx(tmp_path / "a", gz=True)
    images = np.zeros((3, 2, 2), np.uint8)
    img, lab = idx_bytes(images, np.array([0, 1]))
    (tmp_path / "a" / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(img))
    (tmp_path / "a" / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(lab))
    with pytest.raises(CnnedgeError, match="3 images but .* 2 labels"):
        data.open_dataset(str(tmp_path / "a"))
    write_idx(tmp_path / "fashion", n_classes=12, seed=3)
    with pytest.raises(CnnedgeError, match="out of range") as e:
        data.open_dataset(str(tmp_path / "fashion"))
    one_line_error(e, "labels-idx1-ubyte")
    gz = tmp_path / "a" / "train-images-idx3-ubyte.gz"
    gz.write_bytes(gz.read_bytes()[:-9])
    with pytest.raises(CnnedgeError, match="corrupt or truncated") as e:
        data.open_dataset(str(tmp_path / "a"))
    one_line_error(e, str(gz))


def test_cifar_bin_corrupt(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    write_cifar_bin(d)
    p = d / "data_batch_2.bin"
    good = p.read_bytes()
    p.write_bytes(good[:-1])
    with pytest.raises(CnnedgeError, match="multiple of 3073") as e:
        data.open_dataset(str(d))
    one_line_error(e, str(p))
    p.write_bytes(b"\x0b" + good[1:])
    with pytest.raises(CnnedgeError, match="label 11 at record 0 is out of range"):
        data.open_dataset(str(d))


def test_cifar_py_rejects_globals_keys_shapes(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    write_cifar_py(d)
    p = d / "data_batch_1"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    cases = [
        (Evil(), "not allowed"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing 'data' or 'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "shape \\(N, 3072\\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "uint8"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 images but 1 labels"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "out of range"),
        ([1, 2, 3], "expected a dict"),
    ]
    for obj, needle in cases:
        p.write_bytes(pickle.dumps(obj))
        with pytest.raises(CnnedgeError, match=needle) as e:
            data.open_dataset(str(d))
        one_line_error(e, str(p))
    p.write_bytes(b"not a pickle")
    with pytest.raises(CnnedgeError, match="not a valid CIFAR pickle"):
        data.open_dataset(str(d))


def test_folder_problems(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CnnedgeError, match="no class folders"):
        data.open_dataset(str(tmp_path / "empty"))
    write_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(CnnedgeError, match="only one class"):
        data.open_dataset(str(tmp_path / "one"))
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "b").mkdir()
    (tmp_path / "noimg" / "a" / "x.txt").write_text("hi")
    with pytest.raises(CnnedgeError, match="no images"):
        data.open_dataset(str(tmp_path / "noimg"))
    items = write_folder(tmp_path / "bad", classes=("a", "b"), fmt="jpg")
    items[3][0].write_bytes(b"this is no jpeg")
    with pytest.raises(CnnedgeError, match="unreadable image") as e:
        data.open_dataset(str(tmp_path / "bad"))
    one_line_error(e, str(items[3][0]))


def test_truncated_jpeg_body_names_file(tmp_path):
    items = write_folder(tmp_path / "t", classes=("a", "b"), fmt="jpg", size=(16, 16))
    bad = items[5][0]
    bad.write_bytes(bad.read_bytes()[:200])  # header intact, entropy-coded data cut
    src = data.open_dataset(str(tmp_path / "t"))
    with pytest.raises(CnnedgeError) as e:
        consume(src)
    one_line_error(e, str(bad))


def test_pack_refuses_incomplete(tmp_path):
    write_folder(tmp_path / "f", classes=("a", "b"))
    out = data.pack(data.open_dataset(str(tmp_path / "f")), str(tmp_path / "p"), shards=2)
    (tmp_path / "p" / "dataset.json").unlink()
    with pytest.raises(CnnedgeError, match="without dataset.json"):
        data.open_dataset(out)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "keep.txt").write_text("x")
    with pytest.raises(CnnedgeError, match="not a cnnedge pack"):
        data.pack(data.open_dataset(str(tmp_path / "f")), str(tmp_path / "junk"), overwrite=True)


# ----------------------------------------------------------------------------- property tests
@FAST
@given(blob=st.binary(max_size=300))
def test_idx_validator_random_bytes(tmp_path, blob):
    for kind, name in (("images", "img"), ("labels", "lab")):
        p = tmp_path / name
        p.write_bytes(blob)
        try:
            inspect_idx(p, kind)
        except CnnedgeError:
            pass
        gz = tmp_path / (name + ".gz")
        gz.write_bytes(blob)
        try:
            inspect_idx(gz, kind)
        except CnnedgeError:
            pass


def _mutate(raw: bytes, cut: int, pos: int, value: int) -> bytes:
    b = bytearray(raw[: max(0, len(raw) - cut)] if cut else raw)
    if b:
        b[pos % len(b)] = value
    return bytes(b)


def only_clean_errors(folder, *, before=None):
    """Opening and reading ``folder`` either works or raises a one-line CnnedgeError."""
    try:
        if before is not None:
            before()
        consume(data.open_dataset(str(folder)))
    except CnnedgeError as e:
        assert "\n" not in str(e)


@FAST
@given(
    which=st.sampled_from(["train-images-idx3-ubyte", "train-labels-idx1-ubyte"]),
    gz=st.booleans(),
    cut=st.integers(0, 40),
    pos=st.integers(0, 30),
    value=st.integers(0, 255),
)
def test_idx_mutations_only_cnnedge_errors(tmp_path_factory, which, gz, cut, pos, value):
    folder = tmp_path_factory.mktemp("m")
    write_idx(folder, n_train=6, n_test=3, h=3, w=2, gz=gz)
    p = folder / (which + (".gz" if gz else ""))
    p.write_bytes(_mutate(p.read_bytes(), cut, pos, value))
    only_clean_errors(folder)


@FAST
@given(cut=st.integers(0, 3100), pos=st.integers(0, 20000), value=st.integers(0, 255))
def test_cifar_bin_mutations_only_cnnedge_errors(tmp_path_factory, cut, pos, value):
    folder = tmp_path_factory.mktemp("cb")
    write_cifar_bin(folder, sizes=(3, 2), n_test=2)
    p = folder / "data_batch_1.bin"
    p.write_bytes(_mutate(p.read_bytes(), cut, pos, value))
    only_clean_errors(folder)


@FAST
@given(data_=st.data())
def test_cifar_py_mutations_only_cnnedge_errors(tmp_path_factory, data_):
    folder = tmp_path_factory.mktemp("cp")
    write_cifar_py(folder, sizes=(2,), n_test=1)
    p = folder / "data_batch_1"
    raw = p.read_bytes()
    mode = data_.draw(st.sampled_from(["flip", "truncate", "random"]))
    if mode == "flip":
        raw = _mutate(raw, 0, data_.draw(st.integers(0, len(raw))), data_.draw(st.integers(0, 255)))
    elif mode == "truncate":
        raw = raw[: data_.draw(st.integers(0, len(raw)))]
    else:
        raw = data_.draw(st.binary(max_size=200))
    p.write_bytes(raw)
    only_clean_errors(folder, before=lambda: load_py_batch(p, 10))
