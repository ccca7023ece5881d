"""What stored mask values mean: one rule for the whole dataset, used by `inspect`, `train`,
`eval`, the converters and the class-folder layout.

`survey_pair` reads what the masks of a pair hold (`MaskFacts`: distinct values and their
pixel counts, the type's full scale, JPEG or not, in-between values and where they lie,
objects per label); `decide` turns the facts of a dataset (a spread sample, or every pair
with --full-check) into a `MaskReading`: the task, the classes, which stored value or colour
is which class, the ignored values, the threshold, and the evidence as one line. The reading
then encodes every mask into the task's target and stops, naming the file, at a value it
cannot hold. The rules (docs/datasets.md has them as a table):

- binary: every mask holds 0 and one foreground level. 1 and the type's full scale (255,
  65535) are both foreground when they never share a file (datasets merged from two
  sources); any single level is foreground when it is the only one (0/100 masks).
- binary with in-between values: masks whose values cluster at 0 and their foreground level,
  the in-between values on thin edges (anti-aliasing, interpolation: no flat regions, on both
  sides of the middle, many distinct values) or JPEG noise, are thresholded at half their
  level (a 0/1 JPEG at 0.5, a 0/255 one at 127.5); the in-between share is reported.
- multiclass: the values are class indices 0..K-1 (255 is void when it shares files with
  other labels, as in Pascal VOC), or evenly spaced values (0/85/170/255) read as classes in
  their order; the mapping is printed.
- refused with one line naming a file, its values and what resolves it: indices with gaps or
  without a background 0 (a class map, or --task multiclass), instance label images (one
  integer per object: --instances trains foreground = any label), hundreds of values or
  intensity-like values such as a probability map or an image saved as a mask
  (--mask-threshold), colour masks of several colours (a class map: a ready one is printed),
  JPEG index masks.
- colour masks: gray stored as RGB is gray (io.read_mask); black plus one colour is binary.
- class folders hold one binary mask per class, read by the binary rule; a single folder of
  index masks is read as index masks instead, several are refused.

A region-of-interest mask (DRIVE's field of view) turns the pixels outside it into ignored
pixels of the target.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError, MaskValueError
from ..task import IGNORE_INDEX, Task
from .classmap import ClassMap, Color, class_map_from_dict, format_value, format_values
from .io import is_lossy, read_mask
from .layouts import Pair

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
MAX_INDEX = IGNORE_INDEX - 1  # the largest class index a uint8 target holds
MANY_VALUES = 64  # more distinct values than this are not class indices of one dataset
# Index masks are regions: with more than SMOOTH_VALUES values, fewer than MIN_FLAT_SHARE of
# the pixels inside flat 3 x 3 patches is an image or a probability map.
SMOOTH_VALUES = 8
MIN_FLAT_SHARE = 0.5
# Instance label images: labels that are one object each, in most files.
SINGLE_OBJECT_SHARE = 0.9
INSTANCE_FILE_SHARE = 0.8
MAX_LABEL_OBJECTS = 5000  # labels counted per file, at most
RULES = ("binary", "index", "instances", "threshold", "colour", "class-map", "class-folders")


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

    def shown(self) -> str:
        if self.colour:
            return ", ".join(_colour_text(int(v)) for v in self.values[:6]) + \
                (f", ... ({len(self.values)} colours)" if len(self.values) > 6 else "")
        return format_values(self.values)


def _colour_text(packed: int) -> str:
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


def mask_facts(mask: np.ndarray, path: Path, ignore: Sequence[int] = ()) -> MaskFacts:
    """The facts of one stored mask as `io.read_mask` gives it; values in `ignore` are
    left out (they are void, whatever else the mask holds)."""
    path = Path(path)
    lossy = is_lossy(path)
    if mask.ndim == 3:
        packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) \
            | mask[..., 2].astype(np.int64)
        values, counts = np.unique(packed, return_counts=True)
        return MaskFacts(path, values, counts, _full_scale(mask), lossy, colour=True)
    if mask.dtype == np.uint8:
        counts = np.bincount(mask.ravel(), minlength=256)
        values = np.flatnonzero(counts).astype(np.uint8)
        counts = counts[values]
    else:
        values, counts = np.unique(mask, return_counts=True)
    valid = None
    if ignore:
        keep = ~np.isin(values, ignore)
        if not keep.all():
            values, counts = values[keep], counts[keep]
            valid = ~np.isin(mask, ignore)
    is_float = bool(np.issubdtype(mask.dtype, np.floating))
    facts = MaskFacts(path, values, counts, _full_scale(mask), lossy, is_float=is_float)
    if len(facts.nonzero) <= 1 and not facts.noisy:
        return facts
    facts = replace(facts, level=_own_level(values, counts),
                    flat_counts=_flat_counts(mask, values, valid))
    if not facts.noisy and not facts.looks_soft:
        nonzero = facts.nonzero  # 255 beside other labels may be void: not an object label
        facts = replace(facts, labels=_label_facts(mask, nonzero[nonzero != IGNORE_INDEX]))
    return facts


@dataclass(frozen=True)
class PairSurvey:
    """The facts of a pair's masks: its mask, or one per class folder, and whether its
    class masks overlap."""

    pair: Pair
    masks: tuple[MaskFacts, ...]
    overlap: bool = False


def survey_pair(pair: Pair, ignore: Sequence[int] = (), rgb: bool = False) -> PairSurvey:
    """Read the masks of a labelled pair and measure them (see `MaskFacts`).

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
    return PairSurvey(pair, (mask_facts(read_mask(pair.mask, rgb=rgb), pair.mask, ignore),))


