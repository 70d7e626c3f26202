"""`modeldev.reader_replay` replays what the strict scorer saw (issue 28): the engine's findings on a saved
registered pair, read again with the same weights and cut-offs, are the findings `modeldev.evaluate`'s
path recorded. If the replay dropped part of the context (views, spacing, orientation) or of the
registered pair (the current's own lungs, the affine-only prior), a pair's answer would differ."""

from __future__ import annotations

from pathlib import Path

from comparison import Reader, RegistrationEngine
from modeldev.generators import atlas2d
from modeldev.evaluate import score_pair
from modeldev.reader_replay import _found, load, replay, save

TRAIN_SEED = 3999  # a training seed (3001+): never a validation or record seed


def test_replay_gives_the_recorded_answers(tmp_path: Path) -> None:
    folder = atlas2d.generate(tmp_path / "set", seed=TRAIN_SEED, n_pairs=3, cases={"change": 2, "ap_vs_pa": 1})
    pairs = load(save(folder, tmp_path / "saved"))
    assert len(pairs) == 3
    assert all(p["al"] is not None for p in pairs)  # every pair was registered: the replay is exercised
    recorded = [score_pair(p["rec"]["pair_id"], p["rec"]["case"], p["rec"].get("expect", "compare"),
                           p["rec"]["findings"], _found(p["result"]), list(p["result"].notes)) for p in pairs]
    replayed = replay(pairs, RegistrationEngine(reader=Reader()))
    assert sum(s.changes for s in recorded) >= 2  # labelled changes to score
    assert replayed == recorded  # every tally, miss and claim of every pair
