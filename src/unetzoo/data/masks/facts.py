"""What one mask file holds: its distinct values and their pixel counts, the type's full
scale, JPEG noise, in-between values and where they lie, objects per label (`MaskFacts`,
`mask_facts`, `survey_pair`), its objects when read as an instance label image
(`ObjectFacts`), and the foreground level at which a file with in-between values is binary
(`soft_level`). Facts say nothing about what the values mean: that is the rule's
(`data.masks.rule`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from ...errors import DataError
from ...task import IGNORE_INDEX
from ..classmap import format_values
from ..io import is_lossy, read_mask
from ..layouts import Pair

# In-between pixels of a binary mask with soft edges: at most this share of its pixels, ...
MAX_BETWEEN_SHARE = 0.25
# ... at most this share of them inside a flat 3 x 3 patch of one value (a region, not an
# edge), ...
MAX_PLATEAU_SHARE = 0.10
# ... and (lossless, from BALANCE_PIXELS in-between pixels on) at least this share on each
# side of the middle, holding at least three distinct values from LEVEL_PIXELS on.
MIN_SIDE_SHARE = 0.10
BALANCE_PIXELS = 32
LEVEL_PIXELS = 8
NOISE = 1 / 8  # JPEG and float masks: values within NOISE x level of 0 or the level are at it
# Instance label images: labels that are one object each, in most files.
SINGLE_OBJECT_SHARE = 0.9
MAX_LABEL_OBJECTS = 5000  # labels counted per file, at most
# Pieces of one id: 8-connected parts of the id that do not touch even through other
# objects. A piece is distant from the id's largest when their centroids lie farther apart
# than FAR_PIECES times the sum of their equivalent radii (sqrt(area / pi)) and it holds at
# least MIN_PIECE pixels (a stray pixel beside an object is not a second object).
FAR_PIECES = 1.5
MIN_PIECE = 4
EIGHT = np.ones((3, 3), bool)


def _full_scale(array: np.ndarray) -> float:
    if np.issubdtype(array.dtype, np.integer):
        return float(np.iinfo(array.dtype).max)
    return 1.0


@dataclass(frozen=True)
class SoftFacts:
    """Values of a mask that has more than 0 and one other value, measured against a
    foreground level (by default its own: the most frequent value of its upper three
    quarters)."""

    level: float
    between: int  # pixels strictly between 0 and the level (beyond NOISE when noisy)
    below: int  # of those, below half the level
    plateau: int  # of those, inside a flat 3 x 3 patch of one value
    distinct: int  # distinct in-between values
    above: int  # pixels above the level (beyond NOISE when noisy)

    def looks_soft(self, pixels: int, noisy: bool) -> bool:
        """Two levels with in-between values on thin edges (or compression noise), not a
        third level or a region of its own."""
        if not noisy and self.above:
            return False
        if self.between > MAX_BETWEEN_SHARE * pixels:
            return False
        if self.plateau > MAX_PLATEAU_SHARE * self.between:
            return False
        if noisy:
            return True
        if self.between >= BALANCE_PIXELS and \
                min(self.below, self.between - self.below) < MIN_SIDE_SHARE * self.between:
            return False
        if self.between >= LEVEL_PIXELS:
            return self.distinct >= 3
        return self.between < 3 or self.distinct >= 2


@dataclass(frozen=True)
class LabelFacts:
    """Objects per label of an index mask with two or more non-zero labels."""

    labels: int  # distinct non-zero labels (ignored values left out)
    single: int  # labels that form exactly one connected object
    numbered: bool  # the labels are exactly 1..labels

    @property
    def one_object_each(self) -> bool:
        return self.single >= SINGLE_OBJECT_SHARE * self.labels


@dataclass(frozen=True)
class ObjectFacts:
    """The objects of a mask read as an instance label image (0 background, one id per
    object; void values left out), or of a binary mask (then one id, its pieces the
    connected components)."""

    ids: int  # distinct non-zero ids
    low: int = 0  # the smallest id (0 without any)
    high: int = 0  # the largest id
    pieces: int = 0  # pieces of all ids (see FAR_PIECES): a binary mask's components
    split: int = 0  # ids with a piece distant from their largest
    example: tuple[int, int] = (0, 0)  # the id with the most distant pieces, and their count
    thin: int = 0  # ids without a pixel whose four neighbours hold the same id (no region)


@dataclass(frozen=True)
class MaskFacts:
    """What one mask file holds (ignored values left out of `values`)."""

    path: Path
    values: np.ndarray  # distinct stored values, ascending (colour masks: 0xRRGGBB)
    counts: np.ndarray  # pixels per value
    top: float  # the type's full scale: 255, 65535, ... (1.0 for float masks)
    lossy: bool  # JPEG: values carry compression noise
    colour: bool = False
    is_float: bool = False  # float values that are not whole numbers (probability maps)
    level: float | None = None  # its own foreground level, when it has in-between values
    flat_counts: np.ndarray | None = None  # pixels per value inside a flat 3 x 3 patch
    labels: LabelFacts | None = None
    objects: ObjectFacts | None = None  # surveyed as instance labels (see `object_facts`)
    bits: int = 0  # bits of an integer type (8, 16, 32, 64); 0 for float and colour

    @property
    def flat(self) -> int:
        """Pixels inside a flat 3 x 3 patch (masks of two or more non-zero values)."""
        return int(self.flat_counts.sum()) if self.flat_counts is not None else 0

    def soft_at(self, level: float) -> SoftFacts:
        """The in-between values of this mask measured against foreground `level`."""
        tol = level * NOISE if self.noisy else 0.0
        values, counts = self.values, self.counts
        inside = (values > tol) & (values < level - tol)
        plateau = int(self.flat_counts[inside].sum()) if self.flat_counts is not None else 0
        return SoftFacts(level, int(counts[inside].sum()),
                         int(counts[inside & (values < level / 2)].sum()), plateau,
                         int(inside.sum()), int(counts[values > level + tol].sum()))

    def soft_at_level(self, level: float) -> bool:
        """Whether the mask is 0 and `level` with soft edges or noise in between."""
        return self.level is not None and self.soft_at(level).looks_soft(self.pixels,
                                                                          self.noisy)

    @property
    def soft(self) -> SoftFacts | None:
        return None if self.level is None else self.soft_at(self.level)

    @property
    def pixels(self) -> int:
        return int(self.counts.sum())

    @property
    def nonzero(self) -> np.ndarray:
        return self.values[self.values != 0]

    @property
    def two_level(self) -> bool:
        """0 and at most one other value, stored exactly."""
        return len(self.nonzero) <= 1 and not self.lossy and not self.is_float

    @property
    def noisy(self) -> bool:
        return self.lossy or self.is_float

    @property
    def own_level(self) -> float | None:
        """The file's foreground level on its own: its one non-zero value, or its soft
        level; None for an empty mask."""
        if self.two_level:
            return float(self.nonzero[0]) if len(self.nonzero) else None
        return self.level

    @property
    def looks_soft(self) -> bool:
        """0 and its own level with soft edges or noise in between."""
        return self.level is not None and self.soft_at_level(self.level)

    @property
    def looks_binary(self) -> bool:
        """0 and one level on its own: stored exactly, or with soft edges or JPEG noise."""
        return self.two_level or self.looks_soft

    def shown(self) -> str:
        if self.colour:
            return ", ".join(colour_text(int(v)) for v in self.values[:6]) + \
                (f", ... ({len(self.values)} colours)" if len(self.values) > 6 else "")
        return format_values(self.values)


def colour_text(packed: int) -> str:
    """A colour packed as 0xRRGGBB, written as "(r, g, b)"."""
    return f"({packed >> 16}, {(packed >> 8) & 255}, {packed & 255})"


def _flat(mask: np.ndarray) -> np.ndarray:
    """Pixels whose 3 x 3 neighbourhood holds one value (the inside of a region)."""
    return ndimage.minimum_filter(mask, 3, mode="nearest") == \
        ndimage.maximum_filter(mask, 3, mode="nearest")


def _own_level(values: np.ndarray, counts: np.ndarray) -> float | None:
    """A mask's foreground level on its own: the most frequent value of the upper three
    quarters of its values (1 for float masks within 0..1); None when it holds no positive
    or some negative value."""
    top_value = float(values.max(initial=0))
    if top_value <= 0 or values.min(initial=0) < 0:
        return None
    if np.issubdtype(values.dtype, np.floating):
        return 1.0 if top_value <= 1 else top_value
    upper = values >= top_value / 4
    return float(values[upper][np.argmax(counts[upper])])


def _flat_counts(mask: np.ndarray, values: np.ndarray, valid: np.ndarray | None
                 ) -> np.ndarray:
    """Pixels per value of `values` inside a flat 3 x 3 patch of the mask."""
    flat = _flat(mask)
    if valid is not None:
        flat &= valid
    found, counts = np.unique(mask[flat], return_counts=True)
    out = np.zeros(len(values), np.int64)
    where = np.searchsorted(values, found)
    keep = (where < len(values)) & (values[np.minimum(where, len(values) - 1)] == found)
    out[where[keep]] = counts[keep]
    return out


def _label_facts(mask: np.ndarray, labels: np.ndarray) -> LabelFacts | None:
    """Objects per label of an integer mask with two or more non-negative labels."""
    if len(labels) < 2 or labels.min() < 0 or len(labels) > MAX_LABEL_OBJECTS or \
            labels.max() > 4 * MAX_LABEL_OBJECTS * max(1, len(labels)):
        return None
    boxes = ndimage.find_objects(mask.astype(np.int64) if mask.dtype.kind == "u" and
                                 mask.dtype.itemsize > 4 else mask)
    eight = np.ones((3, 3), bool)
    single = 0
    for label in labels:
        box = boxes[int(label) - 1]
        if box is not None and ndimage.label(mask[box] == label, eight)[1] == 1:
            single += 1
    numbered = bool(labels[0] == 1 and labels[-1] == len(labels))
    return LabelFacts(len(labels), single, numbered)


def _value_counts(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of a gray mask, ascending, and their pixel counts."""
    if mask.dtype == np.uint8:
        counts = np.bincount(mask.ravel(), minlength=256)
        values = np.flatnonzero(counts).astype(np.uint8)
        return values, counts[values]
    return np.unique(mask, return_counts=True)


