"""Bad input and faults, as a hostile but realistic user meets them: every case ends in one
`error:` line naming the file or value and the cause (exit 2), nothing half-written, nothing
an earlier run had is lost. (Model files that carry code: test_safety.py.)"""

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error, tree, write_folder

from cnnedge.cli import main
from cnnedge.run import Run


def train_args(data, tmp_path, *extra):
    return [
        "train",
        "--recipe",
        "fashion_mnist_tiny",
        "--runs-dir",
        str(tmp_path),
        "--set",
        f"data.dataset={data}",
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_epoch=5",
        "--set",
        "train.batch_size=16",
        "--set",
        "qat.enabled=false",
        "--set",
        "train.eval_images=64",
        *extra,
    ]


@pytest.fixture(scope="module")
def finished(easy_idx, tmp_path_factory):
    root = tmp_path_factory.mktemp("finished")
    assert main(train_args(easy_idx, root)) == 0
    return root, root / "fashion_mnist_tiny" / "exp"


# --------------------------------------------------------------- 2, 5, 6: validate, then act
@pytest.mark.parametrize(
    "setting, needle",
    [
        ("model.name=gmp_ss", "unknown model 'gmp_ss'"),
        ("optim.lr=-1", "optim.lr=-1.0 is out of range"),
        ("distill.alpha=2", "distill.alpha=2.0 is out of range; it must be in [0, 1]"),
        ("train.label_smoothing=5", "train.label_smoothing=5.0 is out of range"),
        ("train.steps_per_epoch=0", "train.steps_per_epoch=0 is out of range"),
        ("train.epochs=0", "train.epochs=0 is out of range"),
        ("data.dataset=/nonexistent/data", "/nonexistent/data"),
        ("model.kwargs.widht=3", "no option"),
    ],
)
def test_overwrite_with_a_bad_setting_keeps_the_old_run(finished, easy_idx, capsys, setting, needle):
    root, run = finished
    before = tree(run)
    one_error(capsys, main(train_args(easy_idx, root, "--overwrite", "--set", setting)), needle)
    assert tree(run) == before
    assert sorted(p.name for p in run.parent.iterdir()) == ["exp"]  # no stub, no .old


def test_a_failed_start_leaves_no_stub_and_the_rerun_works(easy_idx, tmp_path, capsys):
    one_error(capsys, main(train_args(easy_idx, tmp_path, "--set", "train.batch_size=0")), "train.batch_size")
    assert not (tmp_path / "fashion_mnist_tiny").exists()
    assert main(train_args(easy_idx, tmp_path)) == 0


def test_overwrite_replaces_only_after_an_epoch(finished, easy_idx, tmp_path, capsys):
    root, run = finished
    copy = tmp_path / "fashion_mnist_tiny" / "exp"
    shutil.copytree(run, copy)
    assert main(train_args(easy_idx, tmp_path, "--overwrite", "--set", "train.seed=3")) == 0
    assert Run(copy).recipe.train.seed == 3
    assert not copy.with_name("exp.old").exists()


# ---------------------------------------------------------------------- 3, 4, 10: the data
def test_class_folders(tmp_path, capsys):
    root = tmp_path / "photos"
    write_folder(root, classes=("cat", "dog"), per_class=3, size=(40, 40))
    (root / "__MACOSX" / "cat").mkdir(parents=True)  # archive metadata: ignored
    (root / ".thumbs").mkdir()
    assert main(["data", "info", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["class_names"] == ["cat", "dog"]
    (root / "emu").mkdir()
    one_error(capsys, main(["data", "info", str(root)]), str(root / "emu"), "holds no images")
    (root / "emu").rmdir()
    os.symlink("..", root / "loop")
    one_error(capsys, main(["data", "info", str(root)]), str(root / "loop"), "a link to")


def test_too_small_images_fail_before_training(tmp_path, capsys):
    root = tmp_path / "tiny_images"
    write_folder(root, classes=("a", "b"), per_class=20, size=(4, 4))
    rc = main(train_args(root, tmp_path / "runs", "--set", "model.name=gmp_xs"))
    one_error(capsys, rc, "input 4×4 is smaller than this model's minimum 8×8")
    assert not (tmp_path / "runs").exists()


def test_missing_data_dir_is_an_error(capsys):
    rc = main(["data", "info", "fashion-mnist", "--data-dir", "/nonexistent/dir"])
    one_error(capsys, rc, "--data-dir /nonexistent/dir: no such folder")


def test_python3_protocol2_cifar_pickle_loads(tmp_path):
    from cnnedge import data

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {
            b"labels": [int(v) for v in rng.integers(0, 10, 4)],
            b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8),
        }
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))  # stores bytes via _codecs
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2)
    )
    assert data.open_dataset(str(folder)).num_examples("train") == 20


