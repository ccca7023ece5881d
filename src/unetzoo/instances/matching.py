"""Object-by-object comparison of two label images, and every instance score built on it.

A label image is a 2-D integer array: 0 is background, every other value one object. Ids
need not be consecutive; uint8, uint16, int32, int64 (any integer type) are accepted, and a
float array whose values are all whole numbers is read as ids (a float with a fraction is
refused). All scores here come from one overlap table (`label_overlap`) and one matching
routine (`match`).

The overlap table (what it costs). Both images are relabelled to consecutive indices (a
look-up table when the largest id is at most a few times the pixel count, else
`np.unique(return_inverse=True)`), then the pixels that are foreground in both images are
counted per (true, predicted) pair over the combined index `true * n_pred + pred`: with
`np.bincount`, a dense n_true x n_pred int64 table, while that table has at most
`DENSE_PAIR_BINS` (4 Mi) cells (32 MB: 2000 x 2000 objects); beyond that the runs of one
pair along the image rows are found first and only their keys are sorted (`np.unique`),
their lengths summed. Either way only the overlapping pairs are kept (COO: rows, cols,
intersection, union, IoU); no dense IoU matrix is built, so 5000 objects against 5000 cost
the ~20000 pairs that touch, not a 200 MB float64 matrix. Areas come from the same
bincounts. (A 1388 x 1040 image of 400 objects takes milliseconds; 4000 x 4000 with 5000
touching objects about a second.)

Matching (`match`). A true and a predicted object may be paired when IoU >= t (StarDist's
`matching` and Cellpose's `average_precision` use >=), or IoU > t with `strict=True` (the
DSB 2018 evaluation page: a "hit" when the IoU is "greater than" the threshold; Caicedo et
al. 2019 code uses >). For t > 0.5 (and t = 0.5 with >) each object has at most one such
partner, so the matching is unique. Below that it is not: the pairs are then chosen by an
optimal assignment that maximises the number of pairs first and their total IoU second, as
StarDist and Cellpose do with `scipy.optimize.linear_sum_assignment` over a dense matrix.
Here the assignment runs only on the objects that have more than one candidate, as a
sparse assignment (`scipy.sparse.csgraph.min_weight_full_bipartite_matching`, LAPJVsp)
over a graph padded with one "unmatched" vertex per object; the counts equal StarDist's in
every case (the maximal number of pairs is unique). Which of two equal pairs is kept (a true
object cut into two exact halves, both IoU 0.5, at t = 0.5 with >=) is up to the solver:
the counts do not depend on it. StarDist breaks remaining ties with the IoU of every
assigned pair, including those below the threshold; here only pairs above it take part, so
the total matched IoU can differ from StarDist's below t = 0.5 (never the counts). IoU here
is float64 from exact pixel counts; StarDist 0.9 computes it in float32 (and compares
float32(IoU) >= float32(t)), so its matched-IoU sums (mean_matched_score, panoptic_quality)
agree with these to about 1e-7, and an IoU within ~3e-8 of t (unions of millions of pixels)
could fall on the other side of t there.

Per threshold: TP (pairs), FP = predicted objects without partner, FN = true objects
without partner; precision TP/(TP+FP); recall TP/(TP+FN); F1 = 2TP/(2TP+FP+FN); and
AP = TP/(TP+FP+FN), the DSB 2018 "average precision" (StarDist calls it `accuracy`, the
StarDist paper AP_tau, Cellpose `average_precision`). `mean_ap` is the mean of AP over the
ten thresholds 0.5, 0.55, ..., 0.95 (`DSB_THRESHOLDS`), the DSB 2018 leaderboard score of an
image (the leaderboard then averaged it over images), always computed with the chosen rule.

Empty images. When an image has no true object and no predicted one (TP + FP + FN = 0),
every ratio is 0/0. The field is split: StarDist scores it 0 (`precision` etc. return 0
unless TP > 0), Cellpose returns NaN (0/0 in float32), unetzoo's pixel metrics score 1.
`empty` chooses: "one" (the default, as `unetzoo.metrics`: nothing to find and nothing
found is a perfect result), "zero" (StarDist) or "skip" (the image has no score, None, and
is left out of the mean over images, which is what `np.nanmean` over Cellpose's NaN does).
The rule also applies to SQ, PQ, DQ, AJI, AJI+ and mean AP, and to a pooled ratio whose
counts are all zero. A ratio whose denominator is zero while the image does hold objects
(recall with no true object but predictions, SQ with nothing matched) is 0, as in StarDist
and HoVer-Net.

Panoptic quality (Kirillov et al., "Panoptic Segmentation", CVPR 2019, eq. 1): pairs with
IoU > 0.5 (strictly; unique), SQ = mean IoU of those pairs, DQ = TP/(TP + FP/2 + FN/2),
PQ = SQ x DQ. The threshold is always > 0.5 whatever `strict` says (StarDist's
`panoptic_quality` at thresh=0.5 uses >= and differs only when some IoU is exactly 0.5).
Kirillov et al. define PQ over a whole dataset: that is the "pooled" value.

Aggregated Jaccard index (Kumar et al., "A Dataset and a Technique for Generalized Nuclear
Segmentation for Computational Pathology", IEEE TMI 2017): each true object takes the
predicted object of largest IoU (ties: the smallest id), adding their intersection to C and
their union to U; a predicted object may serve several true objects; a true object that
overlaps nothing adds its area to U; predicted objects never taken add their area to U;
AJI = C/U. This is the MoNuSeg definition as HoVer-Net's `get_fast_aji` computes it. AJI+
(Graham et al., "HoVer-Net", Medical Image Analysis 2019) pairs objects one-to-one instead,
maximising the total IoU (pairs of IoU > 0); unpaired objects of both sides add their area
to U. Both are given (`aji`, `aji_plus`). Cellpose's `aggregated_jaccard_index` is neither:
it sums the intersections of its one-to-one IoU >= 0.5-first assignment over the union of the
two foregrounds; it equals AJI+ and AJI whenever no object overlaps two objects of the other
image.

Split, merged, missed and extra objects (Caicedo et al., "Evaluation of Deep Learning
Strategies for Nucleus Segmentation in Fluorescence Images", Cytometry A 2019, and its
released code `get_splits_and_merges`): a true object is split when two or more predicted
objects each have IoU > 0.1 (`split_iou`) with it; a predicted object is a merge when it
has IoU > 0.1 with two or more true objects. A true object cut into ten slivers (IoU 0.1
each) is not counted: the rule counts the splits an IoU can see. Missed = FN and extra = FP
at `error_threshold` (0.5 by default, with the chosen >= or >; Caicedo et al. report them
at 0.7).

Over a dataset, both ways: "mean_over_images" is the mean over images of each per-image
score (the DSB 2018 leaderboard; StarDist `matching_dataset(by_image=True)`; MoNuSeg's AJI),
and counts (TP, splits, ...) are means per image; "pooled" sums the counts over all images
and then takes the ratio (StarDist `matching_dataset(by_image=False)`; Kirillov's PQ; AJI as
sum C / sum U), with counts as totals.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

from ..errors import ConfigError, DataError, MetricError

DSB_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
EMPTY_RULES: tuple[str, ...] = ("one", "zero", "skip")
EmptyRule = Literal["one", "zero", "skip"]
PQ_THRESHOLD = 0.5  # Kirillov et al.: IoU > 0.5, strictly
SPLIT_IOU = 0.1  # Caicedo et al. 2019: IoU > 0.1 with two or more objects of the other image
DENSE_PAIR_BINS = 1 << 22  # largest n_true x n_pred table counted densely (32 MB of int64)
_LUT_FACTOR = 4  # ids up to this many times the pixel count are relabelled by look-up table
_EXACT_FLOAT = 2**53  # floats above this are not exact integers


# --------------------------------------------------------------------------------------
# Input


def check_labels(labels: Any, role: str = "labels", name: str | None = None) -> np.ndarray:
    """Return `labels` as a 2-D integer label image, or refuse it in one line.

    Args:
        labels: a 2-D array, `H x W`, of object ids (0 = background). Integer types are
            returned as they are; a float array whose values are all whole numbers is
            returned as int64.
        role: the word naming the array in a message ("true", "predicted").
        name: the image's name or path, prefixed to a message.

    Returns:
        The `H x W` integer array.

    Raises:
        DataError: not 2-D, boolean (a mask, not object ids), not numeric, a float with
            fractional or non-finite values, negative ids, or uint64 ids of 2**63 or more.
    """
    array = np.asarray(labels)
    if array.ndim != 2:
        raise DataError(f"the {role} label image has {array.ndim} dimension(s), shape "
                        f"{array.shape}; an H x W array of object ids is needed (squeeze "
                        "a channel axis, score a stack one image at a time)", name)
    if array.dtype == np.bool_:
        raise DataError(f"the {role} label image is a boolean mask, not object ids; give "
                        "each object its own id first (scipy.ndimage.label)", name)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not np.isfinite(array).all():
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise DataError(f"the {role} label image ({array.dtype}) holds {bad} NaN or "
                            "infinite pixel(s); object ids are whole numbers", name)
        fractional = array != np.floor(array)
        if fractional.any():
            raise DataError(
                f"the {role} label image is {array.dtype} with fractional values "
                f"({int(np.count_nonzero(fractional))} pixels, e.g. "
                f"{float(array[fractional][0])!r}): a probability map or an interpolated "
                "label image, not object ids; threshold and label it, or resize label "
                "images with nearest-neighbour interpolation", name)
        if array.size and float(array.max()) >= _EXACT_FLOAT:
            raise DataError(f"the {role} label image ({array.dtype}) holds ids of 2**53 "
                            "or more, which a float cannot hold exactly", name)
        converted = array.astype(np.int64)
        _refuse_negative(converted, role, name)
        return converted
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"the {role} label image has dtype {array.dtype}; integer object "
                        "ids are needed", name)
    _refuse_negative(array, role, name)
    if array.size and array.dtype == np.uint64 and int(array.max()) >= 2**63:
        raise DataError(f"the {role} label image holds ids of 2**63 or more "
                        f"({int(array.max())}); ids up to 2**63 - 1 are read", name)
    return array


def _refuse_negative(array: np.ndarray, role: str, name: str | None) -> None:
    if array.size and np.issubdtype(array.dtype, np.signedinteger):
        low = int(array.min())
        if low < 0:
            count = int(np.count_nonzero(array < 0))
            raise DataError(f"the {role} label image holds negative ids ({count} pixels, "
                            f"lowest {low}); ids are 0 (background) or positive", name)


class _Objects:
    """The objects of a checked label image: ids (ascending), areas, and a map from the id
    of a pixel to the object's position (0-based)."""

    def __init__(self, flat: np.ndarray) -> None:
        values = flat[flat != 0]
        self._lut: np.ndarray | None = None
        if values.size == 0:
            self.ids = np.zeros(0, np.int64)
            self.area = np.zeros(0, np.int64)
            return
        top = int(values.max())
        if top <= max(_LUT_FACTOR * flat.size, 1 << 16):
            counts = np.bincount(values.astype(np.intp, copy=False))
            ids = np.flatnonzero(counts)
            self.area = counts[ids].astype(np.int64)
            self._lut = np.zeros(top + 1, np.int64)
            self._lut[ids] = np.arange(ids.size)
            self.ids = ids.astype(np.int64)
        else:
            ids, counts = np.unique(values, return_counts=True)
            self.ids, self.area = ids.astype(np.int64), counts.astype(np.int64)

    def position(self, values: np.ndarray) -> np.ndarray:
        """Object positions of foreground pixel values, int64."""
        if self._lut is not None:
            return self._lut[values]
        return np.searchsorted(self.ids, values.astype(np.int64))