def _colour_facts(mask: np.ndarray, path: Path, lossy: bool) -> MaskFacts:
    packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) \
        | mask[..., 2].astype(np.int64)
    values, counts = np.unique(packed, return_counts=True)
    return MaskFacts(path, values, counts, _full_scale(mask), lossy, colour=True)


def mask_facts(mask: np.ndarray, path: Path, ignore: Sequence[int] = (),
               objects: bool = False) -> MaskFacts:
    """The facts of one stored mask as `io.read_mask` gives it (`H x W`, or `H x W x 3`
    colour); values in `ignore` are left out (they are void, whatever else the mask
    holds). With `objects`, a gray mask of whole numbers also gets its `ObjectFacts`: as an
    instance label image, or, when it is binary on its own (0 and one level, with soft
    edges or JPEG noise at most), as the connected components of its foreground."""
    path = Path(path)
    lossy = is_lossy(path)
    if mask.ndim == 3:
        return _colour_facts(mask, path, lossy)
    values, counts = _value_counts(mask)
    valid = None
    if ignore:
        keep = ~np.isin(values, ignore)
        if not keep.all():
            values, counts = values[keep], counts[keep]
            valid = ~np.isin(mask, ignore)
    is_float = bool(np.issubdtype(mask.dtype, np.floating))
    bits = 0 if is_float else 8 * mask.dtype.itemsize
    facts = MaskFacts(path, values, counts, _full_scale(mask), lossy, is_float=is_float,
                      bits=bits)
    if len(facts.nonzero) > 1 or facts.noisy:
        facts = replace(facts, level=_own_level(values, counts),
                        flat_counts=_flat_counts(mask, values, valid))
        if not facts.noisy and not facts.looks_soft:
            nonzero = facts.nonzero  # 255 beside other labels may be void: not an object
            facts = replace(facts, labels=_label_facts(mask, nonzero[nonzero != IGNORE_INDEX]))
    if objects and not is_float:
        facts = replace(facts, objects=_survey_objects(mask, facts, valid))
    return facts


