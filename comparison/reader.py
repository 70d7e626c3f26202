"""The learned hemithorax reader: what changed in each lung, read off the registered pair.

Why a learned stage: the hand-written sign rules (`registration._describe`) were tuned on
one generator and generalised poorly to an independent one (issue 11). The reader is a
small CNN (~0.1 M weights, CPU, a few ms) that looks at one lung at a time, as a
radiologist compares a hemithorax with the same hemithorax on the prior:

- input: the lung's box (plus the chest wall and angles around it) on the current image,
  on the registered and intensity-matched prior, their difference in noise units, the
  lung mask, the same box of the *other* lung on both images (mirrored: the patient's own
  normal), and where in the lung each pixel sits; plus the lung's height in mm, so that
  a nodule (< 30 mm) and a mass are told apart by size, not by looks;
- output: is there an interval change in this lung, which finding, which change word,
  which third of the lung, and is it urgent.

Where each lung's crop sits comes from the image's row profile checked against the other
lung (`hemithorax_boxes`), not from the threshold lung masks alone: those are often cut at
the denser lower lung or leak into the abdomen, and a crop without the base misses the
effusion or the basal mass. Both lungs are presented lateral-wall-left (the left lung is
mirrored), so one set of weights reads both. The weights (`reader_weights.pt`) ship with the package; they were
trained by `modeldev/reader_train.py` (then `benchmarks/reader_train.py`) on the "train" split of the independent cxrpairs
generator (synthetic and, fine-tuned, real-CR backgrounds, train seeds only) and on the
engine's own generator, and chosen on the dev grids only (never the held-out or real-CR
grids); nothing is downloaded. Since engine 0.4.8 they are two members, both fine-tuned on
priors after the engine's tone map (`registration._match_tone`), whose probabilities are
averaged. Synthetic training data: how it reads real radiographs is
not known beyond the real-CR pairs (issue 11's note).

Provenance of the shipped weights since issue 28 (helper H1, engine 0.4.14): the two 0.4.8 members, each
fine-tuned 5 epochs (`modeldev.reader_train --init-member 0|1`, seeds 41 / 43, `--tone 0.7 --acquire 0.7
--variants 3`, max-lr 1.5e-3) on thorax3d, atlas2d and slabs pairs of TRAINING seed 3001 (140 / 140 / 76 pairs,
member 0 saw the first 32 slabs pairs only; safety cases mirrored, ap_vs_pa, rotated, devices_only and extra
stable / normal pairs included) and 95 cxrpairs train pairs (6000-6094); commands in `modeldev.reader_train`.
Never ssmfield or sdfphantom (held out), never a validation or record seed. Chosen, with the cut-offs 0.45 / 0.6,
on the seed-1001 validation sets (strict scorer's path replayed, `modeldev.reader_replay`) and cxrpairs dev;
the figures are in `thresholds.READER_CHANGE_P`. Those sets are validation from then on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

from comparison import thresholds as T
from comparison._anatomy import robust_sd

if TYPE_CHECKING:
    from comparison.registration import Aligned

__all__ = ["CROP_H", "CROP_W", "FINDINGS", "CHANGES", "ZONES", "LungRead", "Reader", "build_net", "hemithorax_boxes",
           "lung_inputs"]

CROP_H, CROP_W = 112, 56  # a lung is about twice as tall as wide; ~1-1.5 working pixels per crop pixel
FINDINGS = ("nodule", "mass", "consolidation", "effusion", "pneumothorax")
CHANGES = ("new", "worsened", "improved", "resolved")
ZONES = ("upper", "middle", "lower")
CHANNELS = 8
WEIGHTS = Path(__file__).with_name("reader_weights.pt")


@dataclass
class LungRead:
    """The reader's answer for one lung."""

    side: str  # "right" | "left" (the patient's)
    p_change: float
    finding: str
    p_finding: float
    change: str
    p_word: float
    zone: str
    p_zone: float
    p_urgent: float
    box: tuple[int, int, int, int]  # the lung's box on the working grid (row0, col0, row1, col1)


def _mask_cols(mask: np.ndarray, side: str, w: int) -> tuple[float, float]:
    cols = np.nonzero(mask.any(axis=0))[0]
    if cols.size < T.READER_MIN_LUNG_WIDTH * w:  # no usable mask: the usual place of that hemithorax
        return (0.1 * w, 0.42 * w) if side == "right" else (0.58 * w, 0.9 * w)
    return float(cols[0]), float(cols[-1])


