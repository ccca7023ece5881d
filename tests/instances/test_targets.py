"""unetzoo.instances.targets and labels: hand-checked targets, encode -> decode round trips,
and the choice of thresholds on a tiny set."""

from __future__ import annotations

import numpy as np
import pytest

from unetzoo.errors import ConfigError, DataError
from unetzoo.instances import image_scores
from unetzoo.instances.labels import (
    Thresholds,
    choose_thresholds,
    decode,
    object_maps,
)
from unetzoo.instances.targets import (
    ACTIVATIONS,
    LOSSES,
    REPRESENTATIONS,
    compact_labels,
    encode,
    get_representation,
)

NAMES = tuple(REPRESENTATIONS)


def discs(shape: tuple[int, int], centres: list[tuple[float, float]], radius: float,
          ids: list[int] | None = None, dtype: type = np.int32) -> np.ndarray:
    """Discs painted in turn (a later disc covers an earlier one where they overlap)."""
    labels = np.zeros(shape, dtype)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    for k, (cy, cx) in enumerate(centres):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k + 1 if ids is None else ids[k]
    return labels


SEPARATE = discs((64, 80), [(15, 15), (15, 50), (45, 30), (48, 65)], 9)
# a row of four discs, each overlapping the next by 4 px (touching along a cut), and a
# cluster of three around a point: every object touches another
TOUCHING = discs((64, 96), [(16, 12), (16, 26), (16, 40), (16, 54), (44, 30), (44, 44),
                            (33, 37)], 8)


def ap_at(true: np.ndarray, pred: np.ndarray, threshold: float) -> float:
    scores = image_scores(true, pred, thresholds=(threshold,))
    return next(e["ap"] for e in scores["per_threshold"] if e["threshold"] == threshold)


# --------------------------------------------------------------------------------------
# Tables


@pytest.mark.parametrize("name", NAMES)
def test_each_table_fits_its_targets(name: str) -> None:
    rep = get_representation(name)
    targets, weights = encode(TOUCHING, name)
    assert targets.dtype == np.float32 and targets.shape == (rep.num_channels, 64, 96)
    assert weights is None and not rep.weighted
    table = rep.table()
    assert [row["index"] for row in table] == list(range(rep.num_channels))
    for row in table:
        assert row["activation"] in ACTIVATIONS and set(row["losses"]) <= set(LOSSES)
        assert (row["group"] is not None) == (row["activation"] == "softmax")
        assert ("ce" in row["losses"]) == (row["activation"] == "softmax")


def test_unknown_representation_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown instance representation 'stardist'"):
        encode(SEPARATE, "stardist")
    with pytest.raises(ConfigError, match="three_class"):
        decode(np.zeros((3, 4, 4), np.float32), "nope")


def test_bad_label_images_are_refused() -> None:
    with pytest.raises(DataError, match="3 dimension"):
        encode(np.zeros((2, 8, 8), np.int32), "three_class")
    with pytest.raises(DataError, match="boolean mask"):
        encode(np.zeros((8, 8), bool), "distance")
    with pytest.raises(DataError, match="fractional"):
        encode(np.full((4, 4), 0.5), "hover")


# --------------------------------------------------------------------------------------
# Targets, by hand


def two_blocks() -> np.ndarray:
    """5 x 9: object 7 = rows 1-3 x cols 1-4, object 3 = rows 1-3 x cols 5-7 (touching
    along cols 4 | 5)."""
    labels = np.zeros((5, 9), np.uint16)
    labels[1:4, 1:5] = 7
    labels[1:4, 5:8] = 3
    return labels


def test_three_class_boundary_is_the_own_edge_where_labels_change() -> None:
    targets = encode(two_blocks(), "three_class").targets
    assert np.array_equal(targets.sum(0), np.ones((5, 9)))  # one-hot
    interior = np.zeros((5, 9), np.float32)
    interior[2, 2:4] = 1  # object 7 keeps cols 2-3 of its middle row (col 4 meets object 3)
    interior[2, 6] = 1  # object 3 keeps col 6
    assert np.array_equal(targets[1], interior)
    objects = two_blocks() > 0
    assert np.array_equal(targets[2], (objects & (interior == 0)).astype(np.float32))
    assert np.array_equal(targets[0], (~objects).astype(np.float32))


def test_contour_touch_marks_both_sides_of_a_shared_edge_and_one_pixel_gaps() -> None:
    targets = encode(two_blocks(), "contour_touch").targets
    touching = np.zeros((5, 9), np.float32)
    touching[0:5, 4:6] = 1  # the 3 x 3 neighbourhood of cols 4 and 5 holds both objects,
    # also in the background rows 0 and 4 just outside the shared edge
    assert np.array_equal(targets[2], touching)
    assert np.array_equal(targets[1], encode(two_blocks(), "three_class").targets[2])
    gap = np.zeros((3, 7), np.int32)
    gap[:, 0:3], gap[:, 4:7] = 1, 2  # one background column between two objects
    touch = encode(gap, "contour_touch").targets[2]
    assert np.array_equal(touch[:, 3], np.ones(3)) and touch[:, [0, 1, 5, 6]].sum() == 0