# ------------------------------------------------------------------------------ 8: resume
def _half_done(easy_idx, tmp_path):
    from cnnedge.recipe import apply_overrides, load_recipe
    from cnnedge.train import train

    recipe = apply_overrides(
        load_recipe("fashion_mnist_tiny"),
        [
            f"data.dataset={easy_idx}",
            "train.epochs=2",
            "train.steps_per_epoch=5",
            "train.batch_size=16",
            "qat.enabled=false",
            "train.eval_images=64",
        ],
    )
    run = Run(train(recipe, runs_dir=tmp_path, verbose=0).run_dir)
    state = run.state
    run.write_state({**state, "epoch": 1, "finished": False, "float_done": False})
    return run


def test_resume_never_discards_work(easy_idx, tmp_path, capsys):
    run = _half_done(easy_idx, tmp_path)
    last = run.model_path("last")
    last.write_bytes(last.read_bytes()[:1000])  # truncated
    one_error(capsys, main(["train", "--resume", str(run.path)]), str(last), "--from-best")
    last.unlink()
    one_error(
        capsys,
        main(["train", "--resume", str(run.path)]),
        "last.keras is missing after 1 epochs",
        "--from-best",
    )
    assert run.state["epoch"] == 1 and run.has("float")
    assert main(["train", "--resume", str(run.path), "--from-best"]) == 0
    assert run.state["finished"] and run.state["epoch"] == 2


# ------------------------------------------------------------ 7, 11, 12: outputs and faults
def test_corrupt_models_and_bad_options(finished, tmp_path, capsys):
    root, run = finished
    bad = tmp_path / "bad"
    shutil.copytree(run, bad)
    (bad / Run.MODELS["float"]).write_bytes(b"PK\x03\x04 not really a zip")
    for cmd in (["eval", str(bad)], ["quantize", str(bad)], ["export", str(bad)]):
        one_error(capsys, main(cmd), str(bad / Run.MODELS["float"]))
    one_error(
        capsys,
        main(["train", "--recipe", "fashion_mnist_tiny", "--logical-cpus", "-2"]),
        "--logical-cpus -2 is out of range",
    )


def test_read_only_outputs_fail_before_the_work(finished, tmp_path, capsys, monkeypatch):
    root, run = finished
    real = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda p, mode, **kw: False if Path(p) == run and mode & os.W_OK else real(p, mode, **kw),
    )
    one_error(capsys, main(["verify", str(run)]), "cannot write the parity report", str(run))
    one_error(capsys, main(["quantize", str(run)]), "cannot write the QAT model")


def test_export_cleans_up_after_an_interrupted_export(finished, tmp_path):
    from cnnedge.export import STAGE_PREFIX, export

    root, run = finished
    out = tmp_path / "out"
    (out / f"{STAGE_PREFIX}dead").mkdir(parents=True)  # what a killed export leaves
    (out / f"{STAGE_PREFIX}dead" / "model_fp32.tflite").write_bytes(b"half")
    res = export(run, formats="tflite", precisions="fp32", out_dir=out, verify=0)
    assert sorted(p.name for p in out.iterdir()) == ["model_fp32.tflite"] and len(res) == 1


def test_pack_cleans_up_a_killed_pack(easy_idx, tmp_path):
    from cnnedge import data

    out = tmp_path / "packed"
    dead = Path(f"{out}.partial-999999999")  # no such process
    dead.mkdir()
    (dead / "train-00000-of-00001.tfrecord").write_bytes(b"x" * 100)
    data.pack(data.open_dataset(str(easy_idx)), str(out), shards=1)
    assert not dead.exists() and (out / "dataset.json").is_file()