def _rows_by_profile(cw: np.ndarray, c0: float, c1: float, side: str) -> tuple[int, int]:
    """Apex and base rows of one lung from the row profile of its lateral half (away from the
    heart and mediastinum): the lung is the dark plateau; the base is where the profile has
    risen half-way to the abdomen's level below it, the apex half-way to the shoulders' above."""
    h = cw.shape[0]
    lo_f, hi_f = T.READER_PROFILE_BAND
    b0, b1 = (c0 + lo_f * (c1 - c0), c0 + hi_f * (c1 - c0)) if side == "right" else \
        (c1 - hi_f * (c1 - c0), c1 - lo_f * (c1 - c0))
    b0i = int(np.clip(np.ceil(b0), 0, cw.shape[1] - 2))  # ceil / floor: the mirrored chest gives the mirrored band
    band = cw[:, b0i : max(int(np.floor(b1)) + 1, b0i + 2)]
    prof = ndi.gaussian_filter1d(ndi.gaussian_filter1d(band.astype(np.float32), 1.5, axis=1).mean(axis=1), 2.0)
    lo, hi = int(0.2 * h), int(0.7 * h)
    r0 = lo + int(np.argmin(prof[lo:hi]))
    level = float(np.median(prof[max(0, r0 - 8) : r0 + 9]))
    below, above = prof[r0:], prof[: r0 + 1]
    cut_b = level + 0.5 * (float(np.percentile(below, 90)) - level)
    cut_a = level + 0.5 * (float(np.percentile(above, 90)) - level)
    bi, ai = np.nonzero(below > cut_b)[0], np.nonzero(above > cut_a)[0]
    bot = r0 + (int(bi[0]) if bi.size else len(below) - 1)
    top = int(ai[-1]) if ai.size else 0
    return top, bot