def test_distance_is_measured_to_the_own_edge_and_peaks_at_one() -> None:
    labels = np.zeros((9, 16), np.int32)
    labels[1:8, 1:8] = 1  # a 7 x 7 square: rings 1, 2, 3, 4 from its edge
    labels[1:8, 8:15] = 2  # its twin touching it on the right
    distance = encode(labels, "distance").targets[1]
    ring = np.array([1, 2, 3, 4, 3, 2, 1]) / 4
    assert np.allclose(distance[4, 1:8], ring) and np.allclose(distance[4, 8:15], ring)
    assert np.allclose(distance[1:8, 4], ring)
    assert distance[labels == 0].max() == 0 and distance[4, 7] == distance[4, 8] == 0.25
    for k in (1, 2):
        assert distance[labels == k].max() == 1.0


def test_distance_per_object_maximum_is_one_for_all_sizes() -> None:
    labels = discs((80, 80), [(20, 20), (22, 31), (60, 60)], 10)
    labels[70:72, 5:9] = 9  # a thin object: every pixel is edge
    labels[40, 40] = 12  # one pixel
    compact, count = compact_labels(labels)
    distance = encode(labels, "distance").targets[1]
    for k in range(1, count + 1):
        assert distance[compact == k].max() == pytest.approx(1.0)
    assert (distance[labels > 0] > 0).all()


def test_hover_offsets_are_scaled_per_side_and_jump_between_objects() -> None:
    targets = encode(two_blocks(), "hover").targets
    horizontal, vertical = targets[1], targets[2]
    # object 7: cols 1-4, centroid col 2.5 -> -1, -1/3, 1/3, 1; object 3: cols 5-7 -> -1, 0, 1
    assert np.allclose(horizontal[2, 1:8], [-1, -1 / 3, 1 / 3, 1, -1, 0, 1])
    assert np.allclose(vertical[1:4, 2], [-1, 0, 1]) and np.allclose(vertical[1:4, 6],
                                                                     [-1, 0, 1])
    assert horizontal[two_blocks() == 0].max() == 0 == np.abs(vertical[two_blocks() == 0]).max()


def test_ids_need_not_be_consecutive() -> None:
    wide = TOUCHING.astype(np.uint16)
    wide[wide > 0] = np.array([0, 65535, 4, 300, 9, 77, 12, 5000], np.uint16)[TOUCHING[
        TOUCHING > 0]]
    big = TOUCHING.astype(np.int64) * 10**12  # beyond a look-up table: relabelled by sort
    for name in NAMES:
        expected = encode(TOUCHING, name).targets
        assert np.array_equal(encode(wide, name).targets, expected), name
        assert np.array_equal(encode(big, name).targets, expected), name
        pred = decode(expected, name)
        assert pred.dtype == np.int32
        assert set(np.unique(pred)) == set(range(int(pred.max()) + 1))


def test_an_empty_patch_encodes_to_background_and_decodes_to_nothing() -> None:
    empty = np.zeros((16, 20), np.uint8)
    for name in NAMES:
        targets = encode(empty, name).targets
        if name == "three_class":
            assert np.array_equal(targets[0], np.ones((16, 20))) and targets[1:].sum() == 0
        else:
            assert not targets.any()
        pred = decode(targets, name)
        assert pred.shape == (16, 20) and pred.dtype == np.int32 and not pred.any()


def test_the_patch_edge_is_not_an_object_edge() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[:, :5] = 1  # cut by the patch on three sides
    boundary = encode(labels, "three_class").targets[2]
    assert np.array_equal(np.flatnonzero(boundary.any(0)), [4])  # only col 4 (next to 0)
    distance = encode(labels, "distance").targets[1]
    assert np.allclose(distance[5, :5], [1, 0.8, 0.6, 0.4, 0.2])
    full = encode(np.ones((6, 6), np.int32), "distance").targets
    assert np.array_equal(full[1], np.ones((6, 6)))


# --------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", ["separate", "touching"])
def test_decoding_the_encoded_truth_recovers_every_object(name: str, case: str) -> None:
    labels = SEPARATE if case == "separate" else TOUCHING
    pred = decode(encode(labels, name).targets, name)
    assert int(pred.max()) == int(labels.max())
    assert ap_at(labels, pred, 0.9) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_a_single_pixel_object_survives_unless_min_size_removes_it(name: str) -> None:
    labels = SEPARATE.copy()
    labels[60, 5] = 9
    targets = encode(labels, name).targets
    pred = decode(targets, name)
    assert ap_at(labels, pred, 0.9) == 1.0 and int(pred.max()) == 5
    pred = decode(targets, name, Thresholds(min_size=2))
    assert int(pred.max()) == 4 and pred[60, 5] == 0


