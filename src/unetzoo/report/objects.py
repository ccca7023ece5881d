"""Objects on the report pages of instance models: pictures of objects outlined by their
errors, the objects section (AP, PQ, AJI, splits and merges, in words), and the columns and
scores the pages rank images by.

Every object score comes from the evaluation's `metrics.json` (`summary["instances"]`,
written by `engine.evaluate` with `instances.matching.InstanceScores`) and `per_image.csv`;
the pictures re-predict an image and classify its objects with the same matching core
(`instances.matching.object_errors`), so the outlines show the errors that were counted.

Colours of the error picture (outlines, with a faint fill so that small pictures still show
them): predicted objects matched at IoU >= 0.5 (true positives) green, extra predicted
objects (false positives) red, predicted objects covering two or more true objects (merged)
magenta; true objects without a match (missed, false negatives) blue, true objects split
over two or more predicted objects orange; void pixels of the truth grey. A merged or split
object takes that colour even when one of its pairs matched. The true objects' outlines are
drawn first and the predicted objects' over them: a merge shows as blue objects inside a
magenta outline, a split as an orange object cut by the outlines of its pieces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..instances.matching import DSB_THRESHOLDS, InstanceScores, ObjectErrors, object_errors
from ..metrics import METRIC_NAMES, confusion_counts, headline
from ..viz import FN, FP

# kind -> (RGB, what it means), in drawing order (later kinds draw over earlier ones)
OBJECT_KINDS: dict[str, tuple[tuple[int, int, int], str]] = {
    "tp": ((40, 200, 60), "matched (true positive)"),
    "fp": ((230, 40, 40), "extra (false positive)"),
    "merged": ((220, 50, 220), "merged (covers two or more true objects)"),
    "fn": ((40, 90, 240), "missed (false negative; the true object)"),
    "split": ((255, 165, 0), "split (a true object over two or more predictions)"),
}
VOID_COLOR = (90, 90, 90)
FILL_ALPHA = 90  # the faint fill of an object in the error picture (outlines: 255)
DEFAULT_METRIC = "mean_ap"  # the per-image score an instance run's images are ranked by
# the per-image columns an instance run's table shows (per_image.csv has ~90)
TABLE_COLUMNS: tuple[str, ...] = ("mean_ap", "ap@0.5", "ap@0.75", "ap@0.9", "pq", "sq",
                                  "aji", "n_true", "n_pred", "splits", "merges", "missed",
                                  "extra", "dice")
COUNT_COLUMNS: frozenset[str] = frozenset({"n_true", "n_pred", "splits", "merges", "missed",
                                           "extra"} | {f"{k}@{t:g}" for k in ("tp", "fp", "fn")
                                                       for t in DSB_THRESHOLDS})


# --------------------------------------------------------------------------------------
# pictures


def display_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`labels` (`H x W`) resampled to `size` (width, height) by nearest neighbour (ids stay
    ids), so that outlines are drawn one display pixel wide."""
    height, width = labels.shape
    if (width, height) == tuple(size):
        return labels
    rows = np.minimum(((np.arange(size[1]) + 0.5) * height / size[1]).astype(np.intp),
                      height - 1)
    cols = np.minimum(((np.arange(size[0]) + 0.5) * width / size[0]).astype(np.intp),
                      width - 1)
    return labels[np.ix_(rows, cols)]


def outline_width(size: tuple[int, int]) -> int:
    """Outline width in display pixels: 1, or 2 for pictures longer than 400 pixels."""
    return 1 if max(size) <= 400 else 2


def inner_outlines(labels: np.ndarray, width: int = 1) -> np.ndarray:
    """Boolean `H x W`: the pixels of each object (id > 0) within `width` pixels of its edge
    (a pixel whose 4-neighbour holds another value, background or another object, or the
    image's edge never counts), inside the object (skimage `find_boundaries`, mode inner)."""
    from skimage.segmentation import find_boundaries

    remaining = np.where(labels > 0, labels, 0)
    ring = np.zeros(labels.shape, bool)
    for _ in range(max(1, width)):
        edge = find_boundaries(remaining, mode="inner") & (remaining > 0)
        ring |= edge
        remaining = np.where(edge, 0, remaining)
    return ring