# --------------------------------------------------------------------------------------
# Overlap


@dataclass(frozen=True, eq=False)
class Overlap:
    """Every overlapping (true, predicted) pair of two label images, sparse.

    Objects are numbered by position: `true_ids[i]` is the id of true object i (ascending),
    `pred_ids[j]` that of predicted object j. Pair k is (rows[k], cols[k]); only pairs with
    at least one common pixel are listed, in ascending (row, col) order.

    Attributes:
        shape: the images' `(H, W)`.
        true_ids, pred_ids: int64 ids, `(n_true,)` and `(n_pred,)`.
        true_area, pred_area: int64 areas in pixels, same shapes.
        rows, cols: int64 object positions of each pair, `(k,)`.
        inter, union: int64 pixels of each pair, `(k,)`.
        iou: float64 intersection over union of each pair, `(k,)`, in (0, 1].
    """

    shape: tuple[int, int]
    true_ids: np.ndarray
    pred_ids: np.ndarray
    true_area: np.ndarray
    pred_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    inter: np.ndarray
    union: np.ndarray
    iou: np.ndarray

    @property
    def n_true(self) -> int:
        """Number of true objects."""
        return int(self.true_ids.size)

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return int(self.pred_ids.size)

    def dense_iou(self) -> np.ndarray:
        """The `n_true x n_pred` float64 IoU matrix (zeros where objects do not touch); for
        small images and tests only: it costs 8 bytes per pair of objects."""
        out = np.zeros((self.n_true, self.n_pred))
        out[self.rows, self.cols] = self.iou
        return out


