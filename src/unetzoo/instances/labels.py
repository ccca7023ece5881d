"""Label images from a network's outputs: seeds, a seeded watershed, and thresholds chosen on
validation images.

Every representation of `targets` is read the same way (`decode`):

1. a foreground probability F and a seed score S, both `H x W` in [0, 1], are read from the
   activated outputs (the representation's `foreground` and `seeds`; `object_maps`);
2. foreground = F > `foreground`; seeds = the 4-connected components of
   (S > `seed`) within the foreground;
3. a seeded watershed of -S restricted to the foreground (`skimage.segmentation.watershed`;
   Beucher and Meyer's marker-controlled watershed) gives every foreground pixel the seed
   it floods from; a foreground component that holds no seed becomes an object of its own
   (a small nucleus whose core was never confident is still found);
4. objects smaller than `min_size` pixels are removed, and the ids are renumbered 1..N
   (int32) in raster order of their first pixel.

The thresholds are chosen after training on validation images (`choose_thresholds`), as
StarDist chooses its probability and NMS thresholds (Schmidt et al. 2018; Weigert et al.
2020): a coarse grid of (foreground, seed) pairs, each decoded once per image and scored at
every `min_size` of the grid, then a finer step around the best pair; the score is the mean
over images of the DSB 2018 mean AP over IoU 0.5:0.95 (or AP@0.5), from
`instances.matching`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError
from .matching import DSB_THRESHOLDS, Overlap, label_overlap, match
from .targets import Representation, get_representation

Objective = Literal["mean_ap", "ap50"]
OBJECTIVES: tuple[str, ...] = ("mean_ap", "ap50")


@dataclass(frozen=True)
class Thresholds:
    """The post-processing's thresholds.

    Attributes:
        foreground: a pixel is foreground when its foreground probability is > this.
        seed: a foreground pixel is part of a seed when its seed score is > this.
        min_size: objects of fewer pixels are removed (0 or 1: keep all).
    """

    foreground: float = 0.5
    seed: float = 0.5
    min_size: int = 0

    def __post_init__(self) -> None:
        for key in ("foreground", "seed"):
            value = getattr(self, key)
            if not (isinstance(value, int | float) and math.isfinite(value) and
                    0.0 <= value < 1.0):
                raise ConfigError(f"the {key} threshold must be in [0, 1), got {value!r}")
        if not isinstance(self.min_size, int | np.integer) or self.min_size < 0:
            raise ConfigError(f"min_size must be a whole number of pixels >= 0, got "
                              f"{self.min_size!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a checkpoint or a JSON file)."""
        return {"foreground": float(self.foreground), "seed": float(self.seed),
                "min_size": int(self.min_size)}


def _check_outputs(outputs: Any, rep: Representation, name: str | None) -> np.ndarray:
    array = np.asarray(outputs)
    if array.ndim != 3 or array.shape[0] != rep.num_channels:
        raise DataError(f"outputs of shape {array.shape} do not fit the {rep.name!r} "
                        f"representation: a {rep.num_channels} x H x W array is needed", name)
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"outputs have dtype {array.dtype}; activated float outputs "
                        "(probabilities, regressions) are needed", name)
    if not np.isfinite(array).all():
        raise DataError("outputs hold NaN or infinite values", name)
    return array.astype(np.float32, copy=False)


