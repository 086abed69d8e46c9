"""``cnnedge tune``: the most accurate model that fits a board, searched offline.

    res = tune(data="photos", board="nano33ble", max_ram="32K", max_flash="192K", minutes=30)
    res.winner, res.recipe_path          # then: cnnedge train --recipe res.recipe_path

Costs first, accuracy second: every candidate (:mod:`.space`) is built untrained as int8
firmware for the target and measured (:mod:`.costs`: RAM, flash, arena, instructions); those
over budget are dropped before any training. The rest are ranked by successive halving over
short trainings (:mod:`.search`) within the time budget. The search lives in one folder
(``tune.json`` after every step, ``tune.csv``, ``tune.png``, the trials' run directories,
``winner.yaml``) and resumes from it (``resume=True``) without repeating a finished trial.
``train_best`` trains the winner's recipe in full, exports it, verifies it and builds its
firmware with on-device parity.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from cnnedge.errors import CnnedgeError
from cnnedge.tune import boards, costs, report, search, space

STATE = "tune.json"
MIN_VAL_IMAGES = 40  # fewer validation images cannot tell candidates apart


@dataclass
class TuneResult:
    folder: Path
    table: list
    winner: str | None
    recipe_path: Path | None
    minutes: float
    budget: dict
    trained: dict = field(default_factory=dict)  # --train-best: run, firmware report


def _budget(target, board, boards_file, max_ram, max_flash, max_ms, clock_mhz) -> dict:
    """{"target", "board", "ram", "flash", "ms", "clock_mhz"}: a board's, then the flags."""
    from cnnedge.firmware import targets

    b = boards.get(board, boards_file) if board else None
    budget = {
        "board": board,
        "target": target or (b.core if b else "cortex-m4"),
        "ram": boards.parse_bytes(max_ram, "--max-ram") or (b.ram if b else None),
        "flash": boards.parse_bytes(max_flash, "--max-flash") or (b.flash if b else None),
        "ms": None,
        "clock_mhz": clock_mhz or (b.clock_mhz if b else None),
    }
    if max_ms is not None:
        from cnnedge.numbers import Range, number

        budget["ms"] = number(max_ms, "--max-ms", Range(0.001, 1e7))
    targets.get(budget["target"])
    if budget["ms"] is not None:
        from cnnedge.firmware.report import calibration

        if budget["target"] not in calibration():
            raise CnnedgeError(
                f"--max-ms needs a latency estimate, which {budget['target']} "
                f"has no calibration for (calibrated: "
                f"{', '.join(calibration()) or 'none'})"
            )
    if not (budget["ram"] or budget["flash"] or budget["ms"]):
        raise CnnedgeError("give a budget: --max-ram, --max-flash, --max-ms or --board")
    return budget


def _open(base):
    """(channels, classes, validation images) of the base recipe's data."""
    from cnnedge.run import open_data

    src = open_data(base)
    n_val = src.num_examples("val") if "val" in src.splits else 0
    if n_val < MIN_VAL_IMAGES:
        raise CnnedgeError(
            f"{base.data.dataset}: {n_val} validation images; ranking candidates "
            f"needs at least {MIN_VAL_IMAGES} (more images, or a larger "
            f"data.val_fraction)"
        )
    return src.info.channels, len(src.info.class_names), n_val


def _settings(budget: dict, cands: list, steps: int, base) -> dict:
    """What a resumed search must share with the one it continues."""
    from cnnedge.recipe import to_dict

    return {
        "budget": budget,
        "candidates": [c.id for c in cands],
        "steps": int(steps),
        "recipe": json.loads(json.dumps(to_dict(base), default=str)),
    }


def _state(folder: Path, settings: dict, resume: bool) -> dict:
    path = folder / STATE
    if path.is_file():
        if not resume:
            raise CnnedgeError(f"{folder} holds a tune already: --resume continues it, or pick another --out")
        try:
            state = json.loads(path.read_text())
        except ValueError as e:
            raise CnnedgeError(f"cannot read {path}: {e}") from e
        if state.get("settings") != settings:
            raise CnnedgeError(
                f"{path} was searched with other settings (budget, space, data "
                f"or steps); --resume needs the same ones, or pick another --out"
            )
        return state
    if resume:
        raise CnnedgeError(f"nothing to resume: no {STATE} in {folder}")
    return {"settings": settings, "candidates": [], "trials": [], "winner": None, "seconds": 0.0}


def _save(folder: Path, state: dict, budget: dict) -> None:
    from cnnedge.files import atomic_write_json, atomic_write_text

    atomic_write_json(folder / STATE, state)
    table = report.rows(state)
    atomic_write_text(folder / "tune.csv", report.to_csv(table))
    where = budget["board"] or budget["target"]
    report.plot(table, budget, folder / "tune.png", f"cnnedge tune — {where}")


