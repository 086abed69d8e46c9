"""`cnnedge tune`: a tiny search (gmp_xs and gmp_s at two widths, a 24 KiB RAM budget on
cortex-m4) on the generated IDX data: costs measured on firmware before training, the over-budget
candidates never trained, successive halving, the outputs, the winner's recipe retraining, resume
after a kill between trials, and bad input. Needs $CNNEDGE_TFLM as the firmware tests do."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from helpers import one_error, small_recipe

from cnnedge.cli import main
from cnnedge.errors import CnnedgeError

pytestmark = pytest.mark.skipif(
    not os.environ.get("CNNEDGE_TFLM"), reason="CNNEDGE_TFLM not set (make test passes ../shared/tflm)"
)
SPACE = {"models": "gmp_xs,gmp_s", "widths": "0.5,1", "max_ram": "24K", "max_flash": "256K", "steps": 10}


@pytest.fixture(scope="module")
def searched(easy_idx, tmp_path_factory):
    from cnnedge.tune import tune

    out = tmp_path_factory.mktemp("tune") / "search"
    res = tune(recipe=small_recipe(easy_idx), out=out, minutes=20, jobs=2, **SPACE)  # 2 processes
    return res


def _with_costs(searched, folder):
    """A new search folder holding the costs the module's search measured (no re-measuring)."""
    folder.mkdir(parents=True)
    shutil.copytree(searched.folder / "costs", folder / "costs")
    return folder


def test_costs_come_first_and_over_budget_is_never_trained(searched):
    rows = {r["id"]: r for r in searched.table}
    assert len(rows) == 4
    over = {i for i, r in rows.items() if r["status"] == "over budget"}
    assert over == {"gmp_s-w0.5-28px-max", "gmp_s-w1-28px-max"}
    assert all("RAM" in rows[i]["reason"] and rows[i]["rung"] is None for i in over)
    trials = json.loads((searched.folder / "tune.json").read_text())["trials"]
    assert not any(t["id"] in over for t in trials)
    assert all(r["ram"] <= 24 * 1024 for i, r in rows.items() if i not in over)
    # bigger models cost more: the measurement sees the model
    assert rows["gmp_xs-w0.5-28px-max"]["ram"] < rows["gmp_xs-w1-28px-max"]["ram"]
    assert rows["gmp_xs-w0.5-28px-max"]["flash"] < rows["gmp_s-w1-28px-max"]["flash"]


def test_finalists_train_the_whole_schedule_and_outputs(searched):
    """Two candidates fit: too few to halve, so both are finalists trained with the base
    recipe's whole schedule from their own start (at once: ``jobs=2``, a process each, both
    recorded); the better one wins."""
    trials = json.loads((searched.folder / "tune.json").read_text())["trials"]
    assert [(t["rung"], t["steps"], t["final"], t["start"]) for t in trials] == [(0, None, True, None)] * 2
    best = max(trials, key=lambda t: t["val_accuracy"])
    assert searched.winner == best["id"]
    csv = (searched.folder / "tune.csv").read_text().splitlines()
    assert len(csv) == 5 and csv[0].startswith("id,model,width,size")
    assert (searched.folder / "tune.png").stat().st_size > 10_000
    assert [r["status"] for r in searched.table].count("winner") == 1


