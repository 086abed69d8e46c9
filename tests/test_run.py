"""`Run`: the one place that knows a run directory's files, its test images (all of them in
file order, or a seeded class-stratified sample), and how other stages find a model's run."""

import shutil

import numpy as np
import pytest

from cnnedge.errors import CnnedgeError
from cnnedge.run import Run, stratified_positions


def test_stratified_positions():
    labels = np.repeat(np.arange(10), 1000)  # a class-sorted folder
    pos = stratified_positions(labels, 1000, seed=0)
    assert np.bincount(labels[pos]).tolist() == [100] * 10
    assert np.all(np.diff(pos) > 0)  # file order
    assert np.array_equal(pos, stratified_positions(labels, 1000, seed=0))
    assert not np.array_equal(pos, stratified_positions(labels, 1000, seed=1))
    skewed = np.array([0] * 900 + [1] * 100)
    assert np.bincount(skewed[stratified_positions(skewed, 50, seed=3)]).tolist() == [45, 5]
    assert np.array_equal(stratified_positions(skewed, 5000), np.arange(1000))


def test_run_files_and_test_images(tiny_run):
    run = Run(tiny_run["run"])
    assert run.has("float") and run.has("qat") and run.has("last")
    assert run.recipe.name == "fashion_mnist_tiny" and len(run.class_names) == 10
    assert run.summary["params"] > 0
    assert [p.name for p in run.keras_models()] == [Run.MODELS["float"], Run.MODELS["qat"]]
    assert {p.suffix for p in run.artifacts()} == {".tflite", ".onnx"}
    src = run.open_data()
    x, y, split = run.test_images(200, src=src)
    assert split == "test" and x.shape == (200, 28, 28, 1) and x.dtype == np.uint8
    assert np.bincount(y, minlength=10).tolist() == [20] * 10  # 1,000 per class in the split
    x_all, y_all, _ = run.test_images(src=src)
    # pipeline(take=512) is the same seeded stratified sample, not the first 512
    assert len(y_all) == 10_000
    assert np.array_equal(y_all[stratified_positions(y_all, 512, 0)], tiny_run["y"])
    with pytest.raises(CnnedgeError, match="unknown report"):
        run.report("notes.txt")


def test_run_of_a_model_file(tiny_run, tmp_path):
    from cnnedge import artifacts

    run = Run(tiny_run["run"])
    exported = run.export_dir / "model_int8.tflite"
    assert Run.of_model(exported).path == run.path  # the folder above export/
    assert Run.of_model(run.model_path("qat")).path == run.path
    moved = tmp_path / "model_int8.tflite"
    shutil.copy(exported, moved)
    assert Run.of_model(moved) is None
    assert Run.of_model(moved, artifacts.read_metadata(moved)).path == run.path  # source_run
    with pytest.raises(CnnedgeError, match="has no best.keras: train it first"):
        Run(tmp_path).require("float")
    with pytest.raises(CnnedgeError, match="not a cnnedge run"):
        Run(tmp_path).recipe


def test_export_of_a_folder_without_recipe_skips_the_check(tiny_run, tmp_path):
    from cnnedge.export import export

    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(Run(tiny_run["run"]).model_path("float"), folder / Run.MODELS["float"])
    res = export(folder, formats="tflite", precisions="fp32")  # verify=512 by default
    assert res.verify is None and res.verify_error is None and res.passed
    assert [r["path"] for r in res] == [str(folder / "export" / "model_fp32.tflite")]


def test_bench_survives_a_corrupt_summary(tiny_run, tmp_path):
    from cnnedge import bench as bn

    copy = tmp_path / "run"
    shutil.copytree(tiny_run["run"], copy)
    (copy / Run.SUMMARY).write_text("{not json")
    rep = bn.bench(
        [copy / "export" / "model_int8.tflite"],
        runtimes="litert",
        threads="1",
        quick=True,
        n=32,
        out=tmp_path,
        isolate=False,
    )
    (row,) = rep.rows
    assert row["status"] == bn.OK and row["images"] == 32 and row["params"] > 0
