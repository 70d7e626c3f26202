"""The fine-tune data selection of `modeldev.reader_data` (train split only): `--small-effusions`
keeps exactly the changed effusions whose fluid is at most SMALL_EFFUSION_MM on the image that has it."""

from __future__ import annotations

from benchmarks.cxrpairs import make_pair
from modeldev.reader_data import SMALL_EFFUSION_MM, small_effusion, train_specs


def test_small_effusions_are_selected_by_the_labelled_fluid_height() -> None:
    specs = [sp for sp in train_specs(4000, 200) if sp.finding == "effusion" and sp.change != "stable"]
    picked = {sp.pair_id: small_effusion(sp) for sp in specs}
    assert any(picked.values()) and not all(picked.values())  # the range holds both kinds
    for sp in specs:
        labels = make_pair(sp, scale=0.12).labels
        key = "size_mm" if sp.change in ("new", "worsened") else "prior_size_mm"
        assert picked[sp.pair_id] == (max(getattr(lb, key) or 0.0 for lb in labels) <= SMALL_EFFUSION_MM)
    others = [sp for sp in train_specs(4000, 40) if sp.finding != "effusion"]
    assert others and not any(small_effusion(sp) for sp in others)