def object_maps(outputs: Any, representation: str | Representation, *,
                name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The foreground probability and the seed score of a representation's outputs.

    Args:
        outputs: float `C x H x W`, activated as the representation's table says
            (probabilities after softmax / sigmoid, regressions as they are).
        representation: a name of `targets.REPRESENTATIONS` or a `Representation`.
        name: the image's name, for messages.

    Returns:
        (foreground probability, seed score), float32 `H x W` each, in [0, 1].

    Raises:
        ConfigError: an unknown representation.
        DataError: the outputs have the wrong shape or type, or non-finite values.
    """
    rep = get_representation(representation)
    out = _check_outputs(outputs, rep, name)
    if rep.name == "three_class":
        foreground = 1.0 - out[0]
        seed = out[1]
    elif rep.name == "distance":
        foreground, seed = out[0], out[1]
    elif rep.name == "contour_touch":
        foreground = out[0]
        seed = out[0] * (1.0 - out[1]) * (1.0 - out[2])
    elif rep.name == "hover":
        foreground = out[0]
        # an offset rises inside an object and falls only across its edge (from +1 to -1
        # between two objects): the falling part of its Sobel derivative is the edge
        # energy, 1 from a fall of 1 across one pixel (central difference x Sobel's
        # smoothing of 4); a diagonal edge falls in both maps, hence their norm
        fall_x = np.maximum(-ndimage.sobel(out[1], axis=1, mode="nearest"), 0.0)
        fall_y = np.maximum(-ndimage.sobel(out[2], axis=0, mode="nearest"), 0.0)
        energy = np.clip(np.hypot(fall_x, fall_y) / 4.0, 0.0, 1.0)
        seed = foreground * (1.0 - energy)
    else:
        raise ConfigError(f"instance representation {rep.name!r} has no decoder; known: "
                          "three_class, distance, contour_touch, hover")
    return (np.clip(foreground, 0.0, 1.0).astype(np.float32, copy=False),
            np.clip(seed, 0.0, 1.0).astype(np.float32, copy=False))


def _watershed(foreground: np.ndarray, seed: np.ndarray, thresholds: Thresholds) -> np.ndarray:
    """Steps 2-3 of the module docstring: int32 labels, not yet size-filtered."""
    from skimage.segmentation import watershed  # imported here: 0.5 s, used by decode alone

    mask = foreground > thresholds.foreground
    markers, count = ndimage.label(mask & (seed > thresholds.seed))
    if count:
        labels = watershed(-seed, markers, mask=mask).astype(np.int32, copy=False)
    else:
        labels = np.zeros(mask.shape, np.int32)
    rest = mask & (labels == 0)
    if rest.any():
        extra, _ = ndimage.label(rest)
        labels[rest] = extra[rest] + count
    return labels


def _renumber(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Remove objects under `min_size` pixels; ids 1..N in raster order of first pixel."""
    flat = labels.ravel()
    top = int(flat.max()) if flat.size else 0
    if top == 0:
        return np.zeros(labels.shape, np.int32)
    sizes = np.bincount(flat, minlength=top + 1)
    keep = sizes >= max(min_size, 1)
    keep[0] = False
    present = flat[keep[flat]]
    if present.size == 0:
        return np.zeros(labels.shape, np.int32)
    _, first = np.unique(present, return_index=True)
    ids = present[np.sort(first)]
    lut = np.zeros(top + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[labels]


def decode(outputs: Any, representation: str | Representation,
           thresholds: Thresholds | Mapping[str, Any] | None = None, *,
           name: str | None = None) -> np.ndarray:
    """A label image from a network's activated outputs (seeded watershed).

    Args:
        outputs: float `C x H x W` outputs of one image, activated as the representation's
            table says (softmax / sigmoid probabilities, regressions as they are); the
            encoded true labels (`targets.encode(...).targets`) decode to those labels.
        representation: a name of `targets.REPRESENTATIONS` or a `Representation`.
        thresholds: a `Thresholds`, a mapping of its fields, or None (0.5, 0.5, 0).
        name: the image's name, for messages.

    Returns:
        int32 `H x W` labels: 0 background, objects 1..N (raster order of first pixel).

    Raises:
        ConfigError: an unknown representation or an invalid threshold.
        DataError: the outputs have the wrong shape or type, or non-finite values.
    """
    chosen = _as_thresholds(thresholds)
    foreground, seed = object_maps(outputs, representation, name=name)
    return _renumber(_watershed(foreground, seed, chosen), chosen.min_size)


def _as_thresholds(value: Thresholds | Mapping[str, Any] | None) -> Thresholds:
    if value is None:
        return Thresholds()
    if isinstance(value, Thresholds):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - {"foreground", "seed", "min_size"}
        if unknown:
            raise ConfigError(f"unknown threshold(s) {', '.join(sorted(unknown))}; known: "
                              "foreground, seed, min_size")
        return Thresholds(**dict(value))
    raise ConfigError(f"thresholds must be a Thresholds or a mapping, got {type(value)}")


# --------------------------------------------------------------------------------------
# Choosing thresholds


DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "foreground": (0.3, 0.4, 0.5, 0.6, 0.7),
    "seed": (0.3, 0.4, 0.5, 0.6, 0.7, 0.8),
    "min_size": (0, 5, 10, 20, 30, 50),
}


@dataclass(frozen=True)
class ThresholdChoice:
    """What `choose_thresholds` found.

    Attributes:
        thresholds: the best `Thresholds` for the objective.
        objective: "mean_ap" (DSB 2018 mean AP over IoU 0.5:0.95) or "ap50" (AP at IoU 0.5).
        mean_ap, ap50: both scores of the best thresholds, means over the images.
        images: images scored.
        tried: every setting tried, as dicts (foreground, seed, min_size, mean_ap, ap50).
        seconds: the time taken.
    """

    thresholds: Thresholds
    objective: str
    mean_ap: float
    ap50: float
    images: int
    tried: list[dict[str, float]] = field(repr=False)
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a JSON file (without `tried`)."""
        out = asdict(self)
        out["thresholds"] = self.thresholds.to_dict()
        del out["tried"]
        return out


def _without_small(ov: Overlap, min_size: int) -> Overlap:
    """The overlap table with the predicted objects under `min_size` pixels removed."""
    if min_size <= 1:
        return ov
    keep = ov.pred_area >= min_size
    if keep.all():
        return ov
    new_index = np.cumsum(keep) - 1
    pairs = keep[ov.cols]
    return Overlap(shape=ov.shape, true_ids=ov.true_ids, pred_ids=ov.pred_ids[keep],
                   true_area=ov.true_area, pred_area=ov.pred_area[keep], rows=ov.rows[pairs],
                   cols=new_index[ov.cols[pairs]], inter=ov.inter[pairs],
                   union=ov.union[pairs], iou=ov.iou[pairs])


def _ap_scores(ov: Overlap) -> tuple[float, float]:
    """(mean AP over DSB_THRESHOLDS, AP@0.5) of one image; 1 when it has no object at all
    (the default "one" rule of `matching`)."""
    if ov.n_true == 0 and ov.n_pred == 0:
        return 1.0, 1.0
    aps = []
    for t in DSB_THRESHOLDS:
        m = match(ov, t)
        aps.append(m.tp / (m.tp + m.fp + m.fn))
    return math.fsum(aps) / len(aps), aps[0]


def _grid_values(grid: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]]:
    values = {k: list(v) for k, v in DEFAULT_GRID.items()}
    if grid is not None:
        unknown = set(grid) - set(DEFAULT_GRID)
        if unknown:
            raise ConfigError(f"unknown grid key(s) {', '.join(sorted(unknown))}; known: "
                              f"{', '.join(DEFAULT_GRID)}")
        for key, given in grid.items():
            listed = sorted({float(v) for v in given})
            if not listed:
                raise ConfigError(f"the threshold grid of {key!r} is empty")
            values[key] = listed
    for key in ("foreground", "seed"):  # checked as Thresholds checks them
        for v in values[key]:
            Thresholds(**{key: v})
    for v in values["min_size"]:
        if v < 0 or v != int(v):
            raise ConfigError(f"min_size grid values are whole numbers >= 0, got {v!r}")
    values["min_size"] = [int(v) for v in values["min_size"]]
    return values


def _finer(values: list[float], best: float) -> list[float]:
    """The midpoints between `best` and its neighbours in a sorted grid (within [0, 1))."""
    at = values.index(best)
    out = []
    if at > 0:
        out.append((values[at - 1] + best) / 2)
    if at + 1 < len(values):
        out.append((values[at + 1] + best) / 2)
    return [round(v, 6) for v in out if 0.0 <= v < 1.0]


def choose_thresholds(outputs_list: Sequence[Any], truths_list: Sequence[Any],
                      representation: str | Representation,
                      grid: Mapping[str, Sequence[float]] | None = None, *,
                      objective: Objective = "mean_ap",
                      names: Sequence[str] | None = None) -> ThresholdChoice:
    """The thresholds that maximise the mean score over validation images.

    A coarse grid of (foreground, seed) is decoded once per image and pair and scored at
    every `min_size` of the grid (removing small objects is a filter of the matching table,
    not a new decode); then the pairs halfway between the best pair and its grid neighbours
    are tried; ties keep the earlier (coarser, lower) setting. The score of an image is the
    DSB 2018 mean AP over IoU 0.5, 0.55, ..., 0.95 (`objective="mean_ap"`) or AP@0.5
    (`"ap50"`), matched at IoU >= t (`instances.matching`), 1 for an image with no true and
    no predicted object; the mean is over images.

    Args:
        outputs_list: activated float `C x H x W` outputs, one per image.
        truths_list: the true `H x W` label images, in the same order.
        representation: a name of `targets.REPRESENTATIONS` or a `Representation`.
        grid: values per threshold ("foreground", "seed": in [0, 1); "min_size": whole
            pixels); keys left out take `DEFAULT_GRID`.
        objective: "mean_ap" or "ap50".
        names: the images' names, for messages.

    Returns:
        A `ThresholdChoice` (best thresholds, both scores, every setting tried, seconds).

    Raises:
        ConfigError: an unknown representation, objective or grid key, or an invalid value.
        DataError: no image, unequal counts, or an image refused (shape, type, values).
    """
    start = time.perf_counter()
    rep = get_representation(representation)
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective {objective!r} is not one of {', '.join(OBJECTIVES)}")
    values = _grid_values(grid)
    outputs_list, truths_list = list(outputs_list), list(truths_list)
    if not outputs_list:
        raise DataError("no validation image to choose thresholds on")
    if len(outputs_list) != len(truths_list):
        raise DataError(f"{len(outputs_list)} outputs but {len(truths_list)} true label images")
    name_list = list(names) if names is not None else [f"image {k + 1}"
                                                      for k in range(len(outputs_list))]
    maps = [object_maps(o, rep, name=n) for o, n in zip(outputs_list, name_list, strict=True)]
    for (fg, _), truth, n in zip(maps, truths_list, name_list, strict=True):
        if np.shape(truth) != fg.shape:
            raise DataError(f"the true labels are {np.shape(truth)} but the outputs "
                            f"{fg.shape}", n)
    tried: dict[tuple[float, float, int], tuple[float, float]] = {}

    def score_pair(fg_t: float, seed_t: float) -> None:
        if (fg_t, seed_t, values["min_size"][0]) in tried:
            return
        sums = np.zeros((len(values["min_size"]), 2))
        setting = Thresholds(fg_t, seed_t, 0)
        for (fg, seed), truth, n in zip(maps, truths_list, name_list, strict=True):
            ov = label_overlap(truth, _watershed(fg, seed, setting), name=n)
            for k, size in enumerate(values["min_size"]):
                sums[k] += _ap_scores(_without_small(ov, size))
        for k, size in enumerate(values["min_size"]):
            tried[(fg_t, seed_t, size)] = (sums[k, 0] / len(maps), sums[k, 1] / len(maps))

    def best() -> tuple[float, float, int]:
        column = 0 if objective == "mean_ap" else 1
        return max(tried, key=lambda key: (tried[key][column], -key[0], -key[1], -key[2]))

    # coordinate search: seeds at the middle foreground threshold, then the foreground at
    # the best seed threshold, then halfway to the neighbours of the best pair on each axis
    middle = values["foreground"][(len(values["foreground"]) - 1) // 2]
    for seed_t in values["seed"]:
        score_pair(middle, seed_t)
    _, seed_best, _ = best()
    for fg_t in values["foreground"]:
        score_pair(fg_t, seed_best)
    fg_best, seed_best, _ = best()
    for fg_t in _finer(values["foreground"], fg_best):
        score_pair(fg_t, seed_best)
    for seed_t in _finer(values["seed"], seed_best):
        score_pair(fg_best, seed_t)
    fg_best, seed_best, size_best = best()
    mean_ap, ap50 = tried[(fg_best, seed_best, size_best)]
    rows = [{"foreground": k[0], "seed": k[1], "min_size": k[2], "mean_ap": v[0],
             "ap50": v[1]} for k, v in tried.items()]
    return ThresholdChoice(thresholds=Thresholds(fg_best, seed_best, size_best),
                           objective=objective, mean_ap=float(mean_ap), ap50=float(ap50),
                           images=len(maps), tried=rows,
                           seconds=time.perf_counter() - start)