def tune(
    data=None,
    recipe=None,
    *,
    target=None,
    board=None,
    boards_file=None,
    max_ram=None,
    max_flash=None,
    max_ms=None,
    clock_mhz=None,
    minutes: float = 30.0,
    steps: int = 200,
    models=None,
    widths=None,
    sizes=None,
    pools=None,
    colors=None,
    kernels=None,
    jobs: int = 1,
    out=None,
    resume: bool = False,
    train_best: bool = False,
    tflm_dir=None,
    log=None,
) -> TuneResult:
    """Search the model that fits the budget and is the most accurate (module docstring).

    Args:
        data: A folder of class folders (an automatic recipe, as ``train --data``) or, with
            ``recipe``, the dataset to use instead of the recipe's.
        recipe: A shipped recipe's name or a recipe file: the base every trial starts from.
        target: The core (``cnnedge firmware`` targets); default the board's, else cortex-m4.
        board: A board name (:mod:`.boards`) that sets the core, clock, RAM and flash.
        boards_file: More boards (JSON/YAML).
        max_ram, max_flash: Budgets (``64K``, ``0.5M``, bytes); they override the board's.
        max_ms: Latency budget, estimated at ``clock_mhz`` (calibrated cores only).
        clock_mhz: The clock the latency budget is stated at (default: the board's).
        minutes: Time budget of the search (costs and trainings).
        steps: Training steps of rung 0 (each later rung trains 3× the steps).
        jobs: Trials trained at once, each in its own process with its share of the cores.
        models, widths, sizes, pools, colors, kernels: The search space (comma lists; default
            by the data; colors: rgb and/or grey for colour data; kernels: the depthwise kernel
            of the gmp_dw members, default 3).
        out: The search folder (default ``runs/tune/<recipe>``).
        resume: Continue the search in ``out``.
        train_best: Then train the winner in full, export, verify and build its firmware.
        tflm_dir: The TFLite Micro tree (default ``$CNNEDGE_TFLM``).
        log: Called with progress lines.

    Returns:
        A :class:`TuneResult`.
    """
    from cnnedge.firmware import targets, tflm_tree, toolchain
    from cnnedge.numbers import Range, number

    jobs = number(jobs, "--jobs", Range(1, 256, integer=True))
    budget = _budget(target, board, boards_file, max_ram, max_flash, max_ms, clock_mhz)
    toolchain.require(targets.get(budget["target"]))
    tflm_tree.source_dir(tflm_dir)
    base = _base(recipe, data, colors)
    bases = search.Bases(recipe, data)
    channels, classes, _ = _open(base)
    size = base.data.image_size
    cands = space.candidates(
        channels,
        size,
        models=models,
        widths=widths,
        sizes=sizes,
        pools=pools,
        colors=colors,
        kernels=kernels,
    )
    folder = Path(out or Path("runs") / "tune" / base.name)
    state = _state(folder, _settings(budget, cands, steps, base), resume)
    folder.mkdir(parents=True, exist_ok=True)
    from cnnedge.locks import folder_lock

    with folder_lock(folder, "cnnedge tune"):
        t0, spent = time.monotonic(), float(state["seconds"])
        deadline = t0 + max(0.0, minutes * 60 - spent)
        _measure_all(state, cands, base, channels, classes, budget, folder, tflm_dir, log)
        state["seconds"] = spent + time.monotonic() - t0
        _save(folder, state, budget)
        fits = _distinct([c for c in cands if not _record(state, c)["over"]], state)
        if not fits:
            raise CnnedgeError(_nothing_fits(state, budget))
        _rank(state, fits, bases, int(steps), folder, deadline, t0, spent, budget, log, int(jobs))
        recipe_path = _winner_recipe(state, bases, cands, folder)
        _save(folder, state, budget)
    res = TuneResult(
        folder=folder,
        table=report.rows(state),
        winner=state["winner"],
        recipe_path=recipe_path,
        minutes=round(state["seconds"] / 60, 2),
        budget=budget,
    )
    if train_best:
        res.trained = _train_best(recipe_path, budget, folder, tflm_dir, log)
    return res


def _base(recipe, data, colors):
    """The recipe every trial starts from (``--recipe`` or ``train --data``'s), checked."""
    from cnnedge.auto import resolve_recipe
    from cnnedge.recipe import check

    base = check(resolve_recipe(recipe, data=data)[0])
    if base.distill.teachers and space.asks_grey(colors):
        raise CnnedgeError(
            f"--colors grey: recipe {base.name} distils from teachers that take the data's "
            "colour images; search colour only, or a recipe without distill.teachers"
        )
    return base


def _record(state: dict, c) -> dict:
    return next(r for r in state["candidates"] if r["id"] == c.id)


def _distinct(fits: list, state: dict) -> list:
    """One candidate per network: two that build the same layers (``gmp_32_64_128`` at half
    width is ``gmp_xs``) have the same parameters, MACs, RAM and instructions (flash differs by
    the layer names the model carries); the later one is marked
    as the same as the first and not trained."""
    seen: dict = {}
    out = []
    for c in fits:
        r = _record(state, c)
        key = (r["params"], r["macs"], r["ram"], r["instructions"], c.size, c.pool, c.grey, c.kernel)
        if key in seen:
            r["same_as"] = seen[key]
        else:
            seen[key] = c.id
            out.append(c)
    return out


