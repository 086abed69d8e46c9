"""Numbers a user gives: every numeric option and recipe field goes through one parser
(cnnedge.numbers.number) that refuses NaN, ±inf, overflow and values out of range in one
`error:` line naming the field (or flag) and its range, exit 2, before anything is written.
A fine-tune that diverges all the same never replaces a good qat.h5."""

import dataclasses
import shutil
import typing

import numpy as np
import pytest
from helpers import one_error, tree

from cnnedge import recipe as rc
from cnnedge.cli import main
from cnnedge.errors import CnnedgeError
from cnnedge.numbers import Range, number
from cnnedge.run import Run


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run["run"], copy, ignore=shutil.ignore_patterns("tb"))
    return copy


# ------------------------------------------------------------------------ the one parser
INTS = Range(1, 10, integer=True)


@pytest.mark.parametrize(
    "value, needle",
    [
        (float("nan"), "x=nan is not a number"),
        ("nan", "x=nan is not a number"),
        (float("inf"), "x=inf is not finite"),
        ("-inf", "x=-inf is not finite"),
        (2**64, f"x={2**64} is out of range"),
        ("99999999999999999999", "x=99999999999999999999 is out of range"),
        (1e30, "x=1e+30 is out of range"),
        (0, "x=0 is out of range"),
        (11, "x=11 is out of range"),
        (2.5, "x must be an integer in [1, 10]; got 2.5"),
        (True, "got True"),
        ("three", "got 'three'"),
        (None, "got none"),
    ],
)
def test_number_refuses_with_the_name_and_the_range(value, needle):
    with pytest.raises(CnnedgeError) as e:
        number(value, "x", INTS)
    assert needle in str(e.value) and "an integer in [1, 10]" in str(e.value)


def test_number_parses_text_and_numpy_values():
    assert number("1e-3", "lr", Range(0, 10)) == 0.001  # YAML 1.1 reads 1e-3 as text
    assert number(np.float32(0.5), "p", Range(0, 1)) == 0.5
    v = number(np.int64(3), "n", INTS)
    assert v == 3 and type(v) is int
    assert number(4.0, "n", INTS) == 4 and number(None, "n", Range(optional=True)) is None
    with pytest.raises(CnnedgeError, match=r"--lr 0.0 is out of range; it must be in \(0, 10\]"):
        number(0, "--lr", Range(0, 10, lo_open=True))  # a flag is named as it is typed


