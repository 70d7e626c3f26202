"""Calibration maths, the benchmark's JSON schema and MS-CXR-T layout scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comparison import benchmark, calibration, mscxrt
from priorwatch.vocabulary import Change, FindingType, Side, Zone


def test_calibration_is_monotone_and_bounded() -> None:
    x = np.linspace(0.0, 1.0, 201)
    p = calibration.calibrate(x)
    assert np.all(np.diff(p) >= 0) and p[-1] > p[0]
    assert p.min() >= calibration.CONF_MIN and p.max() <= calibration.CONF_MAX
    assert isinstance(calibration.calibrate(0.5), float)
    with pytest.raises(ValueError):
        calibration.calibrate(float("nan"))


def test_platt_fit_recovers_a_known_map_and_lowers_ece() -> None:
    rng = np.random.default_rng(0)
    raw = rng.uniform(0.05, 0.95, 4000)
    true_p = 1 / (1 + np.exp(-(2.0 * np.log(raw / (1 - raw)) - 1.0)))
    y = rng.random(raw.size) < true_p
    a, b = calibration.fit_platt(raw, y, l2=0.0)
    assert a == pytest.approx(2.0, abs=0.25) and b == pytest.approx(-1.0, abs=0.2)
    fitted = calibration.calibrate(raw, a, b)
    assert calibration.expected_calibration_error(fitted, y) < calibration.expected_calibration_error(raw, y)
    assert calibration.expected_calibration_error([0.9, 0.9], [True, False]) == pytest.approx(0.4)


def test_benchmark_cases_are_seeded_and_vary_the_matrix() -> None:
    a = benchmark.cases(1, seed=5, matrix_variation=0.2)
    assert len(a) == 30 and a == benchmark.cases(1, seed=5, matrix_variation=0.2)
    assert [c.seed for c in a] != [c.seed for c in benchmark.cases(1, seed=6, matrix_variation=0.2)]
    assert all(0.8 <= c.matrix <= 1.2 for c in a) and len({c.matrix for c in a}) > 1
    assert all(c.matrix == 1.0 for c in benchmark.cases(1, seed=5))


def test_benchmark_json_schema(tmp_path: Path) -> None:
    few = [benchmark.BenchCase(FindingType.nodule, Change.new, Side.right, Zone.upper, 11, 0.85),
           benchmark.BenchCase(None, Change.stable, Side.right, Zone.middle, 33, 1.15)]
    out = tmp_path / "b.json"
    benchmark.run(1, 99, out, size=384, real_files=False, quiet=True, selected=few)
    doc = json.loads(out.read_text())
    s = doc["summary"]
    for k in ("pairs", "per_type", "change_direction_accuracy", "side_accuracy", "zone_accuracy", "urgent_recall",
              "false_urgent_rate", "ece_raw", "ece_calibrated", "seconds_per_pair_mean", "seconds_per_pair_p95", "seed", "n"):
        assert k in s, k
    assert s["pairs"] == 2 and s["seed"] == 99
    assert set(s["per_type"]) == {"nodule", "mass", "consolidation", "effusion", "pneumothorax"}
    assert set(s["per_type"]["nodule"]) >= {"sensitivity", "specificity", "tp", "fn", "fp", "tn"}
    row = doc["pairs"][0]
    assert {"lesion", "change", "side", "zone", "urgent", "matrix", "seconds", "findings"} <= set(row)
    assert row["findings"] and {"finding", "change", "confidence", "raw_confidence"} <= set(row["findings"][0])
    assert s["per_type"]["nodule"]["tp"] == 1 and doc["pairs"][1]["findings"] == []


LABELS = """dicom_id,previous_dicom_id,study_id,consolidation,edema,pleural_effusion,pneumonia,pneumothorax
c1,p1,s1,worsening,,stable,worsening,
c2,p2,s2,improving,stable,improving,,worsening
c3,p3,s3,stable,,worsening,stable,stable
c4,p4,s4,,,,,improving
"""

RESULTS = [
    {"dicom_id": "c1", "previous_dicom_id": "p1", "findings": [
        {"finding": "consolidation", "change": "new", "confidence": 0.8},
        {"finding": "nodule", "change": "new", "confidence": 0.9}]},
    {"current_study_uid": "c2", "prior_study_uid": "p2", "findings": [
        {"finding": "consolidation", "change": "resolved", "confidence": 0.7},
        {"finding": "effusion", "change": "worsened", "confidence": 0.6},
        {"finding": "pneumothorax", "change": "new", "confidence": 0.9}]},
    {"accession_number": "c3", "findings": []},
]


def test_mscxrt_scoring_on_a_tiny_fixture(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text(LABELS)
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    s = mscxrt.score_files(tmp_path / "results.json", tmp_path / "labels.csv")
    assert (s["pairs"], s["matched"], s["missing"]) == (4, 3, 1)
    pf = s["per_finding"]
    # consolidation: c1 worsening ok, c2 improving ok, c3 stable ok
    assert pf["consolidation"]["accuracy"] == 1.0 and pf["consolidation"]["macro_accuracy"] == 1.0
    # pneumonia (from our consolidation): c1 worsening ok, c3 stable ok
    assert pf["pneumonia"]["accuracy"] == 1.0
    # effusion: c1 stable ok; c2 improving predicted worsening (wrong); c3 worsening predicted stable (wrong)
    assert pf["pleural_effusion"]["accuracy"] == pytest.approx(1 / 3)
    assert pf["pleural_effusion"]["macro_accuracy"] == pytest.approx(1 / 3)
    # pneumothorax: c2 worsening ok, c3 stable ok, c4 (missing -> stable) improving wrong
    assert pf["pneumothorax"]["accuracy"] == pytest.approx(2 / 3)
    assert pf["pneumothorax"]["macro_accuracy"] == pytest.approx(2 / 3)
    assert pf["edema"]["n"] == 1 and pf["edema"]["accuracy"] == 1.0
    assert s["macro_accuracy"] == pytest.approx((1 + 1 + 1 / 3 + 1 + 2 / 3) / 5)


def test_mscxrt_mapping_and_bad_labels(tmp_path: Path) -> None:
    pred = mscxrt.predict_labels({"findings": [{"finding": "effusion", "change": "improved", "confidence": 0.3},
                                               {"finding": "effusion", "change": "new", "confidence": 0.9},
                                               {"finding": "pneumothorax", "change": "stable", "confidence": 0.9}]})
    assert pred["pleural_effusion"] == "worsening" and pred["pneumothorax"] == "stable" and pred["edema"] == "stable"
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    (tmp_path / "r.json").write_text("[]")
    with pytest.raises(ValueError):
        mscxrt.score_files(tmp_path / "r.json", tmp_path / "bad.csv")


def test_cli_scores_an_mscxrt_set(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from benchmarks.change_engine import register

    app = typer.Typer()
    register(app)

    @app.command()
    def _noop() -> None:  # a second command keeps typer in multi-command mode
        pass

    (tmp_path / "labels.csv").write_text(LABELS)
    (tmp_path / "results.json").write_text(json.dumps({"results": RESULTS}))
    res = CliRunner().invoke(app, ["benchmark", "--score", str(tmp_path / "results.json"), "--labels", str(tmp_path / "labels.csv"),
                                   "--out", str(tmp_path / "s.json")])
    assert res.exit_code == 0, res.output
    assert "macro accuracy 0.800" in res.output and "pleural_effusion" in res.output
    assert json.loads((tmp_path / "s.json").read_text())["matched"] == 3
    res = CliRunner().invoke(app, ["benchmark", "--score", str(tmp_path / "results.json")])
    assert res.exit_code != 0