def _own_binary(mask: np.ndarray, facts: MaskFacts) -> np.ndarray:
    level = facts.own_level
    return np.zeros(mask.shape, np.uint8) if level is None else \
        (mask > level / 2).astype(np.uint8)


@dataclass(frozen=True)
class MaskOptions:
    """What the user said about the masks (flags or YAML keys)."""

    task: Task | None = None
    num_classes: int | None = None
    class_map: ClassMap | None = None
    ignore_index: int | None = None
    instances: bool = False  # instance label images: foreground = any label
    threshold: float | None = None  # stored values above it are foreground

    @property
    def ignore(self) -> tuple[int, ...]:
        return () if self.ignore_index is None else (self.ignore_index,)


@dataclass(frozen=True)
class MaskReading:
    """How the stored masks of a dataset become targets, and why (`evidence`).

    rule: binary (0 and a foreground level; `levels` are the stored levels, plus the
    type's full scale with `full_scale`; in-between values thresholded at half the level),
    index (class k is stored as `values[k]`), instances (any non-zero value), threshold
    (stored values above `threshold`), colour (`color` on black), class-map, class-folders
    (one binary mask per class, read by the binary rule). `ignore` values are void.
    """

    task: Task
    num_classes: int
    rule: str
    evidence: str = ""
    levels: tuple[float, ...] = ()
    full_scale: bool = False
    soft: bool = False  # binary: some masks have in-between values (soft edges, noise)
    values: tuple[int, ...] = ()
    ignore: tuple[int, ...] = ()
    threshold: float | None = None
    color: Color | None = None
    class_map: ClassMap | None = field(default=None, compare=False)
    class_names: tuple[str, ...] = ()
    surveyed: int = 0  # masks whose values the decision read

    @property
    def reads_rgb(self) -> bool:
        return self.class_map is not None and self.class_map.by_color

    # -- encoding ---------------------------------------------------------------------
    def encode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """The uint8 `H x W` target (class indices, `IGNORE_INDEX` for ignored pixels) of a
        stored mask as `io.read_mask(path, rgb=self.reads_rgb)` gives it.

        Raises:
            MaskValueError: naming `path`, for values this reading cannot hold.
        """
        path = Path(path)
        if self.class_map is not None:
            return self.class_map.encode(mask, path)
        if self.rule == "colour":
            return self._colour(mask, path)
        if mask.ndim != 2:
            raise MaskValueError(f"colour mask ({_colours_of(mask)}) in a dataset of gray "
                                 "masks; store it as gray or give a class map with colours",
                                 path)
        void = np.isin(mask, self.ignore) if self.ignore else None
        if self.rule in ("binary", "class-folders"):
            target = self.binary(mask, path)
        elif self.rule == "instances":
            if mask.min(initial=0) < 0:
                raise MaskValueError(f"instance labels must be >= 0, found "
                                     f"{format_value(mask.min())}", path)
            target = (mask != 0).astype(np.uint8)
        elif self.rule == "threshold":
            target = (mask > self.threshold).astype(np.uint8)
        else:
            target = self._index(mask, path)
        if void is not None:
            target[void] = IGNORE_INDEX
        return target

    def binary(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """{0, 1} uint8 of a binary mask: values above half the file's foreground level.

        Raises:
            MaskValueError: a level this reading does not hold, or in-between values that
                are not soft edges or compression noise.
        """
        facts = mask_facts(mask, path, self.ignore)
        level = self.level_of(facts)
        if level is None:
            return np.zeros(mask.shape, np.uint8)
        return (mask > level / 2).astype(np.uint8)

    def level_of(self, facts: MaskFacts) -> float | None:
        """The foreground level of a binary mask file under this reading (None: empty).

        Raises:
            MaskValueError: naming the file when no level of the reading fits it.
        """
        held = sorted({*self.levels, *([facts.top] if self.full_scale else [])})
        if facts.two_level:
            if not len(facts.nonzero):
                return None
            value = float(facts.nonzero[0])
            if self._holds(value, facts.top):
                return value
            above = [v for v in held if v > value and value not in (1.0, facts.top)]
            if self.soft and above:  # an anti-aliased pixel of a tiny object
                return above[0]
            raise MaskValueError(f"holds 0/{format_value(value)}, but this dataset's masks "
                                 f"were read as {self.describe_levels()}" + _more_hint(self),
                                 facts.path)
        level = _soft_level(facts, held)
        if level is not None:
            return level
        raise MaskValueError(f"holds values {{{facts.shown()}}}: not 0 and one foreground "
                             "level with anti-aliased edges or JPEG noise (a third value, or a "
                             f"region of in-between values), but this dataset's masks were "
                             f"read as {self.describe_levels()}" + _more_hint(self),
                             facts.path)

    def _holds(self, value: float, top: float) -> bool:
        return value in self.levels or (self.full_scale and value == top)

    def describe_levels(self) -> str:
        shown = [f"0/{format_value(v)}" for v in self.levels]
        if self.full_scale:
            shown.append("0/full scale (255, 65535)")
        return "binary " + " or ".join(shown) if shown else "binary"

    def _index(self, mask: np.ndarray, path: Path) -> np.ndarray:
        values, inverse = np.unique(mask, return_inverse=True)
        lookup = {v: k for k, v in enumerate(self.values)}
        lookup.update((v, IGNORE_INDEX) for v in self.ignore)
        unknown = [v for v in values.tolist() if v not in lookup]
        if unknown:
            raise MaskValueError(
                f"holds value(s) {{{format_values(unknown)}}} that the classes read from the "
                f"masks ({self.mapping()}) cannot hold; if the survey of "
                f"{self.surveyed} masks missed a class, pass --num-classes (class indices) or "
                "--full-check, or give a class map", path)
        table = np.array([lookup[v] for v in values.tolist()], np.uint8)
        return table[inverse].reshape(mask.shape)

    def _colour(self, mask: np.ndarray, path: Path) -> np.ndarray:
        rgb = mask if mask.ndim == 3 else np.repeat(mask[..., None], 3, axis=2)
        colour = np.asarray(self.color, rgb.dtype)
        fg = (rgb == colour).all(axis=2)
        bg = (rgb == 0).all(axis=2)
        if not (fg | bg).all():
            other = rgb[~(fg | bg)][0]
            raise MaskValueError(f"holds colour {tuple(int(c) for c in other)}, but this "
                                 f"dataset's masks were read as black background and "
                                 f"{tuple(self.color or ())} foreground; give a class map with "
                                 "colours", path)
        return fg.astype(np.uint8)

    def encode_classes(self, masks: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
        """The target of one binary mask per class: binary `H x W`, multiclass `H x W`
        (class k + 1 where mask k is set, 0 elsewhere) or multilabel `H x W x K`.

        Raises:
            DataError: class masks of different sizes, or overlapping ones for a
                multiclass task; MaskValueError for a mask that is not binary.
        """
        if self.rule != "class-folders":  # a single folder of index masks
            return self.encode(masks[0], paths[0])
        layers = [self.binary(m, p) if m.ndim == 2 else self.encode(m, p)
                  for m, p in zip(masks, paths, strict=True)]
        if any(layer.shape != layers[0].shape for layer in layers):
            sizes = ", ".join(f"{p.name} {m.shape[1]}x{m.shape[0]}"
                              for m, p in zip(layers, paths, strict=True))
            raise DataError(f"class masks differ in size: {sizes}", paths[0])
        if self.task == "multilabel":
            return np.stack(layers, axis=-1)
        if self.task == "binary":
            return layers[0]
        stack = np.stack(layers)
        overlap = stack.sum(0) > 1
        if overlap.any():
            both = [p.parent.name for p, layer in zip(paths, layers, strict=True)
                    if (layer.astype(bool) & overlap).any()]
            raise DataError(f"class masks {', '.join(both)} overlap at {int(overlap.sum())} "
                            "pixel(s); a multiclass target needs exclusive masks (use --task "
                            "multilabel)", paths[0])
        return (stack * np.arange(1, len(layers) + 1, dtype=np.uint8)[:, None, None]).sum(
            0).astype(np.uint8)

    # -- description ------------------------------------------------------------------
    def mapping(self) -> str:
        """Stored value -> class, as printed (index rule)."""
        identity = self.values == tuple(range(len(self.values)))
        if identity:
            text = f"classes 0..{len(self.values) - 1}"
        else:
            text = ", ".join(f"{v} -> {k}" for k, v in enumerate(self.values))
        if self.ignore:
            text += f"; {format_values(self.ignore)} ignored"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and the run folder's dataset.json)."""
        return {"task": self.task, "num_classes": self.num_classes, "rule": self.rule,
                "evidence": self.evidence, "levels": list(self.levels),
                "full_scale": self.full_scale, "soft": self.soft, "values": list(self.values),
                "ignore": list(self.ignore), "threshold": self.threshold,
                "color": list(self.color) if self.color else None,
                "class_map": self.class_map.to_dict() if self.class_map else None,
                "class_names": list(self.class_names), "surveyed": self.surveyed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskReading:
        cmap = data.get("class_map")
        color = data.get("color")
        return cls(data["task"], int(data["num_classes"]), data["rule"],
                   data.get("evidence", ""), tuple(float(v) for v in data.get("levels", ())),
                   bool(data.get("full_scale")), bool(data.get("soft")),
                   tuple(int(v) for v in data.get("values", ())),
                   tuple(int(v) for v in data.get("ignore", ())), data.get("threshold"),
                   (int(color[0]), int(color[1]), int(color[2])) if color else None,
                   class_map_from_dict(cmap) if cmap else None,
                   tuple(data.get("class_names", ())), int(data.get("surveyed", 0)))


def _soft_level(facts: MaskFacts, held: Sequence[float]) -> float | None:
    """The level of `held` (ascending) at which a mask with in-between values is binary
    with soft edges or noise: its own level when held (a noisy one when near one), else the
    smallest held level at or above all its values (a tiny object whose anti-aliased pixels
    never reach the level); None when none fits."""
    own = facts.level
    if own is None:
        return None
    if facts.noisy:
        near = _nearest(own, held)
        return near if near is not None and facts.looks_soft else None
    if own in held and facts.looks_soft:
        return own
    top = float(facts.values.max())
    return next((v for v in held if v >= top and facts.soft_at_level(v)), None)


def _nearest(level: float, candidates: Sequence[float]) -> float | None:
    """The candidate level nearest to a noisy `level` (by ratio), if within a factor 2."""
    near = min(candidates, key=lambda c: abs(math.log(level / c)), default=None)
    return near if near is not None and abs(math.log(level / near)) <= math.log(2) else None


def _more_hint(reading: MaskReading) -> str:
    return (f" (decided from {reading.surveyed} masks; --full-check reads every mask before "
            "training)" if reading.surveyed else "")


def _colours_of(mask: np.ndarray) -> str:
    flat = np.unique(mask.reshape(-1, mask.shape[-1]), axis=0)
    shown = ", ".join(str(tuple(int(c) for c in row)) for row in flat[:4])
    return shown + (f", ... ({len(flat)} colours)" if len(flat) > 4 else "")


# -- the decision ---------------------------------------------------------------------------

def decide(surveys: Sequence[PairSurvey], options: MaskOptions | None = None
           ) -> MaskReading:
    """The reading of a dataset's masks from the surveys of (a sample of) its pairs.

    Args:
        surveys: `survey_pair` of each pair read, labelled pairs only.
        options: what the user said (task, classes, class map, ignore value, --instances,
            --mask-threshold); each overrides what the values alone would say.

    Returns:
        The MaskReading, its `evidence` one line such as "binary: 612 masks 0/255, 58
        masks 0/1, 31 masks with 0.4 % in-between pixels, threshold 50 %".

    Raises:
        DataError: one line naming a file, the values found and the flag or class-map
            entry that resolves it, when the values are not read as meant on their own.
        ConfigError: options that contradict each other or the layout.
    """
    options = options or MaskOptions()
    if not surveys:
        raise DataError("no labelled masks to read")
    folders = surveys[0].pair.class_names if surveys[0].pair.class_masks else ()
    facts = [f for s in surveys for f in s.masks]
    if options.class_map is not None:
        reading = _by_class_map(options, bool(folders))
    elif folders:
        reading = _class_folders(surveys, folders, options)
    elif options.instances:
        reading = _instances(facts, options)
    elif options.threshold is not None:
        reading = _thresholded(facts, options)
    elif any(f.colour for f in facts):
        reading = _colour(facts, options)
    else:
        reading = _gray(facts, options)
    if options.num_classes and options.num_classes != reading.num_classes:
        raise ConfigError(f"--num-classes {options.num_classes} does not fit these masks, read "
                          f"as {reading.evidence}")
    return replace(reading, surveyed=len(surveys))


def _check_given(options: MaskOptions, task: Task) -> None:
    if options.task is not None and options.task != task:
        raise ConfigError(f"--task {options.task} does not fit these masks (read as {task}); "
                          f"drop --task or change the masks")
    if options.task == "multilabel":
        raise ConfigError("multilabel targets are built from one binary mask per class "
                          "(class folders or mask:<class> CSV columns)")


def _by_class_map(options: MaskOptions, folders: bool) -> MaskReading:
    cmap = options.class_map
    assert cmap is not None
    if folders:
        raise ConfigError("a class map applies to index or colour masks; class folders "
                          "take their class names from the folder names")
    task = options.task or ("binary" if cmap.num_classes == 2 else "multiclass")
    if task == "multilabel":
        raise ConfigError("a class map gives exclusive classes: use --task multiclass")
    names = cmap.names[1:] if task == "binary" else cmap.names
    where = f" {cmap.source}" if cmap.source else ""
    return MaskReading(task, 1 if task == "binary" else cmap.num_classes, "class-map",
                       f"{task}: {cmap.num_classes} classes from the class map{where}",
                       class_map=cmap, class_names=tuple(names))


def _instances(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    _check_given(options, "binary")
    if any(f.colour or f.noisy for f in facts):
        bad = next(f for f in facts if f.colour or f.noisy)
        raise DataError(f"--instances reads integer label images; this mask holds "
                        f"{'colours' if bad.colour else 'JPEG or float values'} "
                        f"{{{bad.shown()}}}", bad.path)
    labels = [len(f.nonzero) for f in facts]
    top = max((float(f.values.max(initial=0)) for f in facts), default=0.0)
    return MaskReading("binary", 1, "instances",
                       f"binary (--instances): foreground = any non-zero label, {len(facts)} "
                       f"label images with {min(labels)} to {max(labels)} labels (largest "
                       f"{format_value(top)})", ignore=options.ignore)


def _thresholded(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    _check_given(options, "binary")
    if any(f.colour for f in facts):
        bad = next(f for f in facts if f.colour)
        raise DataError(f"--mask-threshold applies to gray masks; this one holds colours "
                        f"{{{bad.shown()}}}", bad.path)
    low = min(float(f.values.min(initial=0)) for f in facts)
    high = max(float(f.values.max(initial=0)) for f in facts)
    return MaskReading("binary", 1, "threshold",
                       f"binary (--mask-threshold): stored values above "
                       f"{format_value(options.threshold or 0)} are foreground (values "
                       f"{format_value(low)}..{format_value(high)} in {len(facts)} masks)",
                       threshold=options.threshold, ignore=options.ignore)


@dataclass
class _Levels:
    """Foreground levels found in masks read as binary."""

    exact: Counter = field(default_factory=Counter)  # "0/x" -> files
    soft: dict = field(default_factory=dict)  # "0/x" -> (file, level) with in-between values
    empty: int = 0
    tags: set = field(default_factory=set)  # "one", "full", or a raw level
    full: set = field(default_factory=set)  # full-scale levels met (255, 65535)
    files: dict = field(default_factory=dict)  # tag -> a file holding it

    def add_all(self, facts: Sequence[MaskFacts]) -> list[MaskFacts]:
        """Add every mask that reads as binary on its own (0 and one level, 1 or the full
        scale with soft edges or noise), then those whose in-between values fit a level of
        the others (a tiny object after a resize: 0, 40, 90 among 0/255 masks) or their
        own. Returns the masks that do not read as binary."""
        later, refused = [], []
        for f in facts:
            if f.two_level and f.own_level in (None, 1.0, f.top):
                self.add(f, f.own_level)
            elif f.noisy:
                level = _nearest(f.level, [1.0, f.top]) if f.level else None
                if f.looks_soft:
                    self.add(f, level or round(f.level or 0))
                else:
                    refused.append(f)
            elif f.looks_soft and f.level in (1.0, f.top):
                self.add(f, f.level)
            else:
                later.append(f)
        for f in sorted(later, key=lambda f: not f.two_level):
            held = sorted({1.0 if t == "one" else f.top if t == "full" else float(t)
                           for t in self.tags})
            if f.two_level:  # 0/64 among anti-aliased 0/255 masks: a tiny object's pixel
                own = f.own_level or 0.0
                above = [v for v in held if v > own] if self.soft else []
                self.add(f, above[0] if above else own, soft=bool(above))
                continue
            level = _soft_level(f, held)
            if level is None and f.looks_soft:
                level = f.level
            if level is None:
                refused.append(f)
            else:
                self.add(f, level)
        return refused

    def add(self, facts: MaskFacts, level: float | None, soft: bool = False) -> None:
        if level is None:
            self.empty += 1
            return
        if facts.two_level and not soft:
            self.exact[f"0/{format_value(level)}"] += 1
        else:
            self.soft.setdefault(f"0/{format_value(level)}", []).append((facts, level))
        tag = "one" if level == 1 else "full" if level == facts.top else level
        if tag == "full":
            self.full.add(format_value(level))
        self.tags.add(tag)
        self.files.setdefault(tag, facts.path)

    @property
    def binary(self) -> bool:
        return self.tags <= {"one", "full"} or len(self.tags) == 1

    def reading(self, count: int, names: tuple[str, ...] = ()) -> MaskReading:
        raw = {float(t) for t in self.tags if t not in ("one", "full")}
        levels = tuple(sorted(raw | ({1.0} if "one" in self.tags or not self.tags else set())))
        full = "full" in self.tags or not self.tags
        parts = [f"{n} masks {kind}" for kind, n in self.exact.most_common()]
        for kind, files in self.soft.items():
            share = sum(f.soft_at(level).between for f, level in files) / \
                max(1, sum(f.pixels for f, _ in files))
            what = "JPEG masks" if all(f.lossy for f, _ in files) else "masks"
            parts.append(f"{len(files)} {what} {kind} with {100 * share:.1f} % in-between "
                         "pixels")
        if self.empty:
            parts.append(f"{self.empty} empty masks")
        text = "binary: " + ", ".join(parts)
        if {"one", "full"} <= self.tags:
            text += f" (1 and {' and '.join(sorted(self.full))} both foreground)"
        if self.soft:
            text += ", threshold 50 %"
        if not self.tags:
            text += f" ({count} masks read, none with foreground)"
        return MaskReading("binary", 1, "binary", text, levels, full, class_names=names,
                           soft=bool(self.soft))


def _gray(facts: list[MaskFacts], options: MaskOptions, what: str = "") -> MaskReading:
    if options.task == "multilabel":
        _check_given(options, "multilabel")
    multi = [f for f in facts if not f.two_level]
    if options.task != "multiclass":
        levels = _Levels()
        if not levels.add_all(facts) and levels.binary:
            return replace(levels.reading(len(facts)), ignore=options.ignore)
    lossy = [f for f in multi if f.lossy and (options.task == "multiclass" or
                                              not f.looks_soft)]
    if lossy:
        f = lossy[0]
        raise DataError(f"JPEG mask with values {{{f.shown()}}}: JPEG compression changes "
                        "class indices; store index masks as PNG or TIFF (binary JPEG masks "
                        "are read: 0 and one level plus noise)", f.path)
    floats = [f for f in facts if f.is_float]
    if floats:
        f = floats[0]
        raise DataError(f"holds {len(f.values)} fractional values between "
                        f"{format_value(f.values.min())} and {format_value(f.values.max())} "
                        "(a probability map?), not 0 and one foreground level with soft edges;"
                        " pass --mask-threshold 0.5 to read values above 0.5 as foreground",
                        f.path)
    try:
        reading: MaskReading | None = _index(facts, options, what)
    except DataError:
        if options.task != "binary":
            raise
        reading = None
    if options.task == "binary" and (reading is None or reading.task != "binary"):
        f = _first(facts, lambda f: not f.two_level and not f.looks_soft) or facts[0]
        raise DataError(f"mask values {{{f.shown()}}} are not 0 and one foreground level "
                        "(with soft edges or JPEG noise at most), as --task binary needs; drop "
                        "--task binary to read them as classes, or pass --instances to read "
                        "every non-zero value as foreground", f.path)
    return reading


def _evenly_spaced(values: list[int]) -> bool:
    """0, s, 2s, ... (or 0, round(top k / n), ..., top) with a step s >= 2."""
    if len(values) < 3 or values[0] != 0:
        return False
    n = len(values) - 1
    return values[1] >= 2 and all(abs(v - k * values[-1] / n) <= 1
                                  for k, v in enumerate(values))


def _instance_like(facts: list[MaskFacts]) -> bool:
    """Most label files hold one object per label, and the labels are numbered per image
    (varying counts) or do not recur from image to image."""
    labelled = [f for f in facts if f.labels is not None]
    if not labelled:
        return False
    blobby = sum(f.labels.one_object_each for f in labelled if f.labels)
    if blobby < INSTANCE_FILE_SHARE * len(labelled):
        return False
    counts = [f.labels.labels for f in labelled if f.labels]
    if max(counts) >= 10 or max(float(f.nonzero.max()) for f in labelled) > IGNORE_INDEX:
        return True
    union = {v for f in labelled for v in f.nonzero.tolist() if v != IGNORE_INDEX}
    recurring = sum(counts) >= 1.5 * len(union)
    return len(labelled) >= 3 and (len(set(counts)) >= 3 or not recurring)


def _index(facts: list[MaskFacts], options: MaskOptions, what: str = "") -> MaskReading:
    """Index masks: class indices, evenly spaced values, or a refusal."""
    union = sorted({v for f in facts for v in f.values.tolist()})
    example = _first(facts, lambda f: len(f.nonzero) > 1) or facts[0]
    negative = [f for f in facts if f.values.min(initial=0) < 0]
    if negative:
        f = negative[0]
        raise DataError(f"mask values {{{f.shown()}}} include negative values; class indices "
                        "are >= 0 (pass --ignore-index for a void value)", f.path)
    instance = _instance_like(facts)
    if _evenly_spaced(union) and not instance:
        return _classes(tuple(union), options.ignore, options, facts,
                        f"stored {format_values(union, 12)} -> classes 0..{len(union) - 1} "
                        "(evenly spaced values)")
    void = tuple(options.ignore)
    if not void and IGNORE_INDEX in union and any(
            IGNORE_INDEX in f.values and len(f.nonzero) > 1 for f in facts):
        void = (IGNORE_INDEX,)
    classes = [v for v in union if v not in void]
    contiguous = bool(classes) and classes == list(range(len(classes)))
    if options.task == "multiclass" and classes and classes[-1] <= MAX_INDEX:
        count = max(classes[-1] + 1, options.num_classes or 0, 2)
        return _classes(tuple(range(count)), void, options, facts, "")
    multi = [f for f in facts if len(f.nonzero) > 1]
    flat = sum(f.flat for f in multi) / max(1, sum(f.pixels for f in multi))
    if len(classes) > SMOOTH_VALUES and flat < MIN_FLAT_SHARE and not instance:
        f = max(multi, key=lambda f: len(f.values))
        raise DataError(f"holds {len(f.values)} distinct values ({f.shown()}) that change "
                        f"from pixel to pixel ({100 * f.flat / f.pixels:.0f} % of pixels inside "
                        "flat regions): an image or a probability map, not class indices; pass "
                        "--mask-threshold T to read values above T as foreground, or check "
                        "that the mask folder holds masks", f.path)
    if contiguous and not instance and classes[-1] <= MAX_INDEX:
        count = max(len(classes), options.num_classes or 0)
        return _classes(tuple(range(count)), void, options, facts, "")
    if instance:
        f = _first(facts, lambda f: f.labels is not None and f.labels.one_object_each) or example
        labels = f.nonzero[f.nonzero != IGNORE_INDEX] if f.labels else f.nonzero
        void_note = " besides 255" if len(labels) < len(f.nonzero) else ""
        raise DataError(f"holds {len(labels)} labels ({format_values(labels)}){void_note}, one "
                        "object each: an instance label image, not class indices; pass "
                        "--instances to train foreground = any label (binary), or --task "
                        "multiclass if the values are classes", f.path)
    if len(classes) > MANY_VALUES or (classes and classes[-1] > MAX_INDEX):
        f = max(facts, key=lambda f: len(f.values))
        raise DataError(f"holds {len(f.values)} distinct values ({f.shown()}): not class "
                        "indices 0..254; if it is an image or a probability map, pass "
                        "--mask-threshold T to read values above T as foreground; if the "
                        "values are object labels, pass --instances", f.path)
    def misfit(f: MaskFacts) -> bool:
        return any(v not in range(len(classes)) for v in f.nonzero.tolist() if v not in void)

    f = _first(facts, lambda f: len(f.nonzero) > 1 and misfit(f)) or _first(facts, misfit) \
        or example
    entries = ", ".join(f"{{name: class{k}, index: {v}}}" for k, v in enumerate(classes[:6]))
    more = ", ..." if len(classes) > 6 else ""
    why = "hold no background 0" if 0 not in classes else \
        f"are not class indices 0..{len(classes) - 1} (gaps)"
    raise DataError(f"mask values {{{format_values(classes, 12)}}} in the dataset{what} {why};"
                    f" give a class map (classes.yaml: classes: [{entries}{more}]), or --task "
                    "multiclass to read the values as class indices with unseen classes",
                    f.path)


def _first(facts: list[MaskFacts], test) -> MaskFacts | None:
    return next((f for f in facts if test(f)), None)


def _classes(values: tuple[int, ...], void: tuple[int, ...], options: MaskOptions,
             facts: list[MaskFacts], note: str) -> MaskReading:
    """A multiclass reading of stored `values` (class k = values[k]), or binary when there
    are two classes with a void value."""
    if options.num_classes and len(values) > options.num_classes:
        raise DataError(f"mask values {{{format_values(values, 12)}}} hold {len(values)} "
                        f"classes, more than --num-classes {options.num_classes}",
                        facts[0].path)
    in_files = sum(any(v in f.values for v in void) for f in facts)
    voids = (f"; {format_values(void)} = void (ignored) in {in_files} masks" if in_files
             else "")
    if len(values) == 2 and values == (0, 1) and options.task != "multiclass":
        count = Counter("0/1" if len(f.nonzero) else "empty" for f in facts)
        return MaskReading("binary", 1, "binary",
                           f"binary: {count['0/1']} masks 0/1{voids}", (1.0,), False,
                           ignore=void)
    text = note or f"the stored values 0..{len(values) - 1} are the class indices"
    return MaskReading("multiclass", len(values), "index",
                       f"multiclass: {len(values)} classes, {text}{voids}", values=values,
                       ignore=void)


def _colour(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    colours: Counter = Counter()
    for f in facts:
        if f.colour:
            colours.update(dict(zip(f.values.tolist(), f.counts.tolist(), strict=True)))
        else:  # gray value v is the colour (v, v, v)
            colours.update({int(v) * 0x010101: int(c) for v, c in zip(
                f.values.tolist(), f.counts.tolist(), strict=True)})
    lossy = _first(facts, lambda f: f.colour and f.lossy)
    others = [c for c in colours if c != 0]
    example = _first(facts, lambda f: f.colour) or facts[0]
    if lossy is None and len(others) == 1 and options.task in (None, "binary"):
        color = (others[0] >> 16, (others[0] >> 8) & 255, others[0] & 255)
        return MaskReading("binary", 1, "colour",
                           f"binary: colour {color} = foreground, black = background in "
                           f"{len(facts)} RGB masks", color=color)
    shown = [c for c, _ in colours.most_common(8 if lossy else 12)]
    entries = ", ".join(
        f"{{name: {'background' if c == 0 else f'class{k}'}, color: [{c >> 16}, "
        f"{(c >> 8) & 255}, {c & 255}]}}" for k, c in enumerate(sorted(shown)))
    what = f"JPEG colour masks ({len(colours)} colours, most common shown)" if lossy else \
        f"colour masks with {len(colours)} colours"
    raise DataError(f"{what}: give a class map naming them (classes.yaml: classes: "
                    f"[{entries}{', ...' if len(colours) > len(shown) else ''}])",
                    (lossy or example).path)


def _class_folders(surveys: Sequence[PairSurvey], folders: tuple[str, ...],
                   options: MaskOptions) -> MaskReading:
    facts = [f for s in surveys for f in s.masks]
    if any(f.colour for f in facts):
        f = next(f for f in facts if f.colour)
        raise DataError(f"class folders hold binary masks; this one holds colours "
                        f"{{{f.shown()}}}", f.path)
    levels = _Levels()
    not_binary = levels.add_all(facts)
    if not_binary or not levels.binary:
        # a mask that is not binary, or one of another level than the first
        f = not_binary[0] if not_binary else next(
            x for x in facts if x.path == list(levels.files.values())[-1])
        if len(folders) == 1 and options.task != "multilabel":
            reading = _gray(facts, options, f" of {folders[0]}/")
            note = f" ({folders[0]}/ holds index masks: read as the mask folder)"
            return replace(reading, evidence=reading.evidence + note)
        raise DataError(f"class folder {f.path.parent.name}/ holds masks with values "
                        f"{{{f.shown()}}}, not binary masks (0 and one level): a folder per "
                        "class holds binary masks; keep index masks in one mask folder",
                        f.path)
    overlap = any(s.overlap for s in surveys)
    task = options.task or ("multilabel" if overlap else "binary" if len(folders) == 1
                            else "multiclass")
    if task == "binary" and len(folders) != 1:
        raise ConfigError(f"a binary task needs one class folder, found {len(folders)}")
    base = levels.reading(len(facts))
    count, names = (len(folders) + 1, ("background", *folders)) if task == "multiclass" \
        else (len(folders), folders)
    kind = "overlapping" if overlap else "exclusive"
    text = (f"{task}: {len(folders)} class folder(s) ({', '.join(folders)}) of {kind} "
            f"binary masks: {base.evidence.removeprefix('binary: ')}")
    return replace(base, task=task, num_classes=count, rule="class-folders", evidence=text,
                   class_names=names, ignore=options.ignore)


# -- reading targets ------------------------------------------------------------------------

def load_target(pair: Pair, reading: MaskReading, size: tuple[int, int] | None = None
                ) -> np.ndarray:
    """The target of a labelled pair: read, encoded, checked against the image `size`
    (height, width), with pixels outside its region of interest set to `IGNORE_INDEX`.

    Raises:
        DataError: naming the file, for unreadable masks, size mismatches and (as
            MaskValueError) values the reading cannot hold.
    """
    if pair.class_masks:
        target = reading.encode_classes(
            [read_mask(p, rgb=reading.reads_rgb) for p in pair.class_masks],
            list(pair.class_masks))
        where = pair.class_masks[0]
    elif pair.mask is not None:
        target = reading.encode(read_mask(pair.mask, rgb=reading.reads_rgb), pair.mask)
        where = pair.mask
    else:
        raise DataError("has no mask", pair.image)
    if size is not None and target.shape[:2] != tuple(size):
        raise DataError(f"mask is {target.shape[1]}x{target.shape[0]} (W x H) but its image "
                        f"{pair.image} is {size[1]}x{size[0]}", where)
    if pair.roi is not None:
        roi = binarize(read_mask(pair.roi), pair.roi)
        if roi.shape != target.shape[:2]:
            raise DataError(f"region-of-interest mask is {roi.shape[1]}x{roi.shape[0]} but its "
                            f"mask is {target.shape[1]}x{target.shape[0]}", pair.roi)
        target[roi == 0] = IGNORE_INDEX
    return target


def binarize(mask: np.ndarray, path: Path) -> np.ndarray:
    """{0, 1} uint8 of one binary mask read on its own (a region of interest, a converter's
    mask file): the binary rule with the file's own foreground level.

    Raises:
        DataError: naming `path`, for colour masks and masks that are not binary (0 and one
            level, with soft edges or JPEG noise at most).
    """
    path = Path(path)
    if mask.ndim != 2:
        raise DataError(f"expected a one-channel binary mask, got shape {mask.shape}", path)
    facts = mask_facts(mask, path)
    level = facts.own_level
    if not facts.two_level and not facts.looks_soft:
        raise DataError(f"holds values {{{facts.shown()}}}: not a binary mask (0 and one "
                        "level, with soft edges or JPEG noise at most)", path)
    return np.zeros(mask.shape, np.uint8) if level is None else \
        (mask > level / 2).astype(np.uint8)


def read_as(task: Task, num_classes: int, *, ignore_index: int | None = None,
            class_map: ClassMap | None = None) -> MaskReading:
    """The reading given by a task alone (no survey): binary 0 and 1 or the full scale
    (multilabel: one such mask per class), multiclass class indices 0..K-1 with 255 void,
    or the class map's."""
    if class_map is not None:
        return _by_class_map(MaskOptions(task, num_classes, class_map), False)
    ignore = (ignore_index,) if ignore_index is not None else \
        (IGNORE_INDEX,) if task == "multiclass" else ()
    if task in ("binary", "multilabel"):
        rule = "binary" if task == "binary" else "class-folders"
        return MaskReading(task, num_classes, rule, f"{task}: 0 and 1 or the full scale",
                           (1.0,), True, ignore=ignore)
    return MaskReading(task, num_classes, "index", f"{task}: classes 0..{num_classes - 1}",
                       values=tuple(range(num_classes)), ignore=ignore)
