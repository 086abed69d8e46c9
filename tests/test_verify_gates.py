"""verify's gates: the 95 % interval, the pass / fail / inconclusive / info rule on plain numbers,
the report text, and on the session's tiny run (conftest.py) the PTQ row informational unless
``--gate-ptq``."""

import json

import pytest

from cnnedge.verify import (
    HARD_GATE_IMAGES,
    VerifyReport,
    agreement_interval,
    gate,
    gate_lines,
    markdown,
    pct,
)


def test_interval_known_values():
    # all or none agreeing: the closed forms (alpha/2)^(1/n) and 1 - (alpha/2)^(1/n)
    assert agreement_interval(10, 10) == pytest.approx((0.025**0.1, 1.0))
    assert agreement_interval(0, 10) == pytest.approx((0.0, 1 - 0.025**0.1))
    assert agreement_interval(120, 120)[1] == 1.0 and agreement_interval(0, 120)[0] == 0.0
    # Newcombe (1998), Stat. Med. 17:857, exact method: 81/263 -> 0.2527, 0.3676
    assert agreement_interval(81, 263) == pytest.approx((0.2527, 0.3676), abs=5e-5)
    # one flip in 120: the upper bound stays over a 99.9 % bar (Wilson's 99.85 % would not)
    assert agreement_interval(119, 120) == pytest.approx((0.95444, 0.99979), abs=5e-6)
    assert agreement_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        agreement_interval(11, 10)


def test_interval_matches_the_beta_quantiles():
    beta = pytest.importorskip("scipy.stats").beta
    for n in (1, 7, 120, 512, 999, 3000):
        for k in sorted({0, 1, n // 2, n - 1, n}):
            lo, hi = agreement_interval(k, n)
            assert lo == pytest.approx(0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1), abs=1e-12)
            assert hi == pytest.approx(1.0 if k == n else beta.ppf(0.975, k + 1, n - k), abs=1e-12)


def test_gate_rule():
    assert gate(120, 120, 0.995) == "pass"
    assert gate(995, 1000, 0.995) == "pass"  # at the bar is a pass
    assert gate(116, 120, 0.98) == "inconclusive"  # 96.67 %, interval up to 99.08 %
    assert gate(110, 120, 0.98) == "fail"  # 91.67 %, interval up to 95.93 %
    assert gate(119, 120, 0.999) == "inconclusive"
    assert gate(120, 120, 1.0001) == "fail"  # an impossible bar fails at any n
    # the same 99.8 % is inconclusive on 999 images and a plain failure from 1,000 on
    assert HARD_GATE_IMAGES == 1000
    assert gate(997, 999, 0.999) == "inconclusive"
    assert gate(998, 1000, 0.999) == "fail"
    assert gate(1989, 2000, 0.995) == "fail"
    # no threshold, or not gated (PTQ by default): info, whatever the numbers
    assert gate(0, 120, None) == "info"
    assert gate(0, 120, 0.98, gated=False) == "info"
    assert gate(0, 0, 0.98) == "inconclusive"  # no images: no evidence either way


def test_pct_rounds_down_so_a_shown_bound_at_the_bar_reaches_it():
    assert pct(0.99979) == "99.97 %" and pct(1.0) == "100.00 %" and pct(0.995) == "99.50 %"


def _row(artifact, agreed, n, threshold, gated=True):
    return {
        "artifact": artifact,
        "runtime": "litert",
        "accuracy": 0.9,
        "reference": "keras-qat",
        "agreement": agreed / n,
        "agreement_ci95": list(agreement_interval(agreed, n)),
        "max_abs_logit_diff": 0.1,
        "mean_abs_logit_diff": 0.01,
        "flips": n - agreed,
        "flips_within_one_step": None,
        "threshold": threshold,
        "gate": gate(agreed, n, threshold, gated=gated),
    }


def test_report_text_names_split_count_interval_and_advice():
    rep = VerifyReport(
        run="runs/x",
        split="test",
        images=120,
        split_images=10000,
        rows=[
            _row("model_int8.tflite", 119, 120, 0.995),
            _row("model_int8_ptq.tflite", 110, 120, 0.98, gated=False),
        ],
    )
    assert rep.passed and rep.inconclusive == ["model_int8.tflite"]  # from the rows
    md = markdown(rep)
    assert md.startswith("Parity on 120 of 10,000 test images of runs/x")
    assert "| 99.17 % | 95.44–99.97 % |" in md and "❔ inconclusive (99.5 %)" in md
    assert "➖ info (98 %)" in md
    lines = gate_lines(rep)
    assert "inconclusive, not a failure; rerun on more images: cnnedge verify runs/x -n 2000" in lines[0]
    assert "not gated (against its 98 % bar: fail; --gate-ptq gates it)" in lines[1]
    rep.split_images = rep.images = 500  # the whole split already: no -n to suggest
    rep.rows = [_row("model_int8.tflite", 497, 500, 0.995)]
    assert "holds only 500 images" in gate_lines(rep)[0]


def test_ptq_is_info_unless_gated(tiny_run, capsys, monkeypatch):
    from helpers import disagree

    from cnnedge.cli import main

    run = tiny_run["run"]
    disagree(monkeypatch, "model_int8_ptq.tflite")  # under its 98 % bar
    loose = ["--min-int8", "0", "--min-fp32", "0", "--min-fp16", "0"]
    assert main(["verify", str(run), "-n", "120", *loose]) == 0
    out = capsys.readouterr().out
    assert "--gate-ptq gates it" in out
    rep = json.loads((run / "verify.json").read_text())
    assert rep["passed"] and rep["images"] == 120 and rep["split"] == "test"
    assert rep["split_images"] > 120 and rep["gate_ptq"] is False
    rows = {r["artifact"]: r for r in rep["rows"]}
    assert rows["model_int8_ptq.tflite"]["gate"] == "info"
    assert rows["model_int8_ptq.tflite"]["passed"] is True  # info never fails the report
    assert rows["model_int8.tflite"]["gate"] == "pass" and rows["keras-qat"]["gate"] == "info"
    for r in rep["rows"]:
        lo, hi = r["agreement_ci95"]
        assert 0 <= lo <= r["agreement"] <= hi <= 1
    assert "| gate |" in (run / "verify.md").read_text()

    assert main(["verify", str(run), "-n", "120", "--gate-ptq", *loose]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: agreement under threshold for model_int8_ptq.tflite"
    rep = json.loads((run / "verify.json").read_text())
    assert not rep["passed"] and rep["gate_ptq"] is True
    assert {r["artifact"]: r["gate"] for r in rep["rows"]}["model_int8_ptq.tflite"] == "fail"
