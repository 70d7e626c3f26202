"""`modeldev.reader_tune --full` decides on saved aligned pairs instead of running the engine:
that is only honest if replaying a saved pair (`reader_data._save` -> `reader_tune._aligned` ->
`RegistrationEngine.analyse`) says what `compare` says on the same images."""

from __future__ import annotations

from pathlib import Path

from benchmarks.change_engine import FULL_SIZE_LONG_SIDE, prepared_pair
from benchmarks.cxrpairs import grid, make_pair
from modeldev.reader_data import _save
from modeldev.reader_tune import _aligned
from comparison import CompareContext, RegistrationEngine


def _said(result) -> list[tuple]:
    return sorted((f.finding.value, f.side.value if f.side else "", f.zone.value if f.zone else "", f.change.value, f.urgent)
                  for f in result.findings)


def test_a_saved_pair_replays_to_the_engines_own_findings(tmp_path: Path) -> None:
    specs = [sp for sp in grid("dev") if sp.kind == "changed" and sp.finding == "pneumothorax" and sp.change == "new"]
    pair = make_pair(specs[0], scale=600 / FULL_SIZE_LONG_SIDE)
    cur, pri = prepared_pair(pair)
    eng = RegistrationEngine()
    direct = eng.compare(cur.pixels, pri.pixels, CompareContext(pixel_spacing_mm=cur.spacing_mm)).result
    _save(tmp_path / "pair.npz", eng.align(cur.pixels, pri.pixels), cur, [lb.as_dict() for lb in pair.labels], {})
    labels, al, spacing = _aligned(tmp_path / "pair.npz")
    replayed = eng.analyse(al, al.cw.shape, CompareContext(pixel_spacing_mm=spacing)).result
    assert _said(direct) and any(f.urgent for f in direct.findings)  # the pair has an urgent change to replay
    assert _said(replayed) == _said(direct)
    assert labels == [lb.as_dict() for lb in pair.labels]