def object_colors(ids: np.ndarray) -> np.ndarray:
    """Distinct-looking RGB colours (`N x 3` uint8) for object ids: hues a golden ratio
    apart, so that neighbouring ids differ."""
    from matplotlib.colors import hsv_to_rgb

    hue = np.mod(ids.astype(np.float64) * 0.6180339887 + 0.12, 1.0)
    hsv = np.stack([hue, np.full_like(hue, 0.75), np.full_like(hue, 0.95)], axis=-1)
    return (hsv_to_rgb(hsv) * 255).round().astype(np.uint8)


def object_layer(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """RGBA `h x w x 4` at the display `size` (width, height): each object filled in its own
    colour with a white outline one display pixel wide, void pixels (< 0) grey, background
    transparent."""
    shown = display_labels(labels, size)
    rgba = np.zeros((*shown.shape, 4), np.uint8)
    inside = shown > 0
    if inside.any():
        ids, index = np.unique(shown[inside], return_inverse=True)
        rgba[inside, :3] = object_colors(ids)[index.reshape(-1)]
        rgba[inside, 3] = 255
        rgba[inner_outlines(shown)] = (255, 255, 255, 255)  # one pixel: the fill tells
    rgba[shown < 0] = (*VOID_COLOR, 255)
    return rgba


def kind_ids(errors: ObjectErrors) -> dict[str, tuple[str, np.ndarray]]:
    """kind -> (which image it outlines: "true" or "pred", ids), as drawn: a merged or a
    split object is drawn as that, not as matched, missed or extra."""
    merged, split = errors.merged, errors.split
    return {
        "tp": ("pred", np.setdiff1d(errors.tp_pred, merged)),
        "fp": ("pred", np.setdiff1d(errors.fp, merged)),
        "merged": ("pred", merged),
        "fn": ("true", np.setdiff1d(errors.fn, split)),
        "split": ("true", split),
    }


def object_error_layer(true: np.ndarray, pred: np.ndarray, errors: ObjectErrors,
                       size: tuple[int, int]) -> np.ndarray:
    """RGBA `h x w x 4` at the display `size` (width, height): the objects of `errors`
    (`instances.matching.object_errors(true, pred)`) outlined in their kind's colour
    (`OBJECT_KINDS`) over a faint fill; void pixels of `true` (< 0) grey; the rest
    transparent.

    Args:
        true, pred: `H x W` integer label images (0 background; `true` < 0: void).
        errors: the ids of each kind of object.
        size: the picture's (width, height).
    """
    shown = {"true": display_labels(true, size), "pred": display_labels(pred, size)}
    width = outline_width(size)
    rgba = np.zeros((*shown["true"].shape, 4), np.uint8)
    void = shown["true"] < 0
    rgba[void] = (*VOID_COLOR, 160)
    kinds = kind_ids(errors)
    masks = {kind: np.isin(shown[side], ids) & (shown[side] > 0) if ids.size else None
             for kind, (side, ids) in kinds.items()}
    # fills: predicted objects, then the missed and split true objects over them; outlines:
    # the true objects', then the predicted objects' over them, so that a merge shows as
    # blue objects inside a magenta outline and a split as an orange object cut by outlines
    for kind in ("tp", "fp", "merged", "fn", "split"):
        if masks[kind] is not None:
            rgba[masks[kind]] = (*OBJECT_KINDS[kind][0], FILL_ALPHA)
    for kind in ("fn", "split", "tp", "fp", "merged"):
        mask = masks[kind]
        if mask is not None:
            side = kinds[kind][0]
            ring = inner_outlines(np.where(mask, shown[side], 0), width)
            rgba[ring] = (*OBJECT_KINDS[kind][0], 255)
    return rgba


def error_pixels(true: np.ndarray, pred: np.ndarray, errors: ObjectErrors) -> np.ndarray:
    """`viz` error codes `H x W` of the wrong objects (FP: extra and merged predicted
    objects; FN: missed and split true objects), for `gallery.error_zoom`."""
    codes = np.zeros(true.shape, np.uint8)
    codes[np.isin(pred, np.concatenate([errors.fp, errors.merged])) & (pred > 0)] = FP
    codes[np.isin(true, np.concatenate([errors.fn, errors.split])) & (true > 0)] = FN
    return codes


def object_counts(errors: ObjectErrors, true: np.ndarray, pred: np.ndarray
                  ) -> dict[str, int]:
    """The objects of one image by kind, counted as `per_image.csv` counts them: tp (pairs
    at IoU 0.5), fp (extra), fn (missed), split, merged (a merged object is also extra or
    matched, a split one also missed or matched), n_true, n_pred."""
    counts = {"tp": int(errors.tp_pred.size), "fp": int(errors.fp.size),
              "fn": int(errors.fn.size), "split": int(errors.split.size),
              "merged": int(errors.merged.size)}
    counts["n_true"] = int(np.unique(true[true > 0]).size)
    counts["n_pred"] = int(np.unique(pred[pred > 0]).size)
    return counts


def object_score(true: np.ndarray, pred: np.ndarray, metric: str, strict: bool = False
                 ) -> float:
    """The per-image `metric` of one re-predicted image, as `per_image.csv` has it: an
    object score (`InstanceScores.update`'s row: "mean_ap", "ap@0.5", "pq", "aji", ...) or a
    pixel score of the foreground (`METRIC_NAMES`, void pixels left out); NaN for a column
    that is neither (or no score under the "skip" rule).

    Args:
        true: `H x W` true labels, void already 0 (as `engine.evaluate` scores them).
        pred: `H x W` predicted labels, 0 on void pixels.
        metric: the column name.
        strict: the evaluation's matching rule (IoU > t when True).
    """
    if metric in METRIC_NAMES:
        import torch

        target = torch.from_numpy((true > 0).astype(np.int64))
        counts = confusion_counts(torch.from_numpy((pred > 0).astype(np.int64))[None],
                                  target[None], "binary", 1)
        return float(headline(counts, "binary")[metric][0])
    row = InstanceScores(strict=strict).update(true, pred, "image")
    value = row.get(metric)
    return float(value) if isinstance(value, (int, float)) else math.nan


def score_image(true: np.ndarray, pred: np.ndarray, metric: str, strict: bool = False
                ) -> tuple[ObjectErrors, float, np.ndarray]:
    """(object errors at IoU 0.5, the re-predicted `metric`, `pred` with void removed) of one
    image, scored as `engine.evaluate.evaluate_instances` scores it: void pixels (true < 0)
    are background in both images."""
    true = np.asarray(true).astype(np.int64)
    pred = np.asarray(pred).astype(np.int64)
    void = true < 0
    clean = np.where(void, 0, true)
    pred = np.where(void, 0, pred)
    errors = object_errors(clean, pred, 0.5, strict=strict)
    return errors, object_score(clean, pred, metric, strict), pred


# --------------------------------------------------------------------------------------
# numbers


def at_threshold(part: Mapping[str, Any], threshold: float) -> dict[str, Any]:
    """The `per_threshold` entry of `part` at `threshold` ({} when not counted)."""
    for entry in part.get("per_threshold", []):
        if abs(float(entry.get("threshold", -1)) - threshold) < 1e-9:
            return dict(entry)
    return {}


HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("ap50", "AP@0.5", "TP/(TP+FP+FN) at IoU 0.5"),
    ("mean_ap", "mean AP 0.5:0.95", "the DSB 2018 score: AP averaged over IoU 0.5, 0.55, "
                                    "..., 0.95"),
    ("pq", "PQ", "panoptic quality = SQ x DQ"),
    ("sq", "SQ", "mean IoU of the pairs with IoU > 0.5"),
    ("dq", "DQ", "TP/(TP + FP/2 + FN/2) at IoU > 0.5"),
    ("aji", "AJI", "aggregated Jaccard index (Kumar et al. 2017)"),
    ("aji_plus", "AJI+", "one-to-one AJI (Graham et al. 2019)"),
)
COUNTS: tuple[tuple[str, str], ...] = (
    ("n_true", "true objects"), ("n_pred", "predicted objects"),
    ("tp", "matched at IoU 0.5 (TP)"), ("splits", "split true objects"),
    ("merges", "merged predictions"), ("missed", "missed (FN)"), ("extra", "extra (FP)"),
)
CONVENTION_TITLES: dict[str, str] = {
    "matching": "matching", "ap": "AP", "averaging": "per image and pooled",
    "empty": "empty images", "pq": "PQ", "aji": "AJI", "splits_merges": "splits and merges",
    "missed_extra": "missed and extra",
}


