"""Training replays what production's reader sees (issue 28): a pair saved by `modeldev.reader_data`,
turned into training samples by `modeldev.reader_train.samples` (no jitter, forward in time) and put
through a network, gives the probabilities that production's `Reader.read` gives for the same weights
on the same aligned pair. Both go through `comparison.lung_inputs`; if training prepared its crops in
any other way (another spacing, order of images, normalisation), the two would part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks.change_engine import FULL_SIZE_LONG_SIDE, prepared_pair
from benchmarks.cxrpairs import grid, make_pair
from comparison import Reader, RegistrationEngine, build_net, replay_aligned
from modeldev.reader_data import _save
from modeldev.reader_train import predict, samples

HEAD_GAIN = 40.0  # scales the random change and urgent heads: lungs' probabilities spread over ~0.1-0.9


def test_training_samples_read_as_production_reads_them(tmp_path: Path) -> None:
    spec = next(sp for sp in grid("dev") if sp.kind == "changed" and sp.finding == "effusion")
    pair = make_pair(spec, scale=520 / FULL_SIZE_LONG_SIDE)
    cur, pri = prepared_pair(pair)
    _save(tmp_path / "pair.npz", RegistrationEngine().align(cur.pixels, pri.pixels), cur,
          [lb.as_dict() for lb in pair.labels], {})
    torch.manual_seed(3)
    net = build_net()  # random weights: the check is of the inputs, not of what a trained net says
    for m in net.modules():  # running statistics away from 0 / 1, so that normalisation matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():  # a random net's outputs sit near 0.5: spread them so that a different input shows
        for head in (net.change, net.urgent):
            head.weight.mul_(HEAD_GAIN)
    torch.save(net.state_dict(), tmp_path / "w.pt")

    z = np.load(tmp_path / "pair.npz")
    al = replay_aligned(z["cw"].astype(np.float32), z["mapped"].astype(np.float32), z["right"], z["left"],
                        z["roi"], float(z["midline"]), float(z["quality"]))
    reads = Reader(tmp_path / "w.pt").read(al, float(z["spacing"]), swap_tta=False)
    trained = predict(net, samples([tmp_path / "pair.npz"], 1, None))

    assert [r.side for r in reads] == ["right", "left"]  # samples' order: right lung, then left
    production = np.array([r.p_change for r in reads])
    assert np.ptp(production) > 1e-4  # the two lungs read differently: a swap of sides would show
    np.testing.assert_allclose(trained["change"], production, atol=2e-3)  # float16 storage of the crops
    np.testing.assert_allclose(trained["urgent"], [r.p_urgent for r in reads], atol=2e-3)