def label_overlap(true: Any, pred: Any, *, name: str | None = None) -> Overlap:
    """Count the pixels shared by every true and predicted object, sparse.

    Args:
        true: the true label image, `H x W` integers (0 = background); see `check_labels`.
        pred: the predicted label image, same shape.
        name: the image's name or path, for messages.

    Returns:
        The `Overlap` of the two images (pairs with at least one common pixel).

    Raises:
        DataError: a label image is refused by `check_labels`, or the shapes differ.
    """
    true = check_labels(true, "true", name)
    pred = check_labels(pred, "predicted", name)
    if true.shape != pred.shape:
        raise DataError(f"the true label image is {true.shape[0]} x {true.shape[1]} but the "
                        f"predicted one is {pred.shape[0]} x {pred.shape[1]}; they must "
                        "cover the same pixels", name)
    true_flat, pred_flat = true.ravel(), pred.ravel()
    true_objects, pred_objects = _Objects(true_flat), _Objects(pred_flat)
    true_ids, true_area = true_objects.ids, true_objects.area
    pred_ids, pred_area = pred_objects.ids, pred_objects.area
    n_true, n_pred = true_ids.size, pred_ids.size
    both = (true_flat != 0) & (pred_flat != 0)
    key = true_objects.position(true_flat[both]) * n_pred + \
        pred_objects.position(pred_flat[both])
    if n_true * n_pred <= DENSE_PAIR_BINS:
        table = np.bincount(key, minlength=n_true * n_pred)
        pairs = np.flatnonzero(table)
        inter = table[pairs]
    else:
        # runs of one pair along the raster order first: the sort then sees one key per run
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        lengths = np.diff(np.r_[starts, key.size])
        pairs, where = np.unique(key[starts], return_inverse=True)
        inter = np.bincount(where.reshape(-1), weights=lengths, minlength=pairs.size)
    rows, cols = np.divmod(pairs.astype(np.int64), max(n_pred, 1))
    inter = inter.astype(np.int64)
    union = true_area[rows] + pred_area[cols] - inter
    return Overlap(shape=(int(true.shape[0]), int(true.shape[1])), true_ids=true_ids,
                   pred_ids=pred_ids, true_area=true_area, pred_area=pred_area, rows=rows,
                   cols=cols, inter=inter, union=union, iou=inter / union)


# --------------------------------------------------------------------------------------
# Matching