def test_bench_of_missing_files_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", str(tmp_path / "missing.tflite"), "--quick"]) == 1
    assert "no model file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_demo_over_a_folder_skips_a_bad_image_with_one_warning(tiny_run, tmp_path, capsys):
    pytest.importorskip("cv2")
    folder = tmp_path / "imgs"
    write_folder(folder, classes=("a",), per_class=3, size=(40, 40))
    (folder / "a" / "zz_last.png").write_bytes(b"\x89PNG truncated")
    out = tmp_path / "demo.mp4"
    rc = main(["demo", str(folder / "a"), "-m", str(tiny_run["run"]), "--headless", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    lines = err.strip().splitlines()  # one warning naming the file; the other images still run
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "zz_last.png" in lines[0], err
    assert json.loads(out.with_suffix(".jsonl").read_text().splitlines()[-1])["summary"]["frames"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.jsonl", "demo.mp4", "imgs"]


# -------------------------------------------------------------------- 9: files that do not decode
def test_corrupt_shard_and_truncated_image_are_named(easy_idx, tmp_path, capsys):
    from cnnedge import data

    packed = tmp_path / "packed"
    data.pack(data.open_dataset(str(easy_idx)), str(packed), shards=2)
    shard = sorted(packed.glob("train-*"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    one_error(
        capsys, main(train_args(packed, tmp_path / "runs", "--check")), str(shard), "corrupt TFRecord shard"
    )
    assert not (tmp_path / "runs").exists()

    root = tmp_path / "photos"
    write_folder(root, classes=("a", "b"), per_class=10, size=(64, 64), fmt="jpg")
    bad = sorted((root / "b").iterdir())[-1]
    bad.write_bytes(bad.read_bytes()[: int(bad.stat().st_size * 0.7)])  # header intact
    assert main(["data", "info", str(root)]) == 0  # the index alone does not see it
    capsys.readouterr()
    one_error(capsys, main(["data", "info", str(root), "--check"]), str(bad))


# ------------------------------------------------------- a run directory mutated at random
MUTABLE = [
    "recipe.yaml",
    "summary.json",
    "labels.json",
    "state.json",
    "best.keras",
    "qat.h5",
    "export/model_fp32.tflite",
    "export/model_int8.onnx",
]


@pytest.fixture(scope="module")
def pristine(tiny_run, tmp_path_factory):
    """A copy of the session's run with its parity report, to mutate; its QAT phase (`quantize`)
    takes 2 steps and scores 32 images."""
    from cnnedge.recipe import apply_overrides

    copy = tmp_path_factory.mktemp("pristine") / "run"
    shutil.copytree(tiny_run["run"], copy, ignore=shutil.ignore_patterns("tb"))
    Run(copy).save_recipe(
        apply_overrides(Run(copy).recipe, ["train.steps_per_epoch=2", "train.eval_images=32"])
    )
    return copy


def _mutate(path: Path, how: str, data: bytes, cut: float):
    if how == "delete":
        path.unlink()
    elif how == "directory":  # the wrong type of file
        path.unlink()
        path.mkdir()
    elif how == "truncate":
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * cut)])
    else:
        path.write_bytes(data)


def _run_files(run: Path) -> dict:
    return {k: v for k, v in tree(run).items() if Path(k).name != ".lock"}  # held while writing


def _mutation_commands(run: Path, inputs: Path, out: Path) -> list:
    """(argv, whether it may write the run, whether its exit 1 is a failed row)."""
    return [
        (["eval", run, "-n", "32"], True, False),
        (["export", run, "-f", "tflite", "-p", "fp32", "--verify", "0"], True, False),
        (["verify", run, "-n", "32"], True, False),
        (["quantize", run, "--epochs", "1"], True, False),
        (
            [
                "bench",
                run / "export" / "model_fp32.tflite",
                "--quick",
                "-r",
                "litert",
                "-t",
                "1",
                "-n",
                "16",
                "--batch-sizes",
                "1",
                "-o",
                out / "bench",
            ],
            False,
            True,
        ),
        (["predict", inputs / "fm0.png", "-m", run, "--json", out / "predict.json"], False, True),
        (["demo", inputs, "-m", run, "--headless", "--no-video", "--log", out / "demo.jsonl"], False, False),
    ]


def test_mutated_run_directory_gives_one_clean_line(pristine, tmp_path_factory, capsys):
    """Whatever happens to one file of a run, each command ends in success or one error line
    (bench and predict: a failed row is a row, with exit 1), and when it fails, nothing it found
    in the run directory changed; bench, predict and demo only read it."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from PIL import Image

    from cnnedge.bench.report import STATUS_MARK

    inputs = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(inputs / "fm0.png")
    row_line = ("error: ", "warning: ", "note: ", *STATUS_MARK.values())

    @settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(
        st.sampled_from(MUTABLE),
        st.sampled_from(["delete", "directory", "truncate", "bytes"]),
        st.binary(min_size=0, max_size=64),
        st.floats(0.0, 0.95),
    )
    def check(name, how, data, cut):
        run = tmp_path_factory.mktemp("mutated") / "run"
        shutil.copytree(pristine, run)
        _mutate(run / name, how, data, cut)
        out = tmp_path_factory.mktemp("outputs")
        for argv, writes, rows in _mutation_commands(run, inputs, out):
            cmd = argv[0]
            before = _run_files(run)
            rc = main([str(a) for a in argv])
            err = capsys.readouterr().err
            lines = err.strip().splitlines()
            assert "Traceback" not in err, (name, how, cmd, err[-2000:])
            if rc == 1 and rows:  # failed rows: each stderr line is a row, a note or an error
                assert all(line.startswith(row_line) for line in lines), (name, how, cmd, err)
            elif rc:
                assert rc in (1, 2) and len(lines) == 1, (name, how, cmd, err)
                assert lines[0].startswith("error: "), (name, how, cmd, err)
            if rc or not writes:
                assert _run_files(run) == before, (name, how, cmd, "files of the run changed")

    check()