def test_decode_refuses_outputs_that_do_not_fit() -> None:
    with pytest.raises(DataError, match="3 x H x W"):
        decode(np.zeros((2, 8, 8), np.float32), "three_class")
    with pytest.raises(DataError, match="float"):
        decode(np.zeros((2, 8, 8), np.int32), "distance")
    with pytest.raises(DataError, match="NaN"):
        decode(np.full((2, 8, 8), np.nan, np.float32), "distance")
    with pytest.raises(ConfigError, match="seed threshold"):
        Thresholds(seed=1.0)
    with pytest.raises(ConfigError, match="min_size"):
        decode(np.zeros((2, 8, 8), np.float32), "distance", {"min_size": -1})
    with pytest.raises(ConfigError, match="unknown threshold"):
        decode(np.zeros((2, 8, 8), np.float32), "distance", {"seeds": 0.5})


def test_object_maps_are_probabilities() -> None:
    for name in NAMES:
        foreground, seed = object_maps(encode(TOUCHING, name).targets, name)
        assert foreground.shape == seed.shape == TOUCHING.shape
        assert np.array_equal(foreground > 0.5, TOUCHING > 0), name
        assert seed.min() >= 0 and seed.max() <= 1 and not seed[TOUCHING == 0].any(), name


def test_a_seed_per_object_splits_a_merged_foreground() -> None:
    """Two touching discs whose predicted foreground is one blob: the seeds (distance
    peaks) split it along the valley, each half taking its own pixels."""
    labels = discs((40, 60), [(20, 20), (20, 36)], 10)
    targets = encode(labels, "distance").targets
    targets[0] = np.where(labels > 0, 0.9, 0.05)
    pred = decode(targets, "distance", Thresholds(seed=0.6))
    assert int(pred.max()) == 2 and ap_at(labels, pred, 0.9) == 1.0


# --------------------------------------------------------------------------------------
# Choosing thresholds


def tiny_set() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two images of 'distance' outputs: the objects at foreground 0.8, plus a false blob
    of 30 px at foreground 0.45 (a high distance) in the first image."""
    outputs, truths = [], []
    for shift in (0, 7):
        labels = discs((64, 64), [(16, 16 + shift), (16, 30 + shift), (46, 40)], 8)
        targets = encode(labels, "distance").targets
        targets[0] *= 0.8
        if shift == 0:
            blob = discs((64, 64), [(50, 10)], 3) > 0
            targets[0][blob], targets[1][blob] = 0.45, 0.9
        outputs.append(targets)
        truths.append(labels)
    return outputs, truths


def test_choose_thresholds_finds_the_foreground_level_between_blob_and_objects() -> None:
    outputs, truths = tiny_set()
    choice = choose_thresholds(outputs, truths, "distance",
                               {"foreground": [0.3, 0.5, 0.7], "seed": [0.5],
                                "min_size": [0]})
    # 0.3 and its midpoint 0.4 keep the blob (a false positive in image 1: AP 3/4 there)
    assert choice.thresholds == Thresholds(0.5, 0.5, 0)
    assert choice.mean_ap == choice.ap50 == 1.0 and choice.images == 2
    tried = {(r["foreground"], r["min_size"]): r["ap50"] for r in choice.tried}
    assert tried[(0.3, 0)] == pytest.approx((0.75 + 1.0) / 2)
    assert tried[(0.4, 0)] == pytest.approx((0.75 + 1.0) / 2)
    assert choice.to_dict()["thresholds"] == {"foreground": 0.5, "seed": 0.5, "min_size": 0}


def test_choose_thresholds_can_remove_small_objects_instead() -> None:
    outputs, truths = tiny_set()
    choice = choose_thresholds(outputs, truths, "distance",
                               {"foreground": [0.3], "seed": [0.5], "min_size": [0, 40, 500]},
                               objective="ap50")
    # the blob (29 px) goes at 40; 500 would remove the discs (~200 px) too
    assert choice.thresholds == Thresholds(0.3, 0.5, 40) and choice.ap50 == 1.0
    scores = {r["min_size"]: r["ap50"] for r in choice.tried}
    assert scores[0] == pytest.approx(0.875) and scores[500] == 0.0


def test_choose_thresholds_refuses_bad_input() -> None:
    outputs, truths = tiny_set()
    with pytest.raises(DataError, match="no validation image"):
        choose_thresholds([], [], "distance")
    with pytest.raises(DataError, match="2 outputs but 1"):
        choose_thresholds(outputs, truths[:1], "distance")
    with pytest.raises(ConfigError, match="objective"):
        choose_thresholds(outputs, truths, "distance", objective="f1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown grid key"):
        choose_thresholds(outputs, truths, "distance", {"probability": [0.5]})
    with pytest.raises(ConfigError, match="foreground threshold"):
        choose_thresholds(outputs, truths, "distance", {"foreground": [1.5]})
    with pytest.raises(DataError, match="true labels are"):
        choose_thresholds(outputs, [t[:10] for t in truths], "distance")


def test_each_representation_names_its_loss_terms() -> None:
    assert get_representation("hover").loss_text() == \
        "hover: foreground bce+dice, horizontal mse, vertical mse"
    assert get_representation("three_class").loss_text() == "three_class: classes ce"
