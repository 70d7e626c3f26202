import numpy as np
import pandas as pd

from monitoring.metrics import subgroup_table, two_proportion_p, wilson


def test_wilson_and_p():
    lo, hi = wilson(np.array([5]), np.array([10]))
    assert abs(lo[0] - 0.2366) < 1e-3 and abs(hi[0] - 0.7634) < 1e-3
    assert two_proportion_p([50], [100], [20], [100])[0] < 0.001
    assert two_proportion_p([20], [100], [21], [100])[0] > 0.5


def test_subgroup_min_count_guard_and_flag():
    rng = np.random.default_rng(0)
    n = 600
    site = np.where(np.arange(n) < 150, "B", "A")
    revised = np.where(site == "B", rng.random(n) < 0.5, rng.random(n) < 0.15)
    df = pd.DataFrame({"has_final": True, "revised": revised, "urgent": False,
                       "final_urgent": False, "site": site, "sex": np.where(np.arange(n) < 10, "O", "F")})
    t = subgroup_table(df, min_count=30, gap_threshold=0.1, alpha=0.01)
    row = t[(t.dimension == "site") & (t.level == "B") & (t.metric == "revision_rate")].iloc[0]
    assert row.flagged and row.lo < row.rate < row.hi
    assert not t[(t.dimension == "site") & (t.level == "A")].flagged.any()  # better, not worse
    small = t[(t.dimension == "sex") & (t.level == "O")].iloc[0]
    assert small.insufficient and not small.flagged


def test_image_statistics():
    from monitoring.imagestats import image_statistics

    ramp = np.tile(np.arange(256, dtype=np.uint16), (16, 1))
    st = image_statistics(ramp)
    assert abs(st["mean"] - 0.5) < 1e-9 and abs(st["entropy"] - 8.0) < 1e-9
    inv = image_statistics(ramp, monochrome1=True)
    assert abs(inv["p05"] - (1 - st["p95"])) < 1e-2