def test_successive_halving_ranks_then_finalists_decide(tmp_path, monkeypatch):
    """Seven fitting candidates (trainings replaced by a score table): rung 0 trains all for
    the short steps, the best three go to the final rung's whole schedule, which decides —
    here against the rung-0 order."""
    from cnnedge import tune as tune_mod
    from cnnedge.tune import search, space

    cands = [space.Candidate("gmp_xs", 1.0, s) for s in (8, 12, 16, 20, 24, 28, 32)]
    short = dict(zip((c.id for c in cands), (0.1, 0.5, 0.4, 0.2, 0.6, 0.3, 0.05)))
    full = {cands[1].id: 0.9, cands[2].id: 0.95, cands[4].id: 0.7}
    calls = []

    def fake(base, c, rung, steps, prev, trials_dir, log=None):
        calls.append((c.id, rung, steps, prev))
        acc = full[c.id] if steps is None else short[c.id]
        return {
            "id": c.id,
            "rung": rung,
            "steps": steps,
            "run": f"r/{c.id}-{rung}",
            "val_accuracy": acc,
            "seconds": 0.0,
            "start": prev,
            "final": steps is None,
        }

    monkeypatch.setattr(search, "run_trial", fake)
    monkeypatch.setattr(tune_mod, "_save", lambda *a: None)
    state = {"candidates": [], "trials": [], "winner": None, "seconds": 0.0}
    tune_mod._rank(
        state, cands, lambda c: None, 10, tmp_path, time.monotonic() + 60, time.monotonic(), 0.0, {}, None
    )
    assert [(i, r, s) for i, r, s, _ in calls[:7]] == [(c.id, 0, 10) for c in cands]
    assert sorted((i, r, s, p) for i, r, s, p in calls[7:]) == sorted(
        (cands[k].id, 1, None, None) for k in (1, 2, 4)
    )
    assert state["winner"] == cands[2].id  # third after rung 0, best on the whole schedule


def test_reported_costs_are_what_the_firmware_measures(searched, easy_idx, tmp_path):
    """The winner, built again from scratch as firmware, takes the RAM and flash the search
    reported (they do not depend on the weights): RAM exactly, flash but for the metadata the
    model carries (it names the source file, whose path differs here)."""
    from cnnedge import models
    from cnnedge.export import export
    from cnnedge.firmware import build_firmware
    from cnnedge.tune.costs import calibration_images

    row = next(r for r in searched.table if r["status"] == "winner")
    m = models.create_model(row["model"], num_classes=10, channels=1, width=row["width"])
    m.save(tmp_path / "m.keras")
    export(
        tmp_path / "m.keras",
        formats="tflm",
        out_dir=tmp_path / "x",
        verify=0,
        calibration=calibration_images(str(easy_idx), 28),
        image_size="28x28",
    )
    fw = build_firmware(tmp_path / "x", "cortex-m4", parity_images=0)
    assert fw.ram["total"] == row["ram"] and abs(fw.flash["total"] - row["flash"]) <= 64
    assert fw.instructions == pytest.approx(row["instructions"], rel=0.01)


def test_the_winners_recipe_retrains(searched, tmp_path):
    from cnnedge.recipe import apply_overrides, load_recipe
    from cnnedge.train import train

    r = load_recipe(str(searched.recipe_path))
    row = next(x for x in searched.table if x["status"] == "winner")
    assert r.model.name == row["model"] and r.model.kwargs["width"] == row["width"]
    assert tuple(r.data.image_size) == (28, 28) and r.train.epochs == 2
    res = train(
        apply_overrides(r, ["train.epochs=1", "train.steps_per_epoch=5"]),
        runs_dir=tmp_path,
        name="again",
        verbose=0,
    )
    assert res.summary["params"] == row["params"]


