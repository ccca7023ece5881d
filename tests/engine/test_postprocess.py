"""Post-processing of label maps on hand-made cases."""

from __future__ import annotations

import numpy as np

from unetzoo.engine.inference.postprocess import PostProcessing, fill_holes, remove_small_components


def square(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top: top + side, left: left + side] = True
    return mask


def test_small_components_are_removed_large_ones_kept() -> None:
    big, small = square(20, 1, 1, 5), square(20, 12, 12, 2)  # 25 and 4 pixels
    diagonal = np.zeros((20, 20), dtype=bool)
    diagonal[[15, 16, 17], [2, 3, 4]] = True  # one 8-connected component of 3 pixels
    mask = big | small | diagonal
    assert np.array_equal(remove_small_components(mask, 5), big)
    assert np.array_equal(remove_small_components(mask, 4), big | small)
    assert np.array_equal(remove_small_components(mask, 3), mask)
    assert np.array_equal(remove_small_components(mask, 0), mask)


def test_holes_are_filled_but_not_regions_open_to_the_border() -> None:
    ring = square(12, 2, 2, 6) & ~square(12, 4, 4, 2)
    cup = square(12, 0, 8, 4) & ~square(12, 0, 9, 2)  # open at the top border
    filled = fill_holes(ring | cup)
    assert np.array_equal(filled, square(12, 2, 2, 6) | cup)
    assert not fill_holes(np.zeros((4, 4), dtype=bool)).any()


def test_a_diagonal_gap_does_not_make_a_hole() -> None:
    """Background is 4-connected: a diamond outline, whose pixels touch only diagonally,
    still encloses its centre."""
    mask = np.zeros((5, 5), dtype=bool)
    mask[[1, 2, 2, 3], [2, 1, 3, 2]] = True  # diamond around (2, 2)
    assert fill_holes(mask)[2, 2]


def test_binary_and_multilabel_maps() -> None:
    labels = (square(16, 2, 2, 6) & ~square(16, 4, 4, 2)).astype(np.uint8)
    labels[14, 14] = 1
    post = PostProcessing(min_size=3, fill_holes=True)
    out = post.apply(labels, "binary")
    assert out.dtype == np.uint8 and out[14, 14] == 0 and out[4:6, 4:6].all()
    stacked = post.apply(np.stack([labels, 1 - labels]), "multilabel")
    assert np.array_equal(stacked[0], out)


def test_multiclass_holes_take_the_enclosing_class_only_where_background() -> None:
    labels = np.zeros((16, 16), dtype=np.uint8)
    labels[1:9, 1:9] = 1
    labels[3:5, 3:5] = 0  # a background hole in class 1
    labels[6:8, 6:8] = 2  # class 2 inside class 1 stays class 2 (4 pixels)
    labels[12, 12] = 2  # a one-pixel speck of class 2
    out = PostProcessing(min_size=2, fill_holes=True).apply(labels, "multiclass")
    assert (out[3:5, 3:5] == 1).all() and (out[6:8, 6:8] == 2).all() and out[12, 12] == 0
    assert np.array_equal(PostProcessing().apply(labels, "multiclass"), labels)