def _measure_all(state, cands, base, channels, classes, budget, folder, tflm_dir, log):
    done = {r["id"] for r in state["candidates"]}
    for c in cands:
        if c.id in done:
            continue
        figures = costs.measure(
            c,
            dataset=base.data.dataset,
            num_classes=classes,
            channels=channels,
            target=budget["target"],
            folder=folder / "costs",
            tflm_dir=tflm_dir,
            log=log,
        )
        state["candidates"].append({**c.to_dict(), **figures, "over": costs.over_budget(figures, budget)})
        _save(folder, state, budget)


def _nothing_fits(state: dict, budget: dict) -> str:
    built = [r for r in state["candidates"] if r.get("ram") is not None] or state["candidates"]
    small = min(built, key=lambda r: (r.get("ram") or 0, r.get("flash") or 0))
    need = (
        f"needs {small['ram'] / 1024:.1f} KiB RAM and {small['flash'] / 1024:.1f} KiB flash"
        if small.get("ram") is not None
        else "does not fit the board model"
    )
    return (
        f"no candidate fits the budget; the smallest, {small['id']}, {need} "
        f"({'; '.join(small['over'])}); widen the budget or the space (--widths 0.25, "
        f"--sizes 24)"
    )


def _trial(state: dict, cid: str, rung: int) -> dict | None:
    return next((t for t in state["trials"] if t["id"] == cid and t["rung"] == rung), None)


def _rank(state, fits, bases, steps, folder, deadline, t0, spent, budget, log, jobs=1) -> None:
    """Successive halving (:mod:`.search`) over ``fits``, ``jobs`` trials at a time; the state
    is saved after each trial and no trial starts past the deadline once one has run."""
    by_id = {c.id: c for c in fits}
    alive, rung = [c.id for c in fits], 0

    def record(done: dict) -> None:
        state["trials"].append(done)
        state["seconds"] = spent + time.monotonic() - t0
        _choose(state)
        _save(folder, state, budget)

    def late(running: bool) -> bool:  # past the deadline once a trial has run (or is running)
        return time.monotonic() > deadline and (bool(state["trials"]) or running)

    while True:
        final = len(alive) <= search.ETA  # the last few: the whole schedule decides
        specs = []
        for cid in (cid for cid in alive if _trial(state, cid, rung) is None):
            prev = _trial(state, cid, rung - 1) if rung and not final else None
            steps_now = None if final else steps * search.ETA**rung
            specs.append(
                (
                    bases(by_id[cid]),
                    by_id[cid],
                    rung,
                    steps_now,
                    prev["run"] if prev else None,
                    folder / "trials",
                )
            )
        if not search.run_trials(specs, jobs, record, late, log):
            if log:
                log("time budget spent: the best trial so far wins")
            return _choose(state)
        scored = [(cid, _trial(state, cid, rung)["val_accuracy"] or 0.0) for cid in alive]
        if final:
            return _choose(state)
        alive, rung = search.halve(scored), rung + 1


def _choose(state: dict) -> None:
    """The winner: the best validation accuracy on the highest rung reached (the final rung's
    full trainings when the search got there)."""
    best = max(state["trials"], key=lambda t: (t["rung"], t["val_accuracy"] or 0.0))
    state["winner"] = best["id"]


def _winner_recipe(state: dict, bases, cands, folder: Path) -> Path:
    """winner.yaml: the base recipe (its full schedule, QAT as it has it) with the winner's
    model, width, pooling and size, from the shipped checkpoint where the winner can start
    from one."""
    from cnnedge.recipe import ModelConfig, save_yaml, set_image_size

    c = next(c for c in cands if c.id == state["winner"])
    base = bases(c)
    r = dataclasses.replace(
        base,
        name=f"{base.name}_tuned",
        description=f"cnnedge tune winner {c.id} ({base.description})",
        model=ModelConfig(name=c.model, kwargs=c.kwargs(), weights=search.start_weights(base, c)),
        data=search.with_color(base.data, c),
    )
    path = folder / "winner.yaml"
    save_yaml(set_image_size(r, (c.size, c.size)), path)
    return path


def _train_best(recipe_path: Path, budget: dict, folder: Path, tflm_dir, log) -> dict:
    """The winner trained in full, exported (TFLM), verified and built as firmware."""
    from cnnedge.export import export
    from cnnedge.firmware import build_firmware
    from cnnedge.train import train
    from cnnedge.verify import verify

    if log:
        log(f"training the winner in full: {recipe_path}")
    res = train(str(recipe_path), runs_dir=folder / "best", name="exp", overwrite=True, verbose=0)
    export(res.run_dir, formats="tflite,tflm", verify=0)
    rep = verify(res.run_dir)
    fw = build_firmware(res.run_dir, budget["target"], tflm_dir=tflm_dir, log=log)
    return {
        "run": str(res.run_dir),
        "test_accuracy": res.summary.get("test_accuracy"),
        "verify_passed": rep.passed,
        "firmware": fw.to_dict(),
    }