def test_resume_after_a_kill_between_trials(searched, easy_idx, tmp_path):
    from cnnedge.recipe import save_yaml
    from cnnedge.tune import tune

    folder = _with_costs(searched, tmp_path / "search")
    save_yaml(small_recipe(easy_idx), tmp_path / "base.yaml")
    args = [
        "tune",
        "--recipe",
        str(tmp_path / "base.yaml"),
        "-o",
        str(folder),
        "--minutes",
        "20",
        "--models",
        SPACE["models"],
        "--widths",
        SPACE["widths"],
        "--max-ram",
        "24K",
        "--max-flash",
        "256K",
        "--steps",
        "10",
    ]
    p = subprocess.Popen(
        [sys.executable, "-m", "cnnedge", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ,
    )
    state = folder / "tune.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and p.poll() is None:
        if state.is_file() and json.loads(state.read_text())["trials"]:
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = json.loads(state.read_text())["trials"]
    assert len(first) >= 1
    before = (first[0]["run"], os.stat(first[0]["run"]).st_mtime)
    from cnnedge.recipe import load_recipe

    res = tune(recipe=load_recipe(str(tmp_path / "base.yaml")), out=folder, minutes=20, resume=True, **SPACE)
    trials = json.loads(state.read_text())["trials"]
    assert trials[0] == first[0] and os.stat(first[0]["run"]).st_mtime == before[1]
    assert len(trials) == 2 and len({(t["id"], t["rung"]) for t in trials}) == 2
    assert res.winner is not None


def test_bad_input(searched, easy_idx, tmp_path, capsys):
    from cnnedge.recipe import save_yaml

    save_yaml(small_recipe(easy_idx), tmp_path / "base.yaml")
    base = ["tune", "--recipe", str(tmp_path / "base.yaml"), "--models", "gmp_xs,gmp_s", "--widths", "0.5,1"]
    one_error(capsys, main(base), "give a budget")
    one_error(
        capsys,
        main([*base, "--max-ram", "64 kilobytes"]),
        "--max-ram 64 kilobytes: expected a size in bytes such as 262144, 256K or 2M",
    )
    one_error(
        capsys, main([*base, "--board", "nano34"]), "unknown board 'nano34'", "did you mean 'nano33ble'"
    )
    one_error(capsys, main([*base, "--board", "esp32-s3"]), "Xtensa", "not measurable")
    one_error(
        capsys,
        main([*base, "--max-ram", "24K", "-o", str(searched.folder)]),
        "holds a tune already: --resume continues it",
    )
    one_error(
        capsys,
        main([*base, "--max-ram", "20K", "-o", str(searched.folder), "--resume"]),
        "was searched with other settings",
    )
    folder = _with_costs(searched, tmp_path / "tiny")
    one_error(
        capsys,
        main([*base, "--max-ram", "1K", "-o", str(folder)]),
        "no candidate fits the budget; the smallest, gmp_xs-w0.5-28px-max, needs",
    )
    assert not list((folder).glob("trials"))


def test_budget_units_and_boards_file(tmp_path):
    from cnnedge.errors import CnnedgeError
    from cnnedge.tune import boards

    assert [boards.parse_bytes(v, "--max-ram") for v in ("64KB", "64k", "65536", "0.5M", "64KiB")] == [
        65536
    ] * 3 + [524288, 65536]
    for bad in ("64 kilobytes", "0", "-1K", "0.1"):
        with pytest.raises(CnnedgeError, match="expected a size in bytes"):
            boards.parse_bytes(bad, "--max-ram")
    f = tmp_path / "boards.yaml"
    f.write_text("myboard: {core: cortex-m33, clock_mhz: 96, ram: 128K, flash: 1M}\n")
    b = boards.get("myboard", f)
    assert (b.core, b.clock_mhz, b.ram, b.flash) == ("cortex-m33", 96, 131072, 1 << 20)
    f.write_text("myboard: {core: cortex-m99, ram: 1K, flash: 1K}\n")
    with pytest.raises(CnnedgeError, match="unknown target 'cortex-m99'"):
        boards.get("myboard", f)
    f.write_text("- just a list\n")
    with pytest.raises(CnnedgeError, match="expected"):
        boards.load_boards(f)


def test_grey_is_a_dimension_of_colour_data(tmp_path):
    """--colors rgb,grey: each colour candidate also as a one-channel model whose trials and
    winner convert the data to grey (data.channels=1) and still start from the shipped
    checkpoint; its costs are measured on a grey model fed grey calibration images."""
    from helpers import write_folder

    from cnnedge import models
    from cnnedge.tune import costs, search, space

    cands = space.candidates(3, None, models="gmp_xs", widths="1", sizes="32", colors="rgb,grey")
    assert [c.id for c in cands] == ["gmp_xs-w1-32px-max", "gmp_xs-w1-32px-max-grey"]
    assert [c.channels(3) for c in cands] == [3, 1]
    assert [c.grey for c in space.candidates(3, None, models="gmp_xs", sizes="32")] == [False, False]
    with pytest.raises(CnnedgeError, match="the data is grey"):
        space.candidates(1, (28, 28), colors="rgb")
    with pytest.raises(CnnedgeError, match="unknown colour 'sepia'"):
        space.candidates(3, None, colors="sepia")

    write_folder(tmp_path / "photos", per_class=6, size=(32, 32))
    base = small_recipe(tmp_path / "photos")
    base.model.weights = "cifar10"
    grey = space.Candidate("gmp_dw_a", 1.0, 32, grey=True)
    trial = search.trial_recipe(base, grey, 10, search.start_weights(base, grey))
    assert trial.data.channels == 1 and trial.model.weights == "cifar10"
    assert search.trial_recipe(base, cands[0], 10, None).data.channels is None
    figures = costs.measure(
        cands[1],
        dataset=str(tmp_path / "photos"),
        num_classes=3,
        channels=3,
        target="host",
        folder=tmp_path / "c",
    )
    one = models.create_model("gmp_xs", num_classes=3, channels=1)
    assert figures["macs"] == models.count_macs(one, (32, 32, 1)) and figures["source"] == "host TFLM"
    assert figures["params"] == one.count_params() and figures["ram"] > 0
    # a recipe distilling from colour teachers cannot train grey students: refused before costs
    from cnnedge.recipe import save_yaml
    from cnnedge.tune import tune

    teacher = tmp_path / "teacher.keras"
    models.create_model("gmp_xs", num_classes=3, channels=3).save(teacher)
    save_yaml(small_recipe(tmp_path / "photos", **{"distill.teachers": f"[{teacher}]"}), tmp_path / "kd.yaml")
    with pytest.raises(CnnedgeError, match="--colors grey: recipe .* distils from teachers"):
        tune(
            recipe=str(tmp_path / "kd.yaml"),
            target="host",
            max_ram="1M",
            colors="rgb,grey",
            out=tmp_path / "t",
        )
    assert not (tmp_path / "t").exists()


def test_heads_and_kernels_are_dimensions_where_the_member_builds_them():
    """--pools max,concat: the concat head (global max and average side by side) for the
    members that build it (gmp_dw_*), max for all; --kernels 3,5: the depthwise kernel of the
    gmp_dw members (a 5×5 candidate builds a bigger model and never starts from the 3×3
    checkpoint); bad values are one line."""
    from cnnedge import models
    from cnnedge.tune import search, space

    cands = space.candidates(3, None, models="gmp_xs,gmp_dw_a", widths="1", sizes="32", kernels="3,5")
    assert [c.id for c in cands] == ["gmp_xs-w1-32px-max", "gmp_dw_a-w1-32px-max", "gmp_dw_a-w1-32px-max-k5"]
    k3, k5 = (models.create_model("gmp_dw_a", num_classes=3, channels=3, **c.kwargs()) for c in cands[1:])
    assert k5.count_params() > k3.count_params()
    base = small_recipe("photos")
    base.model.weights = "cifar10"
    assert search.start_weights(base, cands[1]) == "cifar10" and search.start_weights(base, cands[2]) is None
    assert search.trial_recipe(base, cands[2], 10, None).model.kwargs == {
        "width": 1.0,
        "pool": "max",
        "kernel": 5,
    }
    with pytest.raises(CnnedgeError, match="--kernels"):
        space.candidates(3, None, kernels="0")
    with pytest.raises(CnnedgeError, match="none of gmp_xs takes a kernel"):
        space.candidates(3, None, models="gmp_xs", kernels="5")
    assert (
        len(space.candidates(3, None, models="gmp_dw_c,gmp_dw_c", widths="1,1", sizes="32", kernels="3,3"))
        == 1
    )

    cands = space.candidates(3, None, models="gmp_xs,gmp_dw_c", widths="1", sizes="32", pools="max,concat")
    assert [c.id for c in cands] == ["gmp_xs-w1-32px-max", "gmp_dw_c-w1-32px-max", "gmp_dw_c-w1-32px-concat"]
    with pytest.raises(CnnedgeError, match="--pools sum: pooling is max, avg, concat"):
        space.candidates(3, None, pools="max,sum")


def test_parallel_trials_that_fail_raise_and_record_nothing(tmp_path):
    """jobs=2: a trial failing in its process raises here (the same error), after the other
    finished; nothing half-done is recorded."""
    from cnnedge.tune import search, space

    base = small_recipe(tmp_path / "no-such-data")
    specs = [(base, space.Candidate("gmp_xs", w, 28), 0, 5, None, tmp_path / "trials") for w in (0.5, 1.0)]
    done = []
    with pytest.raises(CnnedgeError, match="no-such-data"):
        search.run_trials(specs, 2, done.append, lambda running: False)
    assert done == []