def _survey_objects(mask: np.ndarray, facts: MaskFacts, valid: np.ndarray | None
                    ) -> ObjectFacts | None:
    """Objects of a label image, or of a binary mask's foreground (None: a JPEG mask that
    is not binary, whose ids compression has changed)."""
    if facts.looks_binary and not facts.two_level:
        level = facts.own_level
        return object_facts((mask > (level or 0) / 2).astype(np.uint8), valid)
    if facts.lossy and not facts.two_level:
        return None
    return object_facts(mask, valid)


def object_facts(labels: np.ndarray, valid: np.ndarray | None = None) -> ObjectFacts:
    """The objects of an `H x W` integer label image (0 background; pixels outside `valid`
    left out): its ids and their pieces. A piece is an 8-connected part of an id that does
    not touch the rest of it even through other objects (pieces of one id joined by a
    neighbouring object are one piece: an occluded object); pieces far from the id's
    largest (see FAR_PIECES) make the id split: two objects sharing an id."""
    foreground = labels != 0
    if valid is not None:
        foreground &= valid
    if not foreground.any():
        return ObjectFacts(0)
    components, count = ndimage.label(foreground, EIGHT)
    rows, cols = np.nonzero(foreground)
    ids, which = np.unique(labels[rows, cols], return_inverse=True)
    keys, piece, area = np.unique(which.astype(np.int64) * (count + 1) +
                                  components[rows, cols], return_inverse=True,
                                  return_counts=True)
    owner = keys // (count + 1)  # index of each piece's id in `ids`, ascending
    centres = np.stack([np.bincount(piece, weights=rows), np.bincount(piece, weights=cols)],
                       axis=1) / area[:, None]
    per_id = np.bincount(owner, minlength=len(ids))
    inside = _inside(labels)[rows, cols]
    thin = int((np.bincount(which[inside], minlength=len(ids)) == 0).sum())
    starts = np.concatenate([[0], np.cumsum(per_id)[:-1]])
    split, example = 0, (0, 0)
    for index in np.flatnonzero(per_id > 1):
        part = slice(starts[index], starts[index] + per_id[index])
        far = _distant(area[part], centres[part])
        if far:
            split += 1
            if far + 1 > example[1]:
                example = (int(ids[index]), far + 1)
    return ObjectFacts(len(ids), int(ids[0]), int(ids[-1]), len(keys), split, example, thin)


