"""`modeldev.reader_train --tone`: the reader is trained on what the engine's deciding reading shows it,
the prior after `registration._match_tone` (engine 0.4.8), not only the quadratic-matched prior."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.change_engine import FULL_SIZE_LONG_SIDE, prepared_pair
from benchmarks.cxrpairs import grid, make_pair
from modeldev.reader_data import _save
from modeldev.reader_train import samples
from comparison import RegistrationEngine
from comparison.reader import lung_inputs
from comparison.registration import _match_tone


def test_training_crops_show_the_tone_mapped_prior_when_asked(tmp_path: Path) -> None:
    spec = next(sp for sp in grid("dev") if sp.kind == "changed" and sp.finding == "consolidation")
    pair = make_pair(spec, scale=520 / FULL_SIZE_LONG_SIDE)
    cur, pri = prepared_pair(pair)
    eng = RegistrationEngine()
    al = eng.align(cur.pixels, pri.pixels)
    _save(tmp_path / "pair.npz", al, cur, [lb.as_dict() for lb in pair.labels], {})
    z = np.load(tmp_path / "pair.npz")
    cw, plain = z["cw"].astype(np.float32), z["mapped"].astype(np.float32)
    toned = _match_tone(cw, plain, z["roi"])
    assert np.abs(toned - plain)[z["roi"]].mean() > 1e-3  # the tone map moves this prior
    args = (z["right"], z["left"], z["roi"], float(z["midline"]), float(z["spacing"]))
    want = {name: lung_inputs(cw, prior, *args)["right"][0][1].astype(np.float16) for name, prior in
            (("plain", plain), ("toned", toned))}
    for tone, name in ((0.0, "plain"), (1.0, "toned")):
        got = samples([tmp_path / "pair.npz"], 1, np.random.default_rng(0), tone)
        np.testing.assert_array_equal(got["x"][0][1], want[name])  # the right lung's prior channel, first crop