def hemithorax_boxes(cw: np.ndarray, right: np.ndarray, left: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """(top, bottom, col0, col1) of each lung on the working grid.

    Rows come from the image's row profile, not from the lung masks: the threshold masks are
    often cut at the denser lower lung or leak into the abdomen (on dev, 40 of 104 pairs had
    one lung under 0.8 of the other's height), and a crop that misses the base misses the
    effusion or the basal mass. The two lungs check each other: the apices are at one level
    (a bright apical lesion stops the walk up on its side only), a base is never placed more
    than `READER_BASE_ASYMMETRY` of lung height above the other's (an effusion or basal
    opacity stops the walk down on its side only), and a lung is at least
    `READER_WIDTH_RATIO` as wide as the other."""
    h, w = cw.shape
    cols = {"right": _mask_cols(right, "right", w), "left": _mask_cols(left, "left", w)}
    widths = {s: c[1] - c[0] for s, c in cols.items()}
    for s, other in (("right", "left"), ("left", "right")):
        need = T.READER_WIDTH_RATIO * widths[other] - widths[s]
        if need > 0:  # widen towards the chest wall
            c0, c1 = cols[s]
            cols[s] = (max(0.0, c0 - need), c1) if s == "right" else (c0, min(w - 1.0, c1 + need))
    rows = {s: _rows_by_profile(cw, *cols[s], s) for s in cols}
    masks = {"right": right, "left": left}
    tops = [rows[s][0] for s in rows]
    bots = {}
    for s, m in masks.items():
        r = np.nonzero(m.any(axis=1))[0]
        prof_top, prof_bot = rows[s]
        bots[s] = prof_bot
        if r.size < 4:
            continue
        tops.append(max(int(r[0]), int(T.READER_FRAME_EDGE * h)))  # a mask reaching the frame: its top held there
        if r[-1] <= prof_bot + T.READER_MASK_BASE_REACH * max(prof_bot - prof_top, 1):
            bots[s] = max(prof_bot, int(r[-1]))  # the mask reaches lower, but not into the abdomen
    top = min(tops)  # bright ribs and clavicles can stop the profile's walk up early; the apices are level
    out = {}
    for s, other in (("right", "left"), ("left", "right")):
        height = max(bots[other] - top, 1)
        bot = max(bots[s], bots[other] - T.READER_BASE_ASYMMETRY * height)
        out[s] = (float(top), float(bot), *cols[s])
    return out


def _box(rows_cols: tuple[float, float, float, float], jitter: np.ndarray | None = None) -> tuple[float, ...]:
    """The lung's rows and the crop box around it (chest wall and angles included)."""
    top, bot, c0, c1 = rows_cols
    lh, lw = max(bot - top, 4.0), max(c1 - c0, 4.0)
    m = np.array([T.READER_MARGIN_V, T.READER_MARGIN_V, T.READER_MARGIN_H, T.READER_MARGIN_H])
    if jitter is not None:
        m = m + jitter
    return top, bot, top - m[0] * lh, bot + m[1] * lh, c0 - m[2] * lw, c1 + m[3] * lw


def _sample(img: np.ndarray, r0: float, r1: float, c0: float, c1: float, flip: bool) -> np.ndarray:
    rr = np.linspace(r0, r1, CROP_H, dtype=np.float32)
    cc = np.linspace(c0, c1, CROP_W, dtype=np.float32)
    if flip:
        cc = cc[::-1]
    coords = np.stack(np.meshgrid(rr, cc, indexing="ij"))
    return ndi.map_coordinates(img, coords, order=1, mode="nearest").astype(np.float32)


def lung_inputs(cw: np.ndarray, mapped: np.ndarray, right: np.ndarray, left: np.ndarray, roi: np.ndarray,
                midline: float, spacing_mm: float, jitter: dict | None = None) -> dict[str, tuple[np.ndarray, float, tuple]]:
    """Per side: the (CHANNELS, CROP_H, CROP_W) input, the lung height in mm and the lung box.

    `jitter` (training only) moves the crop margins and intensities a little so that the
    reader does not learn one segmentation's exact box."""
    lungs = roi if roi.sum() >= 50 else (right | left)
    vals = cw[lungs]
    med = float(np.median(vals))
    spread = max(float(np.subtract(*np.percentile(vals, [90, 10]))), T.READER_SPREAD_FLOOR)
    diff = ndi.gaussian_filter(cw, 0.7) - ndi.gaussian_filter(mapped, 0.7)
    dv = diff[lungs]
    sigma = max(robust_sd(dv), T.SIGMA_FLOOR)
    zmap = np.clip(diff / sigma, -T.READER_Z_CLIP, T.READER_Z_CLIP) / T.READER_Z_CLIP
    cn, pn = (cw - med) / spread, (mapped - med) / spread
    both = (right | left).astype(np.float32)
    out = {}
    boxes = {}
    hemi = hemithorax_boxes(cw, right, left)
    for side in ("right", "left"):
        j = None if jitter is None else jitter.get(side)
        boxes[side] = _box(hemi[side], j)
    for side in ("right", "left"):
        other = "left" if side == "right" else "right"
        flip = side == "left"  # lateral wall on the crop's left for both lungs
        top, bot, r0, r1, c0, c1 = boxes[side]
        _, _, o0, o1, oc0, oc1 = boxes[other]
        chans = [
            _sample(cn, r0, r1, c0, c1, flip),
            _sample(pn, r0, r1, c0, c1, flip),
            _sample(zmap, r0, r1, c0, c1, flip),
            _sample(both, r0, r1, c0, c1, flip),
            _sample(cn, o0, o1, oc0, oc1, not flip),  # the other lung, mirrored onto this one
            _sample(pn, o0, o1, oc0, oc1, not flip),
        ]
        frac = (np.linspace(r0, r1, CROP_H, dtype=np.float32) - top) / max(1.0, bot - top)  # 0 apex .. 1 base
        chans.append(np.repeat(frac[:, None], CROP_W, axis=1))
        chans.append(np.repeat(np.linspace(-1, 1, CROP_W, dtype=np.float32)[None, :], CROP_H, axis=0))
        x = np.stack(chans).astype(np.float32)
        height_mm = (bot - top) * spacing_mm
        out[side] = (x, float(height_mm), (int(top), int(max(c0, 0)), int(bot), int(c1)))
    return out


def build_net():
    """The reader's network (torch imported here: the engine loads it only when it reads)."""
    import torch
    from torch import nn

    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

    class ReaderNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            stem = nn.Sequential(nn.Conv2d(CHANNELS, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
            self.trunk = nn.Sequential(stem, nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2),
                                       block(32, 48), nn.MaxPool2d(2), block(48, 64))
            self.fc = nn.Sequential(nn.Linear(64 * 2 + 1, 96), nn.ReLU(inplace=True), nn.Dropout(0.2))
            self.change = nn.Linear(96, 1)
            self.finding = nn.Linear(96, len(FINDINGS))
            self.word = nn.Linear(96, len(CHANGES))
            self.zone = nn.Linear(96, len(ZONES))
            self.urgent = nn.Linear(96, 1)

        def forward(self, x, height):
            f = self.trunk(x)
            g = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), height[:, None] / 300.0], dim=1)
            h = self.fc(g)
            return self.change(h)[:, 0], self.finding(h), self.word(h), self.zone(h), self.urgent(h)[:, 0]

    return ReaderNet()


