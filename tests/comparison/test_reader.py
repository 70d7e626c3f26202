"""The learned hemithorax reader: its inputs, its shipped weights, and the engine without it."""

from __future__ import annotations

import numpy as np
import pytest

from comparison import CompareContext, RegistrationEngine
from comparison import registration
from comparison.reader import CHANNELS, CROP_H, CROP_W, WEIGHTS, Reader, hemithorax_boxes, lung_inputs


def _chest(h: int = 240, w: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A symmetric chest: two dark lungs in a denser body; masks of the right (image-left) and left lung."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.full((h, w), 0.7, np.float32)
    right = ((yy - 120) / 80) ** 2 + ((xx - 78) / 40) ** 2 < 1
    left = ((yy - 120) / 80) ** 2 + ((xx - (w - 1 - 78)) / 40) ** 2 < 1
    img[right | left] = 0.3
    img += 0.05 * np.sin(yy / 5.0)  # ribs, the same on both sides
    return img, right, left


def test_left_lung_is_presented_mirrored_like_the_right() -> None:
    """One set of weights reads both lungs: the left lung's crop is the right lung's crop of the
    mirrored chest (lateral wall on the same side), so a lesion at the lateral edge of either
    lung lands on the same crop pixels."""
    img, right, left = _chest()
    cur = img.copy()
    cur[100:112, 42:50] += 0.2  # lateral edge of the patient's right lung (image left)
    mirrored = cur[:, ::-1].copy()
    spacing = 1.5
    a = lung_inputs(cur, img, right, left, right | left, 127.5, spacing)
    b = lung_inputs(mirrored, img[:, ::-1].copy(), left[:, ::-1], right[:, ::-1], (right | left)[:, ::-1], 127.5, spacing)
    xa, ha, _ = a["right"]
    xb, hb, _ = b["left"]
    assert xa.shape == (CHANNELS, CROP_H, CROP_W)
    assert ha == pytest.approx(hb)
    assert np.abs(xa[:3] - xb[:3]).max() < 0.05  # current, prior, difference
    assert xa[2].max() > 0.5  # the change is in the difference channel
    assert np.abs(b["right"][0][2]).max() < 0.05  # and not in the other lung's


def test_crop_reaches_the_lung_base_when_the_mask_stops_short_or_leaks() -> None:
    """The lungs of `_chest` span rows 40..200. A right mask cut at row 110 (a dense lower lung)
    and a left mask that leaks to the image's bottom (into the abdomen) still give each lung
    rows close to 40..200, read off the image, not off the masks."""
    img, right, left = _chest()
    cut = right.copy()
    cut[110:] = False
    leak = left.copy()
    leak[120:, 150:230] = True
    boxes = hemithorax_boxes(img, cut, leak)
    for side in ("right", "left"):
        top, bot, _, _ = boxes[side]
        assert abs(top - 40) <= 12, (side, top)
        assert abs(bot - 200) <= 12, (side, bot)
    # and with the true masks nearly the same rows: a broken mask moves them by a few pixels at most
    true = hemithorax_boxes(img, right, left)
    assert abs(true["right"][1] - boxes["right"][1]) <= 8


def test_effusion_on_one_side_stays_inside_that_sides_crop() -> None:
    """A dense base on one side (an effusion up to row 150) stops that side's profile early; its
    crop still reaches near the other side's base, so the effusion is read."""
    img, right, left = _chest()
    img[150:205, 30:120] = np.maximum(img[150:205, 30:120], 0.68)  # the patient's right base white
    boxes = hemithorax_boxes(img, right, left)
    other = boxes["left"][1]
    assert boxes["right"][1] >= other - 0.15 * (other - boxes["left"][0])


def test_reader_weights_ship_and_read_both_lungs() -> None:
    assert WEIGHTS.is_file()
    img, right, left = _chest()
    eng = RegistrationEngine()
    al = eng.align(img, img.copy())
    reads = Reader().read(al, 1.6)
    assert [r.side for r in reads] == ["right", "left"]
    for r in reads:
        assert 0.0 <= r.p_change <= 1.0 and 0.0 <= r.p_urgent <= 1.0


def test_reader_calls_a_pair_of_one_image_unchanged_and_a_new_pneumothorax_changed_on_its_side() -> None:
    """The shipped weights, on a cxrpairs dev pair (never a held-out one): the current against
    itself is no change in either lung; against its prior, the labelled lung is changed."""
    from benchmarks.change_engine import prepared_pair
    from benchmarks.cxrpairs import grid, make_pair
    from comparison import thresholds as T

    spec = next(s for s in grid("dev") if s.finding == "pneumothorax" and s.change == "new")
    pair = make_pair(spec, scale=600 / 2200)
    cur, pri = prepared_pair(pair)
    eng, reader = RegistrationEngine(), Reader()
    same = reader.read(eng.align(cur.pixels, cur.pixels.copy()), 1.5)
    assert [r.p_change < T.READER_CHANGE_P for r in same] == [True, True], same
    reads = {r.side: r for r in reader.read(eng.align(cur.pixels, pri.pixels), 1.5)}
    assert reads[spec.side].p_change >= T.READER_CHANGE_P, reads


def test_engine_names_the_reader_in_its_result() -> None:
    img, _, _ = _chest()
    r = RegistrationEngine().compare(img, img.copy(), CompareContext(pixel_spacing_mm=1.6)).result
    assert "hemithorax-cnn" in r.model
    assert "reader " in r.model_version


def test_engine_without_its_reader_says_so_and_still_compares(monkeypatch, tmp_path) -> None:
    """A missing weights file (a real one: nothing is faked but its path) goes through the real
    load, which fails; the engine says so and the sign rules type the changes."""
    from comparison import reader

    monkeypatch.setattr(reader, "WEIGHTS", tmp_path / "missing_reader_weights.pt")
    monkeypatch.setattr(registration, "_READER", None)  # a fresh process: nothing loaded yet
    monkeypatch.setattr(registration, "_READER_ERROR", None)
    img, _, _ = _chest()
    r = RegistrationEngine().compare(img, img.copy(), CompareContext(pixel_spacing_mm=1.6)).result
    assert r.has_prior
    assert any("learned reader is unavailable (FileNotFoundError" in n for n in r.notes), r.notes
    assert "hemithorax-cnn" not in r.model


def _f(finding: str, side: str, change: str, urgent: bool, zone: str = "upper"):
    from priorwatch.vocabulary import FindingResult

    return FindingResult(finding=finding, side=side, zone=zone, change=change, urgent=urgent, confidence=0.6)


def test_an_urgent_finding_of_either_reader_is_kept() -> None:
    reader = [_f("consolidation", "right", "new", False)]
    rules = [_f("pneumothorax", "left", "new", True), _f("nodule", "right", "new", False)]
    out, kept = registration._urgent_from_either(reader, rules)
    assert kept == 1
    assert [(f.finding.value, f.side.value, f.urgent) for f in out] == [
        ("pneumothorax", "left", True), ("consolidation", "right", False)]


def test_rules_urgent_on_a_side_the_reader_already_flagged_is_not_doubled() -> None:
    reader = [_f("pneumothorax", "left", "worsened", True)]
    rules = [_f("pneumothorax", "left", "new", True)]
    out, kept = registration._urgent_from_either(reader, rules)
    assert kept == 0 and len(out) == 1 and out[0].change.value == "worsened"


def test_reading_backwards_in_time_mirrors_the_change_word() -> None:
    """With the swap average, reading (prior -> current) and (current -> prior) give the same
    change probability and opposite words: new <-> resolved, worsened <-> improved."""
    from dataclasses import replace

    img, right, left = _chest()
    cur = img.copy()
    cur[60:80, 50:70] += 0.25  # an opacity in the right upper lung, present now only
    al = RegistrationEngine().align(cur, img.copy())
    back = replace(al, cw=al.mapped, mapped=al.cw)
    reader = Reader()
    fwd, bwd = reader.read(al, 1.6, swap_tta=True), reader.read(back, 1.6, swap_tta=True)
    opposite = {"new": "resolved", "resolved": "new", "worsened": "improved", "improved": "worsened"}
    for a, b in zip(fwd, bwd):
        assert a.p_change == pytest.approx(b.p_change, abs=1e-5)
        assert a.finding == b.finding and a.zone == b.zone
        assert a.change == opposite[b.change]


def test_only_the_rules_apical_pneumothorax_is_kept_beside_the_reader() -> None:
    """The rules' basal "new effusion" and lower-zone "pneumothorax" beside the reader were false
    on dev; their apical pneumothorax is the safety net that stays."""
    reader = [_f("mass", "left", "new", False)]
    rules = [_f("effusion", "left", "new", True, "lower"), _f("effusion", "right", "new", True, "lower"),
             _f("pneumothorax", "right", "new", True, "lower"), _f("pneumothorax", "left", "new", True, "upper")]
    out, kept = registration._urgent_from_either(reader, rules)
    assert kept == 1
    assert [(f.finding.value, f.side.value, f.zone.value) for f in out] == [
        ("pneumothorax", "left", "upper"), ("mass", "left", "upper")]


def test_engine_reads_with_the_reader_it_is_given_and_leaves_the_shipped_one(tmp_path) -> None:
    """`RegistrationEngine(reader=...)` (how `reader_tune --full` scores other weights) reads with
    those weights; an engine built without one still reads with the shipped weights."""
    import torch

    from comparison.reader import build_net

    other = tmp_path / "other_reader.pt"
    torch.manual_seed(3)
    torch.save(build_net().state_dict(), other)  # untrained: other bytes, so another version hash
    mine = Reader(other)
    shipped = Reader()
    assert mine.version != shipped.version
    img, _, _ = _chest()
    ctx = CompareContext(pixel_spacing_mm=1.6)
    r_mine = RegistrationEngine(reader=mine).compare(img, img.copy(), ctx).result
    r_default = RegistrationEngine().compare(img, img.copy(), ctx).result
    assert f"reader {mine.version}" in r_mine.model_version
    assert f"reader {shipped.version}" in r_default.model_version


def _lung_read(side: str, p_change: float, finding: str, change: str, p_urgent: float):
    from comparison.reader import LungRead

    return LungRead(side, p_change, finding, 0.9, change, 0.8, "lower", 0.9, p_urgent, (0, 0, 10, 10))


def test_the_tone_mapped_reading_decides_the_change_and_urgency_is_the_higher_of_both() -> None:
    """Engine 0.4.7 reads the pair twice. The tone-mapped reading says what changed; its urgency
    is never lower than the quadratic-matched reading's (the urgent head was calibrated on that
    one: stop 17's tone map alone lost a new 123 mm effusion's flag)."""
    plain = [_lung_read("right", 0.2, "effusion", "new", 0.7), _lung_read("left", 0.9, "nodule", "new", 0.1)]
    toned = [_lung_read("right", 0.8, "effusion", "worsened", 0.2), _lung_read("left", 0.3, "mass", "new", 0.5)]
    out = registration._toned_reads(plain, toned)
    assert [(r.side, r.p_change, r.finding, r.change, r.p_urgent) for r in out] == [
        ("right", 0.8, "effusion", "worsened", 0.7), ("left", 0.3, "mass", "new", 0.5)]


def test_the_tone_map_takes_up_a_tone_curve_but_not_a_new_opacity() -> None:
    """A prior whose intensities are the current's through another (monotone, non-quadratic) tone
    curve is mapped back onto the current inside the lungs; a large new basal opacity on the
    current is left out of the fit, so the map does not paint it onto the prior."""
    img, right, left = _chest()
    roi = right | left
    yy, _ = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    img[roi] += (0.25 * (yy - 120) / 80)[roi]  # the lungs denser towards their bases, as on a film
    rng = np.random.default_rng(5)
    cur = np.clip(img + rng.normal(0, 0.01, img.shape).astype(np.float32), 0, 1)
    prior = (cur ** 2.2 * 0.6 + 0.2).astype(np.float32)  # another detector's tone curve
    cur_new = cur.copy()
    fluid = right & (yy > 150)  # a new basal opacity in the right lung, ~30 % of its height
    cur_new[fluid] += 0.3
    clear = roi & ~fluid
    same = registration._match_tone(cur, prior, roi)
    assert np.abs(same - cur)[clear].mean() < 0.2 * np.abs(prior - cur)[clear].mean()
    assert np.median((cur - same)[fluid]) == pytest.approx(0.0, abs=0.05)
    changed = registration._match_tone(cur_new, prior, roi)
    assert np.abs(changed - cur_new)[clear].mean() < 0.2 * np.abs(prior - cur_new)[clear].mean()
    # the change stays in the difference: the new opacity is ~0.3 denser than the mapped prior
    assert np.median((cur_new - changed)[fluid]) == pytest.approx(0.3, abs=0.05)
