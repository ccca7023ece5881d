"""The index rule: the stored values are class indices 0..K-1 (255 is void when it shares
files with other labels, as in Pascal VOC), or evenly spaced values (0/85/170/255) read as
classes in their order. Values that are not class indices are refused, each with what they
look like: instance label images (one integer per object), images or probability maps
(values changing from pixel to pixel), hundreds of values, gaps or no background 0 (a class
map is printed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from ...task import IGNORE_INDEX
from ..classmap import format_values
from . import refusals
from .facts import MaskFacts
from .reading import MaskOptions, MaskReading

MAX_INDEX = IGNORE_INDEX - 1  # the largest class index a uint8 target holds
MANY_VALUES = 64  # more distinct values than this are not class indices of one dataset
# Index masks are regions: with more than SMOOTH_VALUES values, fewer than MIN_FLAT_SHARE of
# the pixels inside flat 3 x 3 patches is an image or a probability map.
SMOOTH_VALUES = 8
MIN_FLAT_SHARE = 0.5
# Instance label images: labels that are one object each, in most files.
INSTANCE_FILE_SHARE = 0.8


def first(facts: Sequence[MaskFacts], test: Callable[[MaskFacts], bool]) -> MaskFacts | None:
    """The first mask passing `test`, else None."""
    return next((f for f in facts if test(f)), None)


def evenly_spaced(values: list[int]) -> bool:
    """0, s, 2s, ... (or 0, round(top k / n), ..., top) with a step s >= 2."""
    if len(values) < 3 or values[0] != 0:
        return False
    n = len(values) - 1
    return values[1] >= 2 and all(abs(v - k * values[-1] / n) <= 1
                                  for k, v in enumerate(values))


def instance_like(facts: Sequence[MaskFacts]) -> bool:
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


def label_example(facts: Sequence[MaskFacts]) -> MaskFacts:
    """The mask shown when label images are found: the first with one object per label."""
    return first(facts, lambda f: f.labels is not None and f.labels.one_object_each) or \
        first(facts, lambda f: len(f.nonzero) > 1) or facts[0]


def label_values(f: MaskFacts) -> tuple[np.ndarray, str]:
    """The labels of a label image as shown in messages (255 beside them left out as void)
    and a note saying so."""
    labels = f.nonzero[f.nonzero != IGNORE_INDEX] if f.labels else f.nonzero
    return labels, " besides 255" if len(labels) < len(f.nonzero) else ""


def index_reading(facts: Sequence[MaskFacts], options: MaskOptions, what: str = ""
                  ) -> MaskReading:
    """Index masks: class indices, evenly spaced values, or a refusal.

    Raises:
        DataError: values that are not class indices (see the module docstring).
    """
    union = sorted({v for f in facts for v in f.values.tolist()})
    negative = first(facts, lambda f: f.values.min(initial=0) < 0)
    if negative is not None:
        raise refusals.negative_values(negative)
    instance = instance_like(facts)
    if evenly_spaced(union) and not instance:
        return classes_reading(tuple(union), options.ignore, options, facts,
                               f"stored {format_values(union, 12)} -> classes "
                               f"0..{len(union) - 1} (evenly spaced values)")
    void = _void(facts, union, options)
    classes = [v for v in union if v not in void]
    reading = _as_indices(facts, classes, void, options, instance)
    if reading is None:
        raise _not_indices(facts, classes, void, instance, what)
    return reading


def _void(facts: Sequence[MaskFacts], union: list[int], options: MaskOptions
          ) -> tuple[int, ...]:
    """The void values: the given one, else 255 when it shares a file with other labels."""
    if options.ignore:
        return tuple(options.ignore)
    if IGNORE_INDEX in union and any(IGNORE_INDEX in f.values and len(f.nonzero) > 1
                                     for f in facts):
        return (IGNORE_INDEX,)
    return ()


def _as_indices(facts: Sequence[MaskFacts], classes: list[int], void: tuple[int, ...],
                options: MaskOptions, instance: bool) -> MaskReading | None:
    """The values as class indices (any, with --task multiclass; else 0..K-1 without gaps,
    when they are not label images); None when they are not."""
    fits = bool(classes) and classes[-1] <= MAX_INDEX
    if options.task == "multiclass" and fits:
        count = max(classes[-1] + 1, options.num_classes or 0, 2)
        return classes_reading(tuple(range(count)), void, options, facts, "")
    _refuse_smooth(facts, classes, instance)
    if fits and not instance and classes == list(range(len(classes))):
        count = max(len(classes), options.num_classes or 0)
        return classes_reading(tuple(range(count)), void, options, facts, "")
    return None


def _refuse_smooth(facts: Sequence[MaskFacts], classes: list[int], instance: bool) -> None:
    """Refuse many values that change from pixel to pixel: an image or a probability map."""
    multi = [f for f in facts if len(f.nonzero) > 1]
    flat = sum(f.flat for f in multi) / max(1, sum(f.pixels for f in multi))
    if multi and len(classes) > SMOOTH_VALUES and flat < MIN_FLAT_SHARE and not instance:
        raise refusals.image_not_indices(max(multi, key=lambda f: len(f.values)))


def _not_indices(facts: Sequence[MaskFacts], classes: list[int], void: tuple[int, ...],
                 instance: bool, what: str) -> Exception:
    """Why values are not class indices, naming the mask that shows it."""
    if instance:
        f = label_example(facts)
        return refusals.instance_labels(f, *label_values(f))
    if len(classes) > MANY_VALUES or (classes and classes[-1] > MAX_INDEX):
        return refusals.too_many_values(max(facts, key=lambda f: len(f.values)))

    def misfit(f: MaskFacts) -> bool:
        return any(v not in range(len(classes)) for v in f.nonzero.tolist() if v not in void)

    f = first(facts, lambda f: len(f.nonzero) > 1 and misfit(f)) or first(facts, misfit) \
        or first(facts, lambda f: len(f.nonzero) > 1) or facts[0]
    return refusals.not_class_indices(f, classes, what)


def classes_reading(values: tuple[int, ...], void: tuple[int, ...], options: MaskOptions,
                    facts: Sequence[MaskFacts], note: str) -> MaskReading:
    """A multiclass reading of stored `values` (class k = values[k]), or binary when there
    are two classes with a void value.

    Raises:
        DataError: more classes than --num-classes.
    """
    if options.num_classes and len(values) > options.num_classes:
        raise refusals.more_classes_than_given(values, options.num_classes, facts[0].path)
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