class Reader:
    """Loads the shipped weights once (one network, or an ensemble whose probabilities are
    averaged); `read(aligned, spacing_mm)` -> one `LungRead` per lung."""

    def __init__(self, weights: Path | None = None, threads: int = 1) -> None:
        import torch

        weights = weights if weights is not None else WEIGHTS  # looked up at call time
        if not weights.is_file():
            raise FileNotFoundError(f"reader weights not found: {weights.name}")
        self._torch = torch
        self.threads = threads
        state = torch.load(weights, map_location="cpu", weights_only=True)
        members = state["members"] if "members" in state else [state]  # an ensemble: averaged
        self.nets = []
        for sd in members:
            net = build_net()
            net.load_state_dict(sd)
            net.eval()
            self.nets.append(net)
        self.version = hashlib.sha256(weights.read_bytes()).hexdigest()[:12]  # which weights read this pair

    def read(self, al: "Aligned", spacing_mm: float, swap_tta: bool | None = None) -> list[LungRead]:
        """Read both lungs. With `swap_tta` (default `thresholds.READER_SWAP_TTA`) the pair is also
        read backwards in time (prior as current) and the two readings averaged, the change word
        mapped back (new <-> resolved, worsened <-> improved): a change must look like itself
        from both ends of the interval."""
        swap_tta = T.READER_SWAP_TTA if swap_tta is None else swap_tta
        fwd = self._probs(al.cw, al.mapped, al, spacing_mm)
        if swap_tta:
            bwd = self._probs(al.mapped, al.cw, al, spacing_mm)
            back = [CHANGES.index(c) for c in ("resolved", "improved", "worsened", "new")]  # word i read backwards
            pc = (fwd[0] + bwd[0]) / 2
            pf = (fwd[1] + bwd[1]) / 2
            pw = (fwd[2] + bwd[2][:, back]) / 2
            pz = (fwd[3] + bwd[3]) / 2
            pu = fwd[4]  # urgency is of the forward change only
            fwd = (pc, pf, pw, pz, pu, fwd[5])
        pc, pf, pw, pz, pu, boxes = fwd
        out = []
        for i, s in enumerate(("right", "left")):
            fi, wi, zi = int(pf[i].argmax()), int(pw[i].argmax()), int(pz[i].argmax())
            out.append(LungRead(s, float(pc[i]), FINDINGS[fi], float(pf[i, fi]), CHANGES[wi], float(pw[i, wi]),
                                ZONES[zi], float(pz[i, zi]), float(pu[i]), boxes[i]))
        return out

    def _probs(self, cur: np.ndarray, prior: np.ndarray, al: "Aligned", spacing_mm: float) -> tuple:
        torch = self._torch
        inp = lung_inputs(cur, prior, al.lungs.right, al.lungs.left, al.roi, al.lungs.midline, spacing_mm)
        sides = ("right", "left")
        x = torch.from_numpy(np.stack([inp[s][0] for s in sides]))
        hgt = torch.tensor([inp[s][1] for s in sides], dtype=torch.float32)
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                outs = []
                for net in self.nets:
                    pc, pf, pw, pz, pu = net(x, hgt)
                    outs.append((torch.sigmoid(pc).numpy(), torch.softmax(pf, dim=1).numpy(),
                                 torch.softmax(pw, dim=1).numpy(), torch.softmax(pz, dim=1).numpy(), torch.sigmoid(pu).numpy()))
        finally:
            torch.set_num_threads(prev)
        mean = tuple(np.mean([o[k] for o in outs], axis=0) for k in range(5))
        return (*mean, [inp[s][2] for s in sides])
