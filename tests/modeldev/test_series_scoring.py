"""The longitudinal scorer is strict: right side and family, every interval, sizes within 20 % or 3 mm."""

from modeldev.series_eval import direction, score_series

REC = {"series_id": "s1", "studies": [{"index": i, "study_uid": f"1.{i}", "date": d} for i, d in
                                      enumerate(["2023-01-10", "2024-02-01", "2025-03-01"])],
       "lesions": [{"lesion_id": "L1", "finding": "nodule", "side": "right", "zone": "upper",
                    "sizes_mm": [None, 8.0, 14.0], "kind": "growing"}]}


def _found(side: str = "right", sizes: tuple = (None, 8.5, 13.0), first: str = "2024-02-01") -> dict:
    hist = [{"study_uid": f"1.{i}", "state": "absent" if s is None else "present", "size_mm": s}
            for i, s in enumerate(sizes)]
    return {"finding": "nodule", "side": side, "zone": "upper", "change": "worsened", "history": hist,
            "first_seen": first, "size_mm": sizes[-1]}


def test_a_right_history_scores_every_interval_and_size():
    s = score_series(REC, [_found()])
    assert (s.direction, s.first_seen, s.size, s.extra) == ([True, True], [True], [True, True], 0)


def test_the_wrong_side_is_a_miss_and_an_extra_claim():
    s = score_series(REC, [_found(side="left")])
    assert (s.direction, s.first_seen, s.size, s.extra) == ([False, False], [False], [False, False], 1)


def test_a_size_off_by_more_than_20_percent_and_3_mm_fails_and_breaks_the_interval():
    s = score_series(REC, [_found(sizes=(None, 8.0, 9.0))])
    assert s.size == [True, False]
    assert s.direction == [True, False]  # 8 -> 9 is "stable", the label grew 8 -> 14


def test_direction_table():
    assert [direction(None, 5.0), direction(5.0, None), direction(10.0, 11.0), direction(10.0, 15.0),
            direction(15.0, 10.0), direction(None, None)] == ["appeared", "resolved", "stable", "grew", "shrank", None]


def test_a_recurrent_lesion_called_simply_new_fails():
    rec = {**REC, "lesions": [{**REC["lesions"][0], "sizes_mm": [9.0, None, 9.0], "kind": "recurrent"}]}
    plain = {**_found(sizes=(9.0, None, 9.0), first="2023-01-10"), "trajectory": "new since 2024-02-01"}
    said = {**plain, "trajectory": "recurrent: seen 2023, resolved 2024, now again"}
    assert (score_series(rec, [plain]).recurrent, score_series(rec, [said]).recurrent) == ([False], [True])