def headline_value(part: Mapping[str, Any], key: str) -> Any:
    """One headline score of a summary part (`mean_over_images` or `pooled`)."""
    if key == "ap50":
        return at_threshold(part, 0.5).get("ap")
    return part.get(key)


def objects_section(summary: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the objects section of a page shows, from an evaluation's `metrics.json`: the
    headline scores per image and pooled, a row per IoU threshold, the counts of objects by
    kind (totals, and means per image), the conventions in words, and the notes; None when
    the evaluation scored no objects."""
    objects = (summary or {}).get("instances")
    if not isinstance(objects, Mapping) or "pooled" not in objects:
        return None
    mean, pooled = objects.get("mean_over_images", {}), objects["pooled"]
    images = int(objects.get("images") or 0)
    rows = [{"key": key, "name": name, "hint": hint, "mean": headline_value(mean, key),
             "pooled": headline_value(pooled, key)} for key, name, hint in HEADLINE]
    thresholds = []
    for entry in pooled.get("per_threshold", []):
        t = float(entry["threshold"])
        per_image = at_threshold(mean, t)
        thresholds.append({"threshold": t, "mean": per_image, "pooled": entry})
    counts = []
    for key, name in COUNTS:  # pooled: totals over the images; mean_over_images: means
        if key == "tp":
            total, each = at_threshold(pooled, 0.5).get("tp"), at_threshold(mean, 0.5).get("tp")
        else:
            total, each = pooled.get(key, objects.get(key)), mean.get(key)
        counts.append({"key": key, "name": name, "total": total,
                       "per_image": each if isinstance(each, (int, float)) else None})
    conventions = objects.get("conventions") or {}
    words = [(CONVENTION_TITLES.get(k, k.replace("_", " ")), v) for k, v in conventions.items()
             if k != "threshold_rule" and isinstance(v, str)]
    return {"images": images, "rows": rows, "thresholds": thresholds, "counts": counts,
            "rule": conventions.get("threshold_rule", ">=" if not objects.get("strict")
                                    else ">"),
            "empty": objects.get("empty"), "conventions": words,
            "notes": list(objects.get("notes") or []),
            "n_true": objects.get("n_true"), "n_pred": objects.get("n_pred")}


def table_columns(available: Sequence[str], metric: str) -> list[str]:
    """The per-image columns an instance run's table shows: `TABLE_COLUMNS` that exist, with
    the ranking `metric` first."""
    shown = [c for c in TABLE_COLUMNS if c in available]
    if metric in available:
        shown = [metric, *[c for c in shown if c != metric]]
    return shown


def kinds_legend() -> list[tuple[str, str]]:
    """(hex colour, meaning) of each kind of object in the error picture, and void."""
    hexed = ["#" + "".join(f"{c:02x}" for c in rgb) for rgb, _ in OBJECT_KINDS.values()]
    return [*zip(hexed, [m for _, m in OBJECT_KINDS.values()], strict=True),
            ("#" + "".join(f"{c:02x}" for c in VOID_COLOR), "void (not scored)")]