def _inside(labels: np.ndarray) -> np.ndarray:
    """Pixels whose four neighbours hold their own value (image borders count as same)."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    return (padded[:-2, 1:-1] == centre) & (padded[2:, 1:-1] == centre) & \
        (padded[1:-1, :-2] == centre) & (padded[1:-1, 2:] == centre)


def _distant(area: np.ndarray, centres: np.ndarray) -> int:
    """How many pieces of one id (their pixel counts and centroids) lie far from its
    largest piece."""
    big = int(np.argmax(area))
    radius = np.sqrt(area / np.pi)
    distance = np.hypot(*(centres - centres[big]).T)
    return int(((distance > FAR_PIECES * (radius + radius[big])) & (area >= MIN_PIECE)).sum())


@dataclass(frozen=True)
class PairSurvey:
    """The facts of a pair's masks: its mask, or one per class folder, and whether its
    class masks overlap."""

    pair: Pair
    masks: tuple[MaskFacts, ...]
    overlap: bool = False


def survey_pair(pair: Pair, ignore: Sequence[int] = (), rgb: bool = False,
                objects: bool = False) -> PairSurvey:
    """Read the masks of a labelled pair and measure them (see `MaskFacts`; with `objects`,
    also their objects as instance labels: `ObjectFacts`).

    Raises:
        DataError: naming the file, when a mask cannot be read.
    """
    if pair.class_masks:
        arrays = [read_mask(p) for p in pair.class_masks]
        facts = tuple(mask_facts(a, p, ignore) for a, p in zip(arrays, pair.class_masks,
                                                                  strict=True))
        overlap = False
        if len(arrays) > 1 and all(a.ndim == 2 and a.shape == arrays[0].shape for a in arrays):
            layers = [_own_binary(a, f) for a, f in zip(arrays, facts, strict=True)]
            overlap = bool((np.sum(layers, axis=0) > 1).any())
        return PairSurvey(pair, facts, overlap)
    if pair.mask is None:
        raise DataError("has no mask", pair.image)
    mask = read_mask(pair.mask, rgb=rgb)
    return PairSurvey(pair, (mask_facts(mask, pair.mask, ignore, objects),))


def _own_binary(mask: np.ndarray, facts: MaskFacts) -> np.ndarray:
    level = facts.own_level
    return np.zeros(mask.shape, np.uint8) if level is None else \
        (mask > level / 2).astype(np.uint8)


def soft_level(facts: MaskFacts, held: Sequence[float]) -> float | None:
    """The level of `held` (ascending) at which a mask with in-between values is binary
    with soft edges or noise: its own level when held (a noisy one when near one), else the
    smallest held level at or above all its values (a tiny object whose anti-aliased pixels
    never reach the level); None when none fits."""
    own = facts.level
    if own is None:
        return None
    if facts.noisy:
        near = nearest(own, held)
        return near if near is not None and facts.looks_soft else None
    if own in held and facts.looks_soft:
        return own
    top = float(facts.values.max())
    return next((v for v in held if v >= top and facts.soft_at_level(v)), None)


def nearest(level: float, candidates: Sequence[float]) -> float | None:
    """The candidate level nearest to a noisy `level` (by ratio), if within a factor 2."""
    near = min(candidates, key=lambda c: abs(math.log(level / c)), default=None)
    return near if near is not None and abs(math.log(level / near)) <= math.log(2) else None
