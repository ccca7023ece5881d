"""unetzoo.instances: hand-computed cases, bad input, and agreement with StarDist and
Cellpose on the fixtures of fixtures.py (reference.json, written by make_reference.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.instances.fixtures import (
    DSB_IMAGES,
    DSB_PERTURBATIONS,
    REFERENCE_THRESHOLDS,
    SYNTHETIC_SEEDS,
    fingerprint,
    handmade_pairs,
    perturbed,
    read_label_png,
    synthetic_pair,
)
from unetzoo.errors import ConfigError, DataError, MetricError
from unetzoo.instances import (
    DSB_THRESHOLDS,
    InstanceScores,
    count_image,
    image_scores,
    label_overlap,
    match,
    object_errors,
    score_dataset,
)
from unetzoo.instances import matching as matching_module

REFERENCE = json.loads((Path(__file__).with_name("reference.json")).read_text())
HAND = handmade_pairs()
RATIOS = ("precision", "recall", "f1", "ap")
WHOLE = ("mean_ap", "pq", "sq", "dq", "aji", "aji_plus")


def at(scores: dict[str, Any], threshold: float) -> dict[str, Any]:
    return next(e for e in scores["per_threshold"] if e["threshold"] == threshold)


# --------------------------------------------------------------------------------------
# Hand-computed cases


def pq_case() -> tuple[np.ndarray, np.ndarray]:
    """6 x 8. True: T1 = rows 0-3 x cols 0-3 (16 px, id 1), T2 = rows 0-3 x cols 4-7 (16 px,
    id 2), T3 = row 5 x cols 0-1 (2 px, id 3). Predicted: P1 = rows 0-3 x cols 0-2 (12 px,
    id 10), P2 = rows 0-3 x cols 3-7 (20 px, id 20), P3 = row 5 x cols 6-7 (2 px, id 30).
    IoU: T1-P1 = 12/16 = 0.75; T1-P2 = 4/(16 + 20 - 4) = 0.125; T2-P2 = 16/20 = 0.8; T3 and
    P3 touch nothing."""
    true = np.zeros((6, 8), np.uint8)
    true[0:4, 0:4], true[0:4, 4:8], true[5, 0:2] = 1, 2, 3
    pred = np.zeros((6, 8), np.uint8)
    pred[0:4, 0:3], pred[0:4, 3:8], pred[5, 6:8] = 10, 20, 30
    return true, pred


def test_pq_aji_and_ap_by_hand() -> None:
    s = image_scores(*pq_case())
    # PQ: pairs with IoU > 0.5 are T1-P1 (0.75) and T2-P2 (0.8): TP 2, FP 1 (P3), FN 1 (T3).
    # SQ = (0.75 + 0.8) / 2 = 0.775; DQ = 2 / (2 + 1/2 + 1/2) = 2/3; PQ = 0.775 * 2/3.
    assert s["sq"] == pytest.approx(0.775, abs=1e-12)
    assert s["dq"] == pytest.approx(2 / 3, abs=1e-12)
    assert s["pq"] == pytest.approx(0.775 * 2 / 3, abs=1e-12)
    # AJI (Kumar): T1 takes P1 (0.75 > 0.125): C 12, U 16; T2 takes P2: C 16, U 20; T3 has
    # no partner: U + 2; P3 never taken: U + 2. AJI = 28 / 40 = 0.7. AJI+ pairs the same.
    assert s["aji"] == pytest.approx(0.7, abs=1e-12)
    assert s["aji_plus"] == pytest.approx(0.7, abs=1e-12)
    # AP = TP/(TP+FP+FN): 2/4 at 0.5 ... 0.75 (T1-P1 is 0.75 >= 0.75), 1/5 at 0.8 (only
    # T2-P2), 0 at 0.85 .. 0.95. Mean over the ten: (6 * 0.5 + 0.2) / 10 = 0.32.
    assert at(s, 0.75)["ap"] == 0.5 and at(s, 0.8)["ap"] == pytest.approx(0.2)
    assert at(s, 0.85)["tp"] == 0
    assert s["mean_ap"] == pytest.approx(0.32, abs=1e-12)
    # with IoU > t: 0.75 and 0.8 lose their pair: (5 * 0.5 + 0.2) / 10 = 0.27; PQ unchanged
    strict = image_scores(*pq_case(), strict=True)
    assert strict["mean_ap"] == pytest.approx(0.27, abs=1e-12)
    assert strict["pq"] == s["pq"]
    # Caicedo et al.: T1 has IoU > 0.1 with P1 and P2 (0.125): a split; P2 has IoU > 0.1
    # with T1 and T2: a merge. Missed = FN at 0.5 (T3), extra = FP (P3).
    assert (s["splits"], s["merges"], s["missed"], s["extra"]) == (1, 1, 1, 1)
    assert at(s, 0.5) == {"threshold": 0.5, "precision": 2 / 3, "recall": 2 / 3,
                          "f1": 2 / 3, "ap": 0.5, "tp": 2, "fp": 1, "fn": 1}


def test_object_errors_name_the_objects() -> None:
    errors = object_errors(*pq_case())
    assert errors.tp_true.tolist() == [1, 2] and errors.tp_pred.tolist() == [10, 20]
    assert errors.tp_iou.tolist() == [0.75, 0.8]
    assert errors.fn.tolist() == [3] and errors.fp.tolist() == [30]
    assert errors.split.tolist() == [1] and errors.merged.tolist() == [20]
    at_08 = object_errors(*pq_case(), threshold=0.8, strict=True).to_dict()
    assert at_08["tp_true"] == [] and at_08["fn"] == [1, 2, 3] and at_08["fp"] == [10, 20, 30]
    json.dumps(at_08)


@pytest.mark.parametrize("empty, expected", [("one", 1.0), ("zero", 0.0), ("skip", None)])
def test_empty_image_and_empty_prediction(empty: str, expected: float | None) -> None:
    s = image_scores(*HAND["empty_empty"], empty=empty)  # type: ignore[arg-type]
    for key in WHOLE:
        assert s[key] == expected, key
    for entry in s["per_threshold"]:
        assert [entry[k] for k in RATIOS] == [expected] * 4
        assert (entry["tp"], entry["fp"], entry["fn"]) == (0, 0, 0)
    assert (s["splits"], s["merges"], s["missed"], s["extra"]) == (0, 0, 0, 0)


@pytest.mark.parametrize("empty", ["one", "zero", "skip"])
def test_empty_truth_with_a_prediction_scores_zero(empty: str) -> None:
    s = image_scores(*HAND["empty_truth"], empty=empty)  # type: ignore[arg-type]
    # one predicted 4 x 4 square, no true object: TP 0, FP 1, FN 0; every ratio 0 (recall
    # 0/0 with an object present is 0, as StarDist); AJI: C 0, U 16
    assert at(s, 0.5) == {"threshold": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                          "ap": 0.0, "tp": 0, "fp": 1, "fn": 0}
    assert all(s[key] == 0.0 for key in WHOLE)
    assert (s["missed"], s["extra"]) == (0, 1)
    missed = image_scores(*HAND["empty_prediction"], empty=empty)  # type: ignore[arg-type]
    assert at(missed, 0.5)["fn"] == 1 and missed["mean_ap"] == 0.0 and missed["missed"] == 1


def test_one_object_perfect() -> None:
    s = image_scores(*HAND["one_perfect"])
    assert all(s[key] == 1.0 for key in WHOLE)
    assert all(e["ap"] == 1.0 and e["tp"] == 1 for e in s["per_threshold"])


def test_one_object_half_covered_is_iou_one_half() -> None:
    true, pred = HAND["one_half"]  # the 4 x 4 square against its left half: IoU 8/16
    assert label_overlap(true, pred).iou.tolist() == [0.5]
    s = image_scores(true, pred)
    assert at(s, 0.5)["tp"] == 1 and at(s, 0.55)["tp"] == 0
    assert s["mean_ap"] == pytest.approx(0.1)  # AP 1 at 0.5, 0 at the nine others
    strict = image_scores(true, pred, strict=True)
    assert at(strict, 0.5) == {"threshold": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0,
                               "ap": 0.0, "tp": 0, "fp": 1, "fn": 1}
    assert strict["mean_ap"] == 0.0
    # PQ needs IoU > 0.5 under both rules; AJI = 8 / 16
    assert s["pq"] == strict["pq"] == 0.0 and s["aji"] == s["aji_plus"] == 0.5


def test_a_split_object_and_the_tie_it_makes() -> None:
    true, pred = HAND["split_halves"]  # square id 7; its left half id 3, right half id 9
    s = image_scores(true, pred)
    # both halves have IoU 8/16 = 0.5 with the square: at 0.5 (>=) one of them is the pair
    assert at(s, 0.5) == {"threshold": 0.5, "precision": 0.5, "recall": 1.0, "f1": 2 / 3,
                          "ap": 0.5, "tp": 1, "fp": 1, "fn": 0}
    errors = object_errors(true, pred)
    assert errors.tp_true.tolist() == [7] and errors.split.tolist() == [7]
    assert sorted(errors.tp_pred.tolist() + errors.fp.tolist()) == [3, 9]
    assert errors.merged.size == 0
    assert at(image_scores(true, pred, strict=True), 0.5)["tp"] == 0
    # AJI: the square takes half 3 (tie: smallest id): C 8, U 16; half 9 unused: U + 8
    assert s["aji"] == pytest.approx(1 / 3) and s["aji_plus"] == pytest.approx(1 / 3)
    assert (s["splits"], s["merges"]) == (1, 0)


def test_a_merge_of_two_objects() -> None:
    true, pred = HAND["merge_two"]  # two 3 x 3 squares (ids 4, 6) predicted as one (id 2)
    s = image_scores(true, pred)
    # IoU 9/18 = 0.5 each: one pair at 0.5, the other true square missed
    assert at(s, 0.5) == {"threshold": 0.5, "precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                          "ap": 0.5, "tp": 1, "fp": 0, "fn": 1}
    assert (s["splits"], s["merges"], s["missed"], s["extra"]) == (0, 1, 1, 0)
    # AJI: both squares take the merged object: C 9 + 9, U 18 + 18 = 0.5. AJI+ pairs it
    # once: C 9, U 18 + the other square's 9 = 1/3
    assert s["aji"] == pytest.approx(0.5) and s["aji_plus"] == pytest.approx(1 / 3)
    assert object_errors(true, pred).merged.tolist() == [2]


def strips() -> tuple[np.ndarray, np.ndarray]:
    """One row of 14 pixels. True A = [0, 10) (id 1), B = [10, 14) (id 2); predicted
    X = [4, 13) (id 1), Y = [0, 4) (id 2). IoU: A-X = 6/13, A-Y = 4/10, B-X = 3/10."""
    true = np.zeros((1, 14), np.int32)
    true[0, :10], true[0, 10:] = 1, 2
    pred = np.zeros((1, 14), np.int32)
    pred[0, 4:13], pred[0, :4] = 1, 2
    return true, pred


def test_below_one_half_the_assignment_maximises_the_pairs_then_the_iou() -> None:
    ov = label_overlap(*strips())
    assert ov.dense_iou().tolist() == [[6 / 13, 4 / 10], [3 / 10, 0.0]]
    # at 0.3 taking the best pair first (A-X) leaves B alone; the optimum is A-Y and B-X
    m = match(ov, 0.3)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.true_index.tolist() == [0, 1] and m.pred_index.tolist() == [1, 0]
    assert m.sum_iou == pytest.approx(0.7)
    # without B the count is 1 either way: the larger IoU (A-X) is kept
    true, pred = strips()
    true[true == 2] = 0
    alone = match(label_overlap(true, pred), 0.3)
    assert alone.pred_index.tolist() == [0] and alone.iou.tolist() == [6 / 13]
    assert match(ov, 0.45).tp == 1 and match(ov, 0.5).tp == 0


def test_more_pairs_beat_a_larger_iou() -> None:
    # one row of 14 pixels: true A = [0, 10), B = [10, 14); predicted X = [3, 12),
    # Y = [0, 3). IoU A-X = 7/12, A-Y = 3/10, B-X = 2/11. At 0.15 the largest total IoU
    # is A-X alone (0.58 > 0.3 + 0.18); the most pairs are A-Y and B-X, which StarDist and
    # Cellpose choose
    true = np.zeros((1, 14), np.int32)
    true[0, :10], true[0, 10:] = 1, 2
    pred = np.zeros((1, 14), np.int32)
    pred[0, 3:12], pred[0, :3] = 1, 2
    m = match(label_overlap(true, pred), 0.15)
    assert (m.tp, m.fp, m.fn) == (2, 0, 0)
    assert m.sum_iou == pytest.approx(3 / 10 + 2 / 11)


@pytest.mark.parametrize("first, second, aji", [(4, 8, 5 / 30), (8, 4, 6 / 29)])
def test_aji_ties_go_to_the_smallest_id(first: int, second: int, aji: float) -> None:
    # one row of 24 pixels: true T = [0, 20); predicted P = [0, 5) (IoU 5/20) and
    # Q = [14, 24) (IoU 6/24): a tie at 0.25. T takes the smaller id: P gives C 5,
    # U 20 + Q's 10; Q gives C 6, U 24 + P's 5
    true = np.zeros((1, 24), np.int32)
    true[0, :20] = 1
    pred = np.zeros((1, 24), np.int32)
    pred[0, :5], pred[0, 14:] = first, second
    assert image_scores(true, pred)["aji"] == pytest.approx(aji, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64,
                                   np.float32])
def test_ids_and_types_do_not_change_the_scores(dtype: type) -> None:
    true, pred = pq_case()
    expected = image_scores(true, pred)
    true_ids = {1: 200, 2: 3, 3: 77}
    pred_ids = {10: 9, 20: 250, 30: 1}
    t = np.vectorize(lambda v: true_ids.get(int(v), 0))(true).astype(dtype)
    p = np.vectorize(lambda v: pred_ids.get(int(v), 0))(pred).astype(dtype)
    assert image_scores(t, p) == expected
    errors = object_errors(t, p)
    assert errors.tp_true.tolist() == [3, 200] and errors.fn.tolist() == [77]


def test_huge_ids_take_the_sorting_path() -> None:
    true, pred = pq_case()
    big_true = true.astype(np.int64) * (1 << 40)
    big_pred = pred.astype(np.uint64) * np.uint64(1 << 50)
    ov = label_overlap(big_true, big_pred)
    assert ov.true_ids.tolist() == [1 << 40, 2 << 40, 3 << 40]
    assert image_scores(big_true, big_pred) == image_scores(true, pred)


def test_the_sparse_pair_count_equals_the_dense_one(monkeypatch: pytest.MonkeyPatch) -> None:
    true, pred = synthetic_pair(13)
    dense = label_overlap(true, pred)
    monkeypatch.setattr(matching_module, "DENSE_PAIR_BINS", 0)
    sparse = label_overlap(true, pred)
    for key in ("rows", "cols", "inter", "union", "iou", "true_area", "pred_area"):
        np.testing.assert_array_equal(getattr(sparse, key), getattr(dense, key))
    assert dense.inter.sum() == np.count_nonzero((true > 0) & (pred > 0))


def test_mean_over_images_and_pooled() -> None:
    scores = InstanceScores()
    scores.update(*pq_case(), name="a")
    scores.update(*HAND["one_perfect"], name="b")
    summary = json.loads(json.dumps(scores.summary()))  # plain JSON
    mean, pooled = summary["mean_over_images"], summary["pooled"]
    # at 0.5: image a AP 2/4, image b 1/1 -> mean 0.75; pooled TP 3, FP 1, FN 1 -> 3/5
    assert at(mean, 0.5)["ap"] == pytest.approx(0.75)
    assert at(pooled, 0.5)["ap"] == pytest.approx(0.6)
    assert (at(pooled, 0.5)["tp"], at(mean, 0.5)["tp"]) == (3, 1.5)
    # PQ pooled: IoU 0.75 + 0.8 + 1 over 3 + 1/2 + 1/2; mean: (0.775 * 2/3 + 1) / 2
    assert pooled["pq"] == pytest.approx(2.55 / 4)
    assert mean["pq"] == pytest.approx((0.775 * 2 / 3 + 1) / 2)
    # AJI pooled: (28 + 16) / (40 + 16); counts summed / averaged
    assert pooled["aji"] == pytest.approx(44 / 56) and mean["aji"] == pytest.approx(0.85)
    assert (pooled["splits"], mean["splits"], pooled["n_true"]) == (1, 0.5, 4)
    assert summary["images"] == 2 and summary["conventions"]["threshold_rule"] == ">="
    assert set(summary["conventions"]) >= {"matching", "averaging", "empty", "aji", "pq"}
    rows = scores.per_image()
    assert [r["name"] for r in rows] == ["a", "b"]
    assert rows[0]["ap@0.5"] == 0.5 and rows[0]["tp@0.8"] == 1 and rows[1]["pq"] == 1.0


@pytest.mark.parametrize("empty, mean_ap", [("one", 1.0), ("zero", 0.5), ("skip", 1.0)])
def test_an_empty_image_in_the_mean(empty: str, mean_ap: float) -> None:
    scores = InstanceScores(empty=empty)  # type: ignore[arg-type]
    scores.update(*HAND["one_perfect"], name="object")
    row = scores.update(*HAND["empty_empty"], name="nothing")
    summary = scores.summary()
    assert summary["mean_over_images"]["mean_ap"] == mean_ap
    assert summary["pooled"]["mean_ap"] == 1.0  # the empty image adds no count
    assert summary["empty_images"] == 1
    assert row["mean_ap"] == {"one": 1.0, "zero": 0.0, "skip": None}[empty]


def test_other_thresholds_are_reported_and_mean_ap_stays_dsb() -> None:
    s = image_scores(*pq_case(), thresholds=(0.3, 0.77))
    assert [e["threshold"] for e in s["per_threshold"]] == [0.3, 0.77]
    assert at(s, 0.77)["tp"] == 1 and s["mean_ap"] == pytest.approx(0.32)
    counts = count_image(*pq_case(), thresholds=(0.3,))
    assert counts.thresholds == (0.3, *DSB_THRESHOLDS)


def test_bad_input_is_refused_in_one_line() -> None:
    good = np.zeros((4, 4), np.uint16)
    cases = [
        ((good, np.zeros((4, 5), np.uint16)), "4 x 4 but the predicted one is 4 x 5"),
        ((good, np.full((4, 4), 0.5)), "fractional values"),
        ((np.full((4, 4), -2, np.int32), good), "negative ids (16 pixels, lowest -2)"),
        ((np.zeros((2, 4, 4), np.int32), good), "3 dimension(s), shape (2, 4, 4)"),
        ((good, good > 0), "boolean mask"),
        ((good, np.full((4, 4), np.nan)), "NaN or infinite"),
        ((good.astype(str), good), "dtype <U"),
        ((good, np.full((4, 4), 2**63, np.uint64)), "ids of 2\\*\\*63 or more"),
    ]
    for (true, pred), words in cases:
        with pytest.raises(DataError, match="img.png: .*" + words.replace("(", r"\(")
                           .replace(")", r"\)")) as caught:
            image_scores(true, pred, name="img.png")
        assert "\n" not in str(caught.value)


def test_bad_options_and_states() -> None:
    with pytest.raises(ConfigError, match=r"IoU threshold 0.0 with IoU >= t"):
        InstanceScores(thresholds=(0.0,))
    with pytest.raises(ConfigError, match=r"IoU threshold 1.0 with IoU > t"):
        InstanceScores(thresholds=(1.0,), strict=True)
    with pytest.raises(ConfigError, match="empty rule 'nan'"):
        InstanceScores(empty="nan")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="repeat"):
        InstanceScores(thresholds=(0.5, 0.5))
    with pytest.raises(MetricError, match="no image was scored"):
        InstanceScores().summary()
    scores = InstanceScores()
    scores.update(*HAND["one_perfect"], name="x.png")
    with pytest.raises(DataError, match=r"x\.png: this image was already scored"):
        scores.update(*HAND["one_perfect"], name="x.png")
    with pytest.raises(DataError, match="2 true label images but 1"):
        score_dataset([HAND["one_perfect"][0]] * 2, [HAND["one_perfect"][1]])


def test_a_float_label_image_is_read_and_noted() -> None:
    scores = InstanceScores()
    true, pred = pq_case()
    scores.update(true.astype(np.float32), pred, name="f.tif")
    notes = scores.summary()["notes"]
    assert len(notes) == 1 and "true label images are float32 (first: f.tif)" in notes[0]
    assert scores.per_image()[0]["mean_ap"] == pytest.approx(0.32)


# --------------------------------------------------------------------------------------
# Agreement with StarDist 0.9.2 and Cellpose 4.2.1.1 (reference.json)
#
# Equal to 1e-9: TP, FP, FN at every threshold (0.1 and 0.3, where the assignment decides,
# and the DSB ten), precision, recall, F1, AP (StarDist's accuracy) and mean AP, per image
# and over a dataset both ways (StarDist by_image=True / False), with empty="zero". Where
# the conventions differ, documented and asserted as such: an image with nothing at all
# (StarDist 0, Cellpose NaN, unetzoo 1 by default: "zero" and "skip" reproduce them); PQ
# (ours IoU > 0.5, StarDist's >= 0.5: equal unless an IoU is exactly 0.5) and SQ, equal to
# float32 precision because StarDist 0.9.2 computes IoU in float32; Cellpose's AP is float32
# (compared after rounding ours to float32); Cellpose's AJI divides by the union of the two
# foregrounds and equals ours only when no object overlaps two objects of the other image.


def _close(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    return abs(ours - theirs) <= 1e-9


def check_against_reference(case: dict[str, Any], true: np.ndarray, pred: np.ndarray) -> int:
    """Assert every score the conventions share; return 1 when the AJI was compared."""
    assert fingerprint(true, pred) == case["fingerprint"], \
        f"{case['name']}: the fixture changed; rerun make_reference.py"
    sd, cp = case["stardist"], case["cellpose"]
    counts = count_image(true, pred, thresholds=REFERENCE_THRESHOLDS)
    zero = counts.scores(REFERENCE_THRESHOLDS, "zero")  # StarDist scores 0/0 as 0
    for k, entry in enumerate(zero["per_threshold"]):
        assert (entry["tp"], entry["fp"], entry["fn"]) == \
            (sd["tp"][k], sd["fp"][k], sd["fn"][k]), (case["name"], entry["threshold"])
        for ours, theirs in (("precision", "precision"), ("recall", "recall"),
                             ("f1", "f1"), ("ap", "accuracy")):
            assert _close(entry[ours], float(sd[theirs][k])), (case["name"], ours)
    dsb = [REFERENCE_THRESHOLDS.index(t) for t in DSB_THRESHOLDS]
    assert _close(zero["mean_ap"], math.fsum(sd["accuracy"][k] for k in dsb) / 10)
    # PQ: ours pairs IoU > 0.5 (Kirillov), StarDist's panoptic_quality at 0.5 IoU >= 0.5;
    # they differ only when an IoU is exactly 0.5, where StarDist's equals ours with >=
    ov = label_overlap(true, pred)
    k05 = REFERENCE_THRESHOLDS.index(0.5)
    # StarDist 0.9.2 computes IoU in float32: its IoU sums agree to float32 precision
    float32 = {"rel": 1e-6, "abs": 1e-7}
    if not np.any(ov.iou == 0.5):
        assert zero["pq"] == pytest.approx(sd["panoptic_quality"][k05], **float32)
        assert zero["sq"] == pytest.approx(sd["mean_matched_score"][k05], **float32)
    else:
        m = match(ov, 0.5)
        assert m.sum_iou / (m.tp + m.fp / 2 + m.fn / 2) == \
            pytest.approx(sd["panoptic_quality"][k05], **float32)
        assert zero["pq"] < sd["panoptic_quality"][k05]
    # Cellpose: counts; AP in float32 (it divides in float32), NaN where nothing at all
    skip = counts.scores(DSB_THRESHOLDS, "skip")
    for k, entry in enumerate(skip["per_threshold"]):
        assert (entry["tp"], entry["fp"], entry["fn"]) == (cp["tp"][k], cp["fp"][k],
                                                           cp["fn"][k])
        if cp["ap"][k] is None:
            assert entry["ap"] is None
        else:
            assert np.float32(entry["ap"]) == np.float32(cp["ap"][k]), case["name"]
    # Cellpose's AJI (one-to-one matches over the union of both foregrounds) equals AJI and
    # AJI+ when no object overlaps two objects of the other image
    lonely = max(np.bincount(ov.rows).max(initial=0), np.bincount(ov.cols).max(initial=0)) <= 1
    if lonely and cp["aji"] is not None:
        assert _close(skip["aji"], cp["aji"]) and _close(skip["aji_plus"], cp["aji"])
    if cp["aji"] is None:
        assert skip["aji"] is None
    return int(lonely)


def test_agrees_with_stardist_and_cellpose_on_the_synthetic_and_handmade_pairs() -> None:
    cases = {c["name"]: c for c in REFERENCE["cases"] if c["kind"] != "dsb2018"}
    pairs = {f"seed {s}": synthetic_pair(s) for s in SYNTHETIC_SEEDS} | HAND
    assert set(cases) == set(pairs)
    aji_compared = sum(check_against_reference(cases[n], *pairs[n]) for n in pairs)
    assert aji_compared >= 8


def test_the_documented_differences_on_the_handmade_pairs() -> None:
    cases = {c["name"]: c for c in REFERENCE["cases"]}
    # nothing at all: StarDist 0, Cellpose NaN (null), unetzoo 1 by default
    assert cases["empty_empty"]["stardist"]["accuracy"][2] == 0
    assert cases["empty_empty"]["cellpose"]["ap"][0] is None
    assert image_scores(*HAND["empty_empty"])["mean_ap"] == 1.0
    # a split: Cellpose's AJI divides by the foreground union (16 px), AJI/AJI+ count the
    # unused half again (24 px)
    assert cases["split_halves"]["cellpose"]["aji"] == 0.5
    assert image_scores(*HAND["split_halves"])["aji"] == pytest.approx(1 / 3)


def test_agrees_with_stardist_over_the_dataset_both_ways() -> None:
    pairs = [synthetic_pair(s) for s in SYNTHETIC_SEEDS]
    summary = score_dataset([t for t, _ in pairs], [p for _, p in pairs],
                            thresholds=REFERENCE_THRESHOLDS, empty="zero")
    by_image = REFERENCE["stardist_dataset_synthetic"]["by_image"]
    pooled = REFERENCE["stardist_dataset_synthetic"]["pooled"]
    for k, t in enumerate(REFERENCE_THRESHOLDS):
        ours_mean, ours_pooled = at(summary["mean_over_images"], t), at(summary["pooled"], t)
        for ours, theirs in (("precision", "precision"), ("recall", "recall"), ("f1", "f1"),
                             ("ap", "accuracy")):
            assert _close(ours_mean[ours], by_image[theirs][k]), (t, ours)
            assert _close(ours_pooled[ours], pooled[theirs][k]), (t, ours)
        # StarDist's by_image counts are sums, as ours pooled
        for key in ("tp", "fp", "fn"):
            assert ours_pooled[key] == by_image[key][k] == pooled[key][k]


def test_agrees_on_dsb2018_labels(shared_dataset: Any) -> None:
    labels = shared_dataset("dsb2018") / "labels"
    cases = {c["name"]: c for c in REFERENCE["cases"] if c["kind"] == "dsb2018"}
    assert len(cases) == len(DSB_IMAGES) * len(DSB_PERTURBATIONS)
    aji_compared = 0
    for file in DSB_IMAGES:
        true = read_label_png(labels / file)
        for kind in DSB_PERTURBATIONS:
            aji_compared += check_against_reference(cases[f"{file} {kind}"], true,
                                                    perturbed(true, kind))
    assert aji_compared >= 4  # the eroded ones at least


def test_the_package_sits_low_in_the_import_layers() -> None:
    code = ("import sys, json, unetzoo.instances\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('unetzoo', 'torch', 'PIL'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert json.loads(out.stdout) == ["unetzoo", "unetzoo.errors", "unetzoo.instances",
                                      "unetzoo.instances.labels",
                                      "unetzoo.instances.matching",
                                      "unetzoo.instances.targets", "unetzoo.version"]
