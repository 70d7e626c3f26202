"""Series mode of the two independent generators (issue 29): one patient's history per series,
written twice for the same seed to check determinism, and each label's nulls checked against
the pixels (a lesion labelled absent on a study is not drawn there, one with a size is)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from modeldev.generators import atlas2d, thorax3d

SEED = 29
N_SERIES = 2          # a stable nodule over > 2 years and a recurrent lesion (the quota shares come first)
GENERATORS = {"thorax3d": thorax3d, "atlas2d": atlas2d}


@pytest.fixture(scope="module", params=sorted(GENERATORS))
def written(request, tmp_path_factory) -> tuple[str, Path, list[dict]]:
    """One series run per generator: (name, out dir, the series.jsonl records)."""
    out = tmp_path_factory.mktemp(f"series_{request.param}")
    GENERATORS[request.param].generate_series(out, seed=SEED, n_series=N_SERIES)
    recs = [json.loads(line) for line in (out / "series.jsonl").read_text().splitlines()]
    return request.param, out, recs


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_bytes(written, tmp_path) -> None:
    name, out, _ = written
    GENERATORS[name].generate_series(tmp_path, seed=SEED, n_series=N_SERIES)
    first, again = _files(out), _files(tmp_path)
    assert len(first) >= 1 + 3 * N_SERIES
    assert first == again


def test_another_seed_writes_other_series(written, tmp_path) -> None:
    name, out, recs = written
    GENERATORS[name].generate_series(tmp_path, seed=SEED + 1, n_series=N_SERIES)
    other = [json.loads(line) for line in (tmp_path / "series.jsonl").read_text().splitlines()]
    assert [r["studies"] for r in other] != [r["studies"] for r in recs]


def test_each_series_is_one_patient_with_new_studies_oldest_first(written) -> None:
    name, out, recs = written
    assert len(recs) == N_SERIES
    for rec in recs:
        assert rec["generator"] == name
        assert 3 <= len(rec["studies"]) <= 5
        dss = [pydicom.dcmread(out / rec["series_id"] / f"{s['index']}.dcm", stop_before_pixels=True)
               for s in rec["studies"]]
        assert len({(d.PatientID, str(d.PatientName), d.PatientBirthDate) for d in dss}) == 1
        assert len({d.StudyInstanceUID for d in dss}) == len(dss)
        assert len({d.SOPInstanceUID for d in dss}) == len(dss)
        assert [s["study_uid"] for s in rec["studies"]] == [d.StudyInstanceUID for d in dss]
        assert [s["date"].replace("-", "") for s in rec["studies"]] == [d.StudyDate for d in dss]
        assert [s["view"] for s in rec["studies"]] == [d.ViewPosition for d in dss]
        dates = [dt.date.fromisoformat(s["date"]) for s in rec["studies"]]
        assert all(a < b for a, b in zip(dates, dates[1:]))
        assert 365 <= (dates[-1] - dates[0]).days <= 4 * 366


def test_quota_series_hold_a_two_year_stable_nodule_and_a_recurrent_lesion(written) -> None:
    _, _, recs = written
    stable = [r for r in recs if any(l["finding"] == "nodule" and l["kind"] == "stable" for l in r["lesions"])]
    span = max((dt.date.fromisoformat(r["studies"][-1]["date"]) - dt.date.fromisoformat(r["studies"][0]["date"])).days
               for r in stable)
    assert span >= 730
    recurrent = [l for r in recs for l in r["lesions"] if l["kind"] == "recurrent"]
    assert len(recurrent) >= 1
    for l in recurrent:
        s = l["sizes_mm"]
        assert s[0] is not None
        assert None in s
        assert any(v is not None for v in s[s.index(None):])


def _drop_renders(name: str, idx: int, scenario: str) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Each study's pixels, and its pixels re-drawn with lesion j left out (j = 0, 1, ...)."""
    if name == "thorax3d":
        s = thorax3d._series_draw(SEED, idx, scenario)
        person, lesions = s["person"], s["lesions"]
        drops = [[thorax3d.render_image(person, thorax3d._series_state(person, a["insp"], lesions, k, drop=j), a)[0]
                  for j in range(len(lesions))] for k, a in enumerate(s["acqs"])]
        return s["pix"], drops
    s = atlas2d._ser_draw(SEED, idx, scenario)
    drops = [[atlas2d._ser_render(s["body"], acq, st, atlas2d._ser_study_lesions(s["lesions"], k, drop=j),
                                  [SEED, idx, s["attempt"], k, 0x15E])[0]
              for j in range(len(s["lesions"]))] for k, (acq, st) in enumerate(s["studies"])]
    return s["pix"], drops


def test_sizes_are_null_exactly_where_the_lesion_is_not_drawn(written) -> None:
    name, _, recs = written
    mod = GENERATORS[name]
    scenarios = (mod._series_scenarios if name == "thorax3d" else mod._ser_scenarios)(SEED, N_SERIES)
    checked = 0
    for idx, rec in enumerate(recs):
        pix, drops = _drop_renders(name, idx, scenarios[idx])
        for j, lesion in enumerate(rec["lesions"]):
            for k, size in enumerate(lesion["sizes_mm"]):
                drawn = not np.array_equal(pix[k], drops[k][j])
                assert drawn == (size is not None), (rec["series_id"], j, k)
                checked += 1
    assert checked >= 6