def _numeric_fields(cls=rc.Recipe, prefix=""):
    """(key, int|float) of every recipe field that holds numbers (in Optional/Tuple too)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _numeric_fields(tp, f"{prefix}{f.name}.")
            continue
        leaves, todo = set(), [tp]
        while todo:
            t = todo.pop()
            todo += [a for a in typing.get_args(t) if a is not Ellipsis]
            leaves.add(t)
        kinds = leaves & {int, float}
        if kinds:
            yield prefix + f.name, kinds


def test_every_numeric_recipe_field_has_a_range():
    found = dict(_numeric_fields())
    # data.image_size: HxW, parsed by parse_image_size and bounded by the memory it needs
    assert set(found) - {"data.image_size"} == set(rc.FIELDS)
    for key, kinds in found.items():
        if key in rc.FIELDS:
            assert rc.FIELDS[key].integer == (kinds == {int}), key


def test_a_recipe_built_in_python_is_checked_too():
    bad = rc.Recipe(name="mine", optim=rc.OptimConfig(lr=float("nan")))
    with pytest.raises(CnnedgeError, match=r"recipe mine: optim.lr=nan is not a number"):
        rc.check(bad)


# ------------------------------------------------------------------ 14: --set values
@pytest.mark.parametrize(
    "setting, needle",
    [
        (
            "train.epochs=99999999999999999999",
            "train.epochs=99999999999999999999 is out of range; it must be an integer in [1, 100000]",
        ),
        ("optim.lr=1e308", "optim.lr=1e+308 is out of range; it must be in [0, 10]"),
        ("train.seed=-1", "train.seed=-1 is out of range; it must be an integer in [0, 4294967295]"),
        ("train.seed=4294967296", "train.seed=4294967296 is out of range"),
        ("optim.lr=nan", "optim.lr=nan is not a number; it must be in [0, 10]"),
        ("optim.lr=.inf", "optim.lr=inf is not finite"),
        ("qat.lr=-.inf", "qat.lr=-inf is not finite; it must be in (0, 10]"),
        ("train.batch_size=1e30", "train.batch_size=1e+30 is out of range"),
        ("train.max_minutes=1e400", "train.max_minutes=inf is not finite"),
        ("distill.temperature=nan", "distill.temperature=nan is not a number"),
        ("augment.mix_ramp=[0, .nan]", "augment.mix_ramp=nan is not a number"),
        ("qat.calibration_images=1e12", "qat.calibration_images=1000000000000.0 is out of range"),
        ("train.eval_images=0", "train.eval_images=0 is out of range"),
        ("model.kwargs.dropout=.nan", "model.kwargs.dropout=nan is not a number"),
    ],
)
def test_set_values_are_refused_in_one_line(setting, needle, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["train", "--recipe", "fashion_mnist_tiny", "--runs-dir", str(runs), "--set", setting])
    one_error(capsys, code, needle)
    assert not runs.exists()


# --------------------------------------------------- the CLI's options: the same parser
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "-r", "fashion_mnist_tiny", "--minutes", "inf"], "--minutes inf is not finite"),
        (
            ["train", "-r", "fashion_mnist_tiny", "--logical-cpus", "99999999999999999999"],
            "--logical-cpus 99999999999999999999 is out of range",
        ),
        (["eval", "RUN", "--batch-size", "0"], "--batch-size 0 is out of range"),
        (["export", "RUN", "--opset", "99"], "--opset 99 is out of range; it must be an integer in [7, 21]"),
        (["export", "RUN", "--verify", "-1"], "--verify -1 is out of range"),
        (["predict", "x.png", "-m", "RUN", "--top", "0"], "--top/-k 0 is out of range"),
        (["predict", "x.png", "-m", "RUN", "--batch", "99999999999999999999"], "--batch 9999"),
        (["predict", "x.png", "-m", "RUN", "--every", "0"], "--every 0 is out of range"),
        (["demo", "x.png", "--smooth", "nan"], "--smooth nan is not a number; it must be in [0, 1)"),
        (["demo", "x.png", "--roi", "0"], "--roi 0.0 is out of range; it must be in (0, 1]"),
        (["demo", "x.png", "--snapshot-at", "-1"], "--snapshot-at -1 is out of range"),
        (["bench", "x.tflite", "--threads", "nan"], "--threads nan is not a number"),
        (["bench", "x.tflite", "--batch-sizes", "1,99999999999"], "--batch-sizes 99999999999 is out"),
        (["bench", "x.tflite", "--fail-under", "accuracy=inf"], "--fail-under accuracy inf is not finite"),
        (["data", "preview", "fashion-mnist", "--seed", "-1"], "--seed -1 is out of range"),
        (["data", "info", "fashion-mnist", "--val-fraction", "nan"], "--val-fraction nan is not a"),
        (["data", "pack", "fashion-mnist", "-o", "packed", "--shards", "0"], "--shards 0 is out"),
    ],
)
def test_options_are_refused_before_any_work(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_error(capsys, main(argv), needle)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------- 5: quantize --lr nan, and the model guard
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "nan"], "--lr nan is not a number; it must be in (0, 10]"),
        (["--lr", "inf"], "--lr inf is not finite"),
        (["--lr", "-inf"], "--lr -inf is not finite"),
        (["--lr", "1e308"], "--lr 1e+308 is out of range"),
        (["--lr", "0"], "--lr 0.0 is out of range"),
        (
            ["--epochs", "99999999999999999999"],
            "--epochs 99999999999999999999 is out of range; it must be an integer in [1, 100000]",
        ),
    ],
)
def test_quantize_refuses_bad_numbers_and_keeps_the_run(run_copy, capsys, args, needle):
    before = tree(run_copy)
    one_error(capsys, main(["quantize", str(run_copy), *args]), needle)
    assert tree(run_copy) == before  # qat.h5's bytes, summary.json (no "qat_lr": NaN)


def test_a_diverged_fine_tune_never_replaces_qat_h5(run_copy, monkeypatch):
    import cnnedge.train as tr

    short = rc.apply_overrides(Run(run_copy).recipe, ["train.steps_per_epoch=2", "train.eval_images=32"])
    rc.save_yaml(short, run_copy / Run.RECIPE)
    before = tree(run_copy)
    monkeypatch.setattr(tr.qat, "check_field", lambda key, value, name=None: value)  # NaN gets in
    with pytest.raises(CnnedgeError, match=r"QAT fine-tune diverged \(loss nan .*qat.h5 was kept"):
        tr.fine_tune_qat(run_copy, epochs=1, lr=float("nan"), verbose=0)
    assert tree(run_copy) == before


def test_a_model_with_non_finite_weights_is_refused(tmp_path):
    from cnnedge.backend import keras
    from cnnedge.quantize import load_finite

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(inp))
    weights = model.get_weights()
    weights[0][0, 0] = np.inf
    model.set_weights(weights)
    staged, target = tmp_path / ".qat.tmp.h5", tmp_path / "qat.h5"
    model.save(staged)
    target.write_bytes(b"the good model")
    with pytest.raises(CnnedgeError, match=r"non-finite weights .*qat.h5 was kept as it was"):
        load_finite(staged, target, [{"loss": 0.3}], 1e-4)
    assert target.read_bytes() == b"the good model"


# ------------------------------------------------- 20: a damaged recipe.yaml, -n 0 by its flag
@pytest.mark.parametrize(
    "text, needle",
    [
        ("name: x\ntrain:\n  epochs: [1\n  seed: 3\n", "line 4, column 7: expected ',' or ']'"),
        ("name: x\n train: a: b\n", "line 2, column 7: mapping values are not allowed here"),
        (b"name: \xff\xfe\n", "not UTF-8 text"),
        ("name: x\ntrain:\n  seed: -1\n", "train.seed=-1 is out of range"),
    ],
)
@pytest.mark.parametrize("cmd", ["eval", "export", "train"])
def test_a_damaged_recipe_yaml_is_one_line_naming_it(run_copy, capsys, text, needle, cmd):
    path = run_copy / Run.RECIPE
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = tree(run_copy)
    argv = {
        "eval": ["eval", str(run_copy), "-n", "8"],
        "export": ["export", str(run_copy), "-f", "tflite", "-p", "fp32", "--verify", "0"],
        "train": ["train", "--resume", str(run_copy)],
    }[cmd]
    one_error(capsys, main(argv), str(path), needle)
    assert tree(run_copy) == before


@pytest.mark.parametrize("cmd", ["eval", "verify", "bench"])
def test_no_images_is_said_in_terms_of_the_flag(run_copy, capsys, cmd):
    before = tree(run_copy)
    one_error(
        capsys,
        main([cmd, str(run_copy), "-n", "0"]),
        "-n 0 is out of range; it must be an integer in [1, 1000000000]",
    )
    assert tree(run_copy) == before


# ------------------------------------------------------- 22: verify's percentages are input
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--min-int8", "200"], "--min-int8 200.0 is out of range; it must be in [0, 100]"),
        (["--min-int8", "nan"], "--min-int8 nan is not a number; it must be in [0, 100]"),
        (["--min-fp32", "-1"], "--min-fp32 -1.0 is out of range"),
        (["--min-fp16", "inf"], "--min-fp16 inf is not finite"),
        (["--min-int8-ptq", "101"], "--min-int8-ptq 101.0 is out of range"),
    ],
)
def test_verify_refuses_a_percentage_outside_0_100(run_copy, capsys, args, needle):
    before = tree(run_copy)
    one_error(capsys, main(["verify", str(run_copy), "-n", "32", *args]), needle)
    assert tree(run_copy) == before  # verify.json and verify.md as they were


def test_verify_thresholds_from_python_are_fractions(run_copy):
    from cnnedge.verify import verify

    with pytest.raises(CnnedgeError, match=r"threshold int8=2.0 is out of range; it must be in \[0, 1\]"):
        verify(run_copy, n=32, thresholds={"int8": 2.0})