def _one_to_one(rows: np.ndarray, cols: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """Positions of the edges of a maximum-gain matching of a bipartite graph given as edge
    lists (every gain > 0). Edges whose two ends have no other edge are taken as they are;
    the rest go to a sparse assignment padded with one 'unmatched' vertex per object."""
    if rows.size == 0:
        return np.zeros(0, np.intp)
    row_degree = np.bincount(rows)
    col_degree = np.bincount(cols)
    alone = (row_degree[rows] == 1) & (col_degree[cols] == 1)
    chosen = np.flatnonzero(alone)
    hard = np.flatnonzero(~alone)
    if hard.size == 0:
        return chosen
    r_ids, r = np.unique(rows[hard], return_inverse=True)
    c_ids, c = np.unique(cols[hard], return_inverse=True)
    nr, nc, ne = r_ids.size, c_ids.size, hard.size
    # Square graph of nr + nc vertices a side: real edges (r, c) of weight 1 + gain; true r
    # left alone (r, nc + r) and predicted c left alone (nr + c, c) of weight 1; and for each
    # real edge the edge (nr + c, nc + r) of weight 1 that pairs the two 'alone' vertices
    # when (r, c) is taken. Every perfect matching weighs nr + nc + the gains it takes.
    weight = np.concatenate([1.0 + gain[hard], np.ones(nr + nc + ne)])
    src = np.concatenate([r, np.arange(nr), nr + np.arange(nc), nr + c])
    dst = np.concatenate([c, nc + np.arange(nr), np.arange(nc), nc + r])
    graph = coo_array((weight, (src, dst)), shape=(nr + nc, nr + nc)).tocsr()
    got_r, got_c = min_weight_full_bipartite_matching(graph, maximize=True)
    real = (got_r < nr) & (got_c < nc)
    edge_key = r.astype(np.int64) * nc + c
    order = np.argsort(edge_key)
    taken = order[np.searchsorted(edge_key[order], got_r[real].astype(np.int64) * nc
                                  + got_c[real])]
    return np.sort(np.concatenate([chosen, hard[taken]]))


@dataclass(frozen=True, eq=False)
class Matching:
    """One-to-one pairs of true and predicted objects at one IoU threshold.

    Attributes:
        threshold: the IoU threshold t.
        strict: True when a pair needs IoU > t, False for IoU >= t.
        true_index, pred_index: int64 object positions (into `Overlap.true_ids` /
            `pred_ids`) of each pair, `(tp,)`, ascending in `true_index`.
        iou: float64 IoU of each pair, `(tp,)`.
        n_true, n_pred: objects in the two images.
    """

    threshold: float
    strict: bool
    true_index: np.ndarray
    pred_index: np.ndarray
    iou: np.ndarray
    n_true: int
    n_pred: int

    @property
    def tp(self) -> int:
        """Matched pairs."""
        return int(self.true_index.size)

    @property
    def fp(self) -> int:
        """Predicted objects without a partner."""
        return self.n_pred - self.tp

    @property
    def fn(self) -> int:
        """True objects without a partner."""
        return self.n_true - self.tp

    @property
    def sum_iou(self) -> float:
        """Total IoU of the pairs."""
        return float(self.iou.sum())


def _check_threshold(threshold: float, strict: bool, what: str = "IoU threshold") -> float:
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {threshold!r} is not a number") from None
    if strict and not 0.0 <= value < 1.0:
        raise ConfigError(f"{what} {value} with IoU > t must lie in [0, 1)")
    if not strict and not 0.0 < value <= 1.0:
        raise ConfigError(f"{what} {value} with IoU >= t must lie in (0, 1]")
    return value


def match(overlap: Overlap, threshold: float = 0.5, *, strict: bool = False) -> Matching:
    """Pair true and predicted objects one-to-one at an IoU threshold.

    Candidates are the pairs with IoU >= threshold (IoU > threshold when `strict`). Where
    an object has several candidates (only possible for t <= 0.5), the pairs are chosen to
    maximise their number, then their total IoU (StarDist's and Cellpose's rule); the
    module docstring says how.

    Args:
        overlap: the `Overlap` of two label images.
        threshold: t, in (0, 1] (in [0, 1) when `strict`).
        strict: IoU > t instead of IoU >= t.

    Returns:
        The `Matching`.

    Raises:
        ConfigError: the threshold is out of range.
    """
    t = _check_threshold(threshold, strict)
    candidate = overlap.iou > t if strict else overlap.iou >= t
    edges = np.flatnonzero(candidate)
    most = min(overlap.n_true, overlap.n_pred)
    # one pair more always outweighs any IoU bonus: the bonuses sum to less than 1/2
    gain = 1.0 + overlap.iou[edges] / (2.0 * (most + 1))
    taken = edges[_one_to_one(overlap.rows[edges], overlap.cols[edges], gain)]
    return Matching(threshold=t, strict=strict, true_index=overlap.rows[taken],
                    pred_index=overlap.cols[taken], iou=overlap.iou[taken],
                    n_true=overlap.n_true, n_pred=overlap.n_pred)


def _aji_kumar(ov: Overlap) -> tuple[int, int]:
    """(C, U) of Kumar et al.'s AJI: each true object with its predicted object of largest
    IoU (ties: the smallest id), predicted objects reusable."""
    if ov.rows.size == 0:
        return 0, int(ov.true_area.sum() + ov.pred_area.sum())
    order = np.lexsort((ov.cols, -ov.iou, ov.rows))
    first = order[np.r_[True, ov.rows[order][1:] != ov.rows[order][:-1]]]
    inter = int(ov.inter[first].sum())
    union = int(ov.union[first].sum())
    paired_true = np.zeros(ov.n_true, bool)
    paired_true[ov.rows[first]] = True
    used_pred = np.zeros(ov.n_pred, bool)
    used_pred[ov.cols[first]] = True
    union += int(ov.true_area[~paired_true].sum() + ov.pred_area[~used_pred].sum())
    return inter, union


def _aji_plus(ov: Overlap) -> tuple[int, int]:
    """(C, U) of Graham et al.'s AJI+: one-to-one pairs of maximal total IoU."""
    taken = _one_to_one(ov.rows, ov.cols, ov.iou)
    inter = int(ov.inter[taken].sum())
    union = int(ov.union[taken].sum())
    paired_true = np.zeros(ov.n_true, bool)
    paired_true[ov.rows[taken]] = True
    paired_pred = np.zeros(ov.n_pred, bool)
    paired_pred[ov.cols[taken]] = True
    union += int(ov.true_area[~paired_true].sum() + ov.pred_area[~paired_pred].sum())
    return inter, union


def _splits_merges(ov: Overlap, split_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the split true objects and the merging predicted objects (Caicedo et
    al. 2019: IoU > split_iou with two or more objects of the other image)."""
    near = ov.iou > split_iou
    split = np.flatnonzero(np.bincount(ov.rows[near], minlength=ov.n_true) >= 2)
    merged = np.flatnonzero(np.bincount(ov.cols[near], minlength=ov.n_pred) >= 2)
    return split, merged


# --------------------------------------------------------------------------------------
# Per-object errors


@dataclass(frozen=True, eq=False)
class ObjectErrors:
    """Which objects of one image are right and which are wrong, by id, at one threshold.

    Attributes:
        threshold, strict: the matching rule (IoU >= threshold, or > when strict).
        split_iou: the IoU above which an object counts towards a split or a merge.
        tp_true, tp_pred: ids of the matched pairs (true id k with predicted id k), int64.
        tp_iou: their IoU, float64.
        fn: ids of true objects without a partner (missed), int64.
        fp: ids of predicted objects without a partner (extra), int64.
        split: ids of true objects split over two or more predicted objects.
        merged: ids of predicted objects covering two or more true objects.
    """

    threshold: float
    strict: bool
    split_iou: float
    tp_true: np.ndarray
    tp_pred: np.ndarray
    tp_iou: np.ndarray
    fn: np.ndarray
    fp: np.ndarray
    split: np.ndarray
    merged: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The same as plain lists and numbers (JSON-able)."""
        out: dict[str, Any] = {"threshold": self.threshold, "strict": self.strict,
                               "split_iou": self.split_iou}
        for key in ("tp_true", "tp_pred", "fn", "fp", "split", "merged"):
            out[key] = [int(v) for v in getattr(self, key)]
        out["tp_iou"] = [float(v) for v in self.tp_iou]
        return out


def object_errors(true: Any, pred: Any, threshold: float = 0.5, *, strict: bool = False,
                  split_iou: float = SPLIT_IOU, name: str | None = None) -> ObjectErrors:
    """The ids of the true positive, false positive, false negative, split and merged
    objects of one image, to outline each object with its error.

    Args:
        true, pred: `H x W` label images (0 = background), as for `label_overlap`.
        threshold: the matching IoU threshold t (see `match`).
        strict: IoU > t instead of IoU >= t.
        split_iou: a split / merge needs IoU > split_iou with two or more objects (Caicedo
            et al., Cytometry A 2019: 0.1).
        name: the image's name or path, for messages.

    Returns:
        The `ObjectErrors`.

    Raises:
        DataError: a label image is refused (see `label_overlap`).
        ConfigError: a threshold is out of range.
    """
    split_iou = _check_threshold(split_iou, True, "split_iou")
    ov = label_overlap(true, pred, name=name)
    m = match(ov, threshold, strict=strict)
    matched_true = np.zeros(ov.n_true, bool)
    matched_true[m.true_index] = True
    matched_pred = np.zeros(ov.n_pred, bool)
    matched_pred[m.pred_index] = True
    split, merged = _splits_merges(ov, split_iou)
    return ObjectErrors(threshold=m.threshold, strict=strict, split_iou=split_iou,
                        tp_true=ov.true_ids[m.true_index], tp_pred=ov.pred_ids[m.pred_index],
                        tp_iou=m.iou, fn=ov.true_ids[~matched_true],
                        fp=ov.pred_ids[~matched_pred], split=ov.true_ids[split],
                        merged=ov.pred_ids[merged])


# --------------------------------------------------------------------------------------
# Counts and scores


@dataclass(frozen=True)
class ImageCounts:
    """The counts behind every score of one image (or, summed with `+`, of many).

    Attributes:
        name: the image's name ("pooled" for a sum).
        images: how many images the counts cover.
        n_true, n_pred: objects.
        thresholds: the IoU thresholds counted, ascending (the requested ones and
            `DSB_THRESHOLDS`).
        strict: the matching rule (IoU > t when True, >= t when False).
        tp, fp, fn: counts at each of `thresholds`.
        pq_tp, pq_fp, pq_fn, pq_iou: counts and total IoU of the pairs with IoU > 0.5.
        aji_c, aji_u: C and U of Kumar's AJI; ajip_c, ajip_u: of AJI+.
        splits, merges: Caicedo et al.'s split true and merging predicted objects.
        missed, extra: FN and FP at `error_threshold`.
        error_threshold: the threshold of `missed` and `extra`.
        empty_images: images with no true and no predicted object.
    """

    name: str
    images: int
    n_true: int
    n_pred: int
    thresholds: tuple[float, ...]
    strict: bool
    tp: tuple[int, ...]
    fp: tuple[int, ...]
    fn: tuple[int, ...]
    pq_tp: int
    pq_fp: int
    pq_fn: int
    pq_iou: float
    aji_c: int
    aji_u: int
    ajip_c: int
    ajip_u: int
    splits: int
    merges: int
    missed: int
    extra: int
    error_threshold: float
    empty_images: int

    def __add__(self, other: ImageCounts) -> ImageCounts:
        """The counts of both (pooled): every count summed.

        Raises:
            ConfigError: the two were counted at different thresholds or rules.
        """
        if (self.thresholds, self.strict, self.error_threshold) != \
                (other.thresholds, other.strict, other.error_threshold):
            raise ConfigError("counts of different thresholds or rules cannot be summed")

        def add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(x + y for x, y in zip(a, b, strict=True))

        return ImageCounts(
            name="pooled", images=self.images + other.images,
            n_true=self.n_true + other.n_true, n_pred=self.n_pred + other.n_pred,
            thresholds=self.thresholds, strict=self.strict, tp=add(self.tp, other.tp),
            fp=add(self.fp, other.fp), fn=add(self.fn, other.fn),
            pq_tp=self.pq_tp + other.pq_tp, pq_fp=self.pq_fp + other.pq_fp,
            pq_fn=self.pq_fn + other.pq_fn, pq_iou=self.pq_iou + other.pq_iou,
            aji_c=self.aji_c + other.aji_c, aji_u=self.aji_u + other.aji_u,
            ajip_c=self.ajip_c + other.ajip_c, ajip_u=self.ajip_u + other.ajip_u,
            splits=self.splits + other.splits, merges=self.merges + other.merges,
            missed=self.missed + other.missed, extra=self.extra + other.extra,
            error_threshold=self.error_threshold,
            empty_images=self.empty_images + other.empty_images)

    def at(self, threshold: float) -> tuple[int, int, int]:
        """(TP, FP, FN) at one of `thresholds`.

        Raises:
            ConfigError: the threshold was not counted.
        """
        for t, tp, fp, fn in zip(self.thresholds, self.tp, self.fp, self.fn, strict=True):
            if t == float(threshold):
                return tp, fp, fn
        raise ConfigError(f"IoU threshold {threshold} was not counted; counted: "
                          f"{', '.join(f'{t:g}' for t in self.thresholds)}")

    def scores(self, thresholds: Sequence[float] | None = None,
               empty: EmptyRule = "one") -> dict[str, Any]:
        """Every score of these counts (the ratios of the sums when they are a sum).

        Args:
            thresholds: the thresholds to report (default: all counted).
            empty: the rule for 0/0 when there is no object at all: "one", "zero", "skip".

        Returns:
            {"per_threshold": [{"threshold", "precision", "recall", "f1", "ap", "tp", "fp",
            "fn"}, ...], "mean_ap", "pq", "sq", "dq", "aji", "aji_plus", "splits", "merges",
            "missed", "extra", "n_true", "n_pred"}; a score is None under "skip" when
            there is nothing to score.

        Raises:
            ConfigError: an unknown empty rule or a threshold not counted.
        """
        _check_empty(empty)
        nothing = self.n_true == 0 and self.n_pred == 0

        def ratio(num: float, den: float) -> float | None:
            if den > 0:
                return num / den
            if nothing:
                return {"one": 1.0, "zero": 0.0, "skip": None}[empty]
            return 0.0

        rows = []
        for t in self.thresholds if thresholds is None else thresholds:
            tp, fp, fn = self.at(t)
            rows.append({"threshold": float(t), "precision": ratio(tp, tp + fp),
                         "recall": ratio(tp, tp + fn), "f1": ratio(2 * tp, 2 * tp + fp + fn),
                         "ap": ratio(tp, tp + fp + fn), "tp": tp, "fp": fp, "fn": fn})
        aps = [ratio(tp, tp + fp + fn) for tp, fp, fn in (self.at(t) for t in DSB_THRESHOLDS)]
        kept = [a for a in aps if a is not None]
        mean_ap = math.fsum(kept) / len(kept) if len(kept) == len(aps) else None
        pq_den = self.pq_tp + self.pq_fp / 2 + self.pq_fn / 2
        return {"per_threshold": rows, "mean_ap": mean_ap,
                "pq": ratio(self.pq_iou, pq_den), "sq": ratio(self.pq_iou, self.pq_tp),
                "dq": ratio(self.pq_tp, pq_den), "aji": ratio(self.aji_c, self.aji_u),
                "aji_plus": ratio(self.ajip_c, self.ajip_u), "splits": self.splits,
                "merges": self.merges, "missed": self.missed, "extra": self.extra,
                "n_true": self.n_true, "n_pred": self.n_pred}


def _check_empty(empty: str) -> None:
    if empty not in EMPTY_RULES:
        raise ConfigError(f"empty rule {empty!r} is not one of {', '.join(EMPTY_RULES)}")


def _counted_thresholds(thresholds: Iterable[float], strict: bool,
                        error_threshold: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(the requested thresholds, checked and in the given order; every threshold counted)."""
    asked = tuple(_check_threshold(t, strict) for t in thresholds)
    if not asked:
        raise ConfigError("no IoU threshold given")
    if len(set(asked)) != len(asked):
        raise ConfigError(f"IoU thresholds repeat: {', '.join(f'{t:g}' for t in asked)}")
    counted = tuple(sorted({*asked, *DSB_THRESHOLDS,
                            _check_threshold(error_threshold, strict, "error_threshold")}))
    return asked, counted


def count_image(true: Any, pred: Any, *, thresholds: Iterable[float] = DSB_THRESHOLDS,
                strict: bool = False, split_iou: float = SPLIT_IOU,
                error_threshold: float = 0.5, name: str | None = None) -> ImageCounts:
    """Count everything the instance scores of one image need.

    Args:
        true, pred: `H x W` label images (0 = background); see `label_overlap`.
        thresholds: IoU thresholds to count (`DSB_THRESHOLDS` are always counted too).
        strict: match at IoU > t instead of IoU >= t.
        split_iou: the IoU a split / merge needs with two or more objects (Caicedo: 0.1).
        error_threshold: the threshold at which missed (FN) and extra (FP) are counted.
        name: the image's name or path, kept in the counts and named in messages.

    Returns:
        The image's `ImageCounts`.

    Raises:
        DataError: a label image is refused (see `label_overlap`).
        ConfigError: a threshold is out of range, or thresholds repeat.
    """
    _, counted = _counted_thresholds(thresholds, strict, error_threshold)
    split_iou = _check_threshold(split_iou, True, "split_iou")
    ov = label_overlap(true, pred, name=name)
    matchings = [match(ov, t, strict=strict) for t in counted]
    pq = match(ov, PQ_THRESHOLD, strict=True)
    aji_c, aji_u = _aji_kumar(ov)
    ajip_c, ajip_u = _aji_plus(ov)
    split, merged = _splits_merges(ov, split_iou)
    at_error = matchings[counted.index(float(error_threshold))]
    return ImageCounts(
        name="" if name is None else str(name), images=1, n_true=ov.n_true,
        n_pred=ov.n_pred, thresholds=counted, strict=strict,
        tp=tuple(m.tp for m in matchings), fp=tuple(m.fp for m in matchings),
        fn=tuple(m.fn for m in matchings), pq_tp=pq.tp, pq_fp=pq.fp, pq_fn=pq.fn,
        pq_iou=pq.sum_iou, aji_c=aji_c, aji_u=aji_u, ajip_c=ajip_c, ajip_u=ajip_u,
        splits=int(split.size), merges=int(merged.size), missed=at_error.fn,
        extra=at_error.fp, error_threshold=float(error_threshold),
        empty_images=int(ov.n_true == 0 and ov.n_pred == 0))


def image_scores(true: Any, pred: Any, *, thresholds: Iterable[float] = DSB_THRESHOLDS,
                 strict: bool = False, empty: EmptyRule = "one",
                 split_iou: float = SPLIT_IOU, error_threshold: float = 0.5,
                 name: str | None = None) -> dict[str, Any]:
    """Every instance score of one image.

    Args:
        true, pred: `H x W` label images (0 = background); see `label_overlap`.
        thresholds: IoU thresholds reported in "per_threshold" (mean AP always uses
            `DSB_THRESHOLDS`).
        strict: match at IoU > t instead of IoU >= t.
        empty: the score of an image with no true and no predicted object: "one", "zero"
            (StarDist), "skip" (None).
        split_iou, error_threshold: see `count_image`.
        name: the image's name or path, for messages.

    Returns:
        The dict of `ImageCounts.scores`.

    Raises:
        DataError: a label image is refused (see `label_overlap`).
        ConfigError: a threshold or the empty rule is invalid.
    """
    _check_empty(empty)
    asked, _ = _counted_thresholds(thresholds, strict, error_threshold)
    counts = count_image(true, pred, thresholds=asked, strict=strict, split_iou=split_iou,
                         error_threshold=error_threshold, name=name)
    return counts.scores(asked, empty)


# --------------------------------------------------------------------------------------
# Over a dataset


_SCALARS = ("mean_ap", "pq", "sq", "dq", "aji", "aji_plus", "splits", "merges", "missed",
            "extra", "n_true", "n_pred")
_PER_THRESHOLD = ("precision", "recall", "f1", "ap", "tp", "fp", "fn")


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return math.fsum(kept) / len(kept) if kept else None


class InstanceScores:
    """Accumulate instance scores over the images of an evaluation.

    `update(true, pred, name)` scores one image; `summary()` gives every score as the mean
    over images and pooled, with the conventions in words; `per_image()` the rows of a CSV.

    Args:
        thresholds: IoU thresholds reported per threshold (default `DSB_THRESHOLDS`; mean
            AP always uses `DSB_THRESHOLDS`).
        strict: match at IoU > t (the DSB 2018 text) instead of IoU >= t (StarDist,
            Cellpose).
        empty: the score of an image with no true and no predicted object: "one" (default),
            "zero" (StarDist) or "skip" (no score: left out of the mean over images).
        split_iou: the IoU a split / merge needs with two or more objects (Caicedo: 0.1).
        error_threshold: the threshold at which missed (FN) and extra (FP) are counted.

    Raises:
        ConfigError: a threshold or the empty rule is invalid.
    """

    def __init__(self, thresholds: Iterable[float] = DSB_THRESHOLDS, *, strict: bool = False,
                 empty: EmptyRule = "one", split_iou: float = SPLIT_IOU,
                 error_threshold: float = 0.5) -> None:
        _check_empty(empty)
        self.thresholds, _ = _counted_thresholds(thresholds, strict, error_threshold)
        self.strict = bool(strict)
        self.empty: EmptyRule = empty
        self.split_iou = _check_threshold(split_iou, True, "split_iou")
        self.error_threshold = float(error_threshold)
        self._counts: list[ImageCounts] = []
        self._rows: list[dict[str, Any]] = []
        self._names: set[str] = set()
        self._notes: list[str] = []

    def __len__(self) -> int:
        return len(self._counts)

    def update(self, true: Any, pred: Any, name: str | None = None) -> dict[str, Any]:
        """Score one image and keep its counts.

        Args:
            true, pred: `H x W` label images (0 = background); see `label_overlap`.
            name: the image's name or path (default "image N"); names must not repeat.

        Returns:
            The image's row (as in `per_image`).

        Raises:
            DataError: a label image is refused, or the name was already scored.
        """
        name = f"image {len(self._counts) + 1}" if name is None else str(name)
        if name in self._names:
            raise DataError("this image was already scored in this evaluation "
                            "(names must not repeat)", name)
        for role, array in (("true", true), ("predicted", pred)):
            dtype = getattr(array, "dtype", None)
            if dtype is not None and np.issubdtype(dtype, np.floating) and \
                    not any(n.startswith(f"{role} ") for n in self._notes):
                self._notes.append(f"{role} label images are {dtype} (first: {name}); read "
                                   "as integer ids, every value being a whole number")
        counts = count_image(true, pred, thresholds=self.thresholds, strict=self.strict,
                             split_iou=self.split_iou, error_threshold=self.error_threshold,
                             name=name)
        row = _row(counts, self.thresholds, self.empty)
        self._counts.append(counts)
        self._rows.append(row)
        self._names.add(name)
        return row

    def counts(self) -> list[tuple[str, ImageCounts]]:
        """(name, counts) of every image scored, in update order (to merge the images
        other processes scored: `add`)."""
        return [(row["name"], counts) for row, counts in zip(self._rows, self._counts,
                                                               strict=True)]

    def add(self, name: str, counts: ImageCounts) -> dict[str, Any]:
        """Keep an image's counts made elsewhere (`count_image` with this object's
        thresholds and rules, e.g. by another process), as `update` keeps its own.

        Raises:
            DataError: the name was already scored.
        """
        if name in self._names:
            raise DataError("this image was already scored in this evaluation "
                            "(names must not repeat)", name)
        row = _row(counts, self.thresholds, self.empty)
        self._counts.append(counts)
        self._rows.append(row)
        self._names.add(name)
        return row

    def per_image(self) -> list[dict[str, Any]]:
        """One flat row per image, in update order, for a CSV: name, n_true, n_pred, then
        per threshold t: precision@t, recall@t, f1@t, ap@t, tp@t, fp@t, fn@t; then mean_ap,
        pq, sq, dq, aji, aji_plus, splits, merges, missed, extra (None: no score under the
        "skip" rule)."""
        return [dict(row) for row in self._rows]

    def conventions(self) -> dict[str, str]:
        """The rules behind the numbers, in words, with their sources."""
        rule = ">" if self.strict else ">="
        source = ("the DSB 2018 evaluation text ('greater than')" if self.strict
                  else "StarDist matching, Cellpose average_precision")
        empty = {
            "one": "an image with no true and no predicted object scores 1 (nothing to find, "
                   "nothing found; as unetzoo's pixel metrics)",
            "zero": "an image with no true and no predicted object scores 0 (as StarDist)",
            "skip": "an image with no true and no predicted object has no score (None) and "
                    "is left out of the mean over images (as NaN-skipping Cellpose's NaN)",
        }[self.empty]
        return {
            "threshold_rule": rule,
            "matching": f"one-to-one; a pair needs IoU {rule} t ({source}); below 0.5, an "
                        "optimal assignment maximising the number of pairs, then their "
                        "total IoU (as StarDist and Cellpose)",
            "ap": "AP = TP/(TP+FP+FN), the DSB 2018 score (StarDist: accuracy); mean_ap = "
                  "mean of AP over IoU 0.5, 0.55, ..., 0.95",
            "averaging": "mean_over_images: each score per image, then the mean over images "
                         "(DSB 2018 leaderboard, StarDist by_image=True), counts as means per "
                         "image; pooled: counts summed over all images, then the ratios "
                         "(StarDist by_image=False, Kirillov's dataset PQ, AJI as sum C / "
                         "sum U), counts as totals",
            "empty": empty + "; a zero denominator with objects present scores 0",
            "pq": "Kirillov et al. 2019: pairs with IoU > 0.5 (always strict), SQ = mean IoU "
                  "of the pairs (0 with none), DQ = TP/(TP+FP/2+FN/2), PQ = SQ x DQ",
            "aji": "aji: Kumar et al. 2017 (each true object with its predicted object of "
                   "largest IoU, predicted objects reusable, unused ones add their area to "
                   "U); aji_plus: Graham et al. 2019 AJI+ (one-to-one pairs of maximal total "
                   "IoU)",
            "splits_merges": f"Caicedo et al. 2019: a true object is split when two or more "
                             f"predicted objects have IoU > {self.split_iou:g} with it; a "
                             f"predicted object is a merge when it has IoU > "
                             f"{self.split_iou:g} with two or more true objects",
            "missed_extra": f"missed = FN, extra = FP at IoU {rule} "
                            f"{self.error_threshold:g}",
        }

    def summary(self) -> dict[str, Any]:
        """Every score over the images seen, both ways, as a plain JSON-able dict.

        Returns:
            {"images", "empty_images", "n_true", "n_pred", "thresholds", "strict",
            "empty", "conventions", "notes", "mean_over_images": {...}, "pooled": {...}},
            each of the last two as `ImageCounts.scores` gives (per_threshold list, mean_ap,
            pq, sq, dq, aji, aji_plus, splits, merges, missed, extra, n_true, n_pred).

        Raises:
            MetricError: no image was scored.
        """
        if not self._counts:
            raise MetricError("no image was scored: instance scores need at least one image")
        pooled = self._counts[0]
        for counts in self._counts[1:]:
            pooled = pooled + counts
        per_image = [c.scores(self.thresholds, self.empty) for c in self._counts]
        mean: dict[str, Any] = {"per_threshold": []}
        for k, t in enumerate(self.thresholds):
            entry: dict[str, Any] = {"threshold": t}
            for key in _PER_THRESHOLD:
                entry[key] = _mean(s["per_threshold"][k][key] for s in per_image)
            mean["per_threshold"].append(entry)
        for key in _SCALARS:
            mean[key] = _mean(s[key] for s in per_image)
        return {
            "images": len(self._counts), "empty_images": pooled.empty_images,
            "n_true": pooled.n_true, "n_pred": pooled.n_pred,
            "thresholds": list(self.thresholds), "strict": self.strict, "empty": self.empty,
            "conventions": self.conventions(), "notes": list(self._notes),
            "mean_over_images": mean, "pooled": pooled.scores(self.thresholds, self.empty),
        }


def _row(counts: ImageCounts, thresholds: Sequence[float], empty: EmptyRule) -> dict[str, Any]:
    scores = counts.scores(thresholds, empty)
    row: dict[str, Any] = {"name": counts.name, "n_true": counts.n_true,
                           "n_pred": counts.n_pred}
    for entry in scores["per_threshold"]:
        for key in _PER_THRESHOLD:
            row[f"{key}@{entry['threshold']:g}"] = entry[key]
    for key in _SCALARS[:-2]:
        row[key] = scores[key]
    return row


def score_dataset(trues: Iterable[Any], preds: Iterable[Any],
                  names: Iterable[str] | None = None, **options: Any) -> dict[str, Any]:
    """`InstanceScores(**options)` over pairs of label images; its `summary()`.

    Args:
        trues, preds: label images, in the same order (equal counts).
        names: their names (default "image 1", ...).
        **options: as `InstanceScores` takes.

    Returns:
        The summary dict.

    Raises:
        DataError: an image is refused, or the counts differ.
        ConfigError, MetricError: as `InstanceScores`.
    """
    scores = InstanceScores(**options)
    true_list, pred_list = list(trues), list(preds)
    if len(true_list) != len(pred_list):
        raise DataError(f"{len(true_list)} true label images but {len(pred_list)} "
                        "predicted ones")
    name_list: list[str | None] = [None] * len(true_list) if names is None else list(names)
    if len(name_list) != len(true_list):
        raise DataError(f"{len(name_list)} names for {len(true_list)} images")
    for true, pred, name in zip(true_list, pred_list, name_list, strict=True):
        scores.update(true, pred, name)
    return scores.summary()
