"""Instance label images as targets (--task instance): a stored mask becomes an int32 label
image with its ids as stored (0 background, `IGNORE_LABEL` for void pixels), whatever its
type (uint8/16/32, int, float of whole numbers); with --instances-from-components, a binary
mask's connected components become its objects. A file whose ids wrapped past its type's
largest value, or a binary mask among label images, is refused naming the file
(MaskValueError), as the survey refuses them before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ...task import IGNORE_LABEL
from . import refusals
from .facts import EIGHT, MaskFacts, mask_facts

# Ids wrapped past the type's largest value: at least WRAP_FILL of the type's values are
# ids, and at least WRAP_SPLIT ids lie in distant pieces (objects sharing an id).
WRAP_FILL = 0.9
WRAP_SPLIT = 2
INT32_MAX = np.iinfo(np.int32).max


def wrapped(facts: MaskFacts) -> bool:
    """Whether a label file of at most 16 bits holds more objects than its type: its ids
    fill the type and several lie in distant pieces."""
    objects = facts.objects
    return objects is not None and 0 < facts.bits <= 16 and \
        objects.ids >= WRAP_FILL * facts.top and objects.split >= WRAP_SPLIT


def binary_among_labels(facts: MaskFacts) -> bool:
    """A binary mask where a label image is expected: 0 and one level whose pixels lie in
    distant pieces (several objects under one id), or 0 and one level with soft edges or
    JPEG noise (in-between values would become ids)."""
    if facts.two_level:
        return facts.objects is not None and facts.objects.split > 0
    return facts.looks_soft


def encode_labels(mask: np.ndarray, path: Path, ignore: tuple[int, ...] = (),
                  components: bool = False) -> np.ndarray:
    """The int32 `H x W` label image of a stored mask as `io.read_mask` gives it: ids as
    stored (renumbered 1..N in order only when they exceed int32), 0 background,
    `IGNORE_LABEL` where the mask holds a value of `ignore`. With `components`, a mask that
    is binary on its own (0 and one level, soft edges or JPEG noise at most) gives its
    8-connected foreground components as objects.

    Raises:
        MaskValueError: naming `path`, for colour masks, fractional or negative values, ids
            wrapped past the type's largest value, and (without `components`) a binary mask
            of several distant objects.
    """
    path = Path(path)
    if mask.ndim != 2:
        raise refusals.colour_among_gray(mask, path)
    if np.issubdtype(mask.dtype, np.floating):  # io.read_mask keeps whole numbers as ints
        raise refusals.fractional_labels(len(np.unique(mask)), float(mask.min()),
                                         float(mask.max()), path)
    void = np.isin(mask, ignore) if ignore else None
    kept = mask if void is None else mask[~void]
    if kept.size and kept.min() < 0:
        raise refusals.negative_instance_label(kept.min(), path)
    if components or _needs_survey(mask):
        facts = mask_facts(mask, path, ignore, objects=True)
        if components and facts.looks_binary:
            return _components(mask, facts, void)
        if binary_among_labels(facts):
            raise refusals.binary_for_instances(facts)
        if wrapped(facts):
            raise refusals.wrapped_ids(facts)
    labels = _as_int32(mask)
    if void is not None:
        labels[void] = IGNORE_LABEL
    return labels


def _needs_survey(mask: np.ndarray) -> bool:
    """Whether a label file may be a binary mask (one non-zero value) or hold wrapped ids
    (a type of at most 16 bits with nearly every value used): then its objects are
    measured."""
    if mask.dtype.itemsize <= 2 and mask.dtype.kind == "u":
        used = np.count_nonzero(np.bincount(mask.ravel())[1:])
        return used <= 1 or used >= WRAP_FILL * np.iinfo(mask.dtype).max
    nonzero = mask[mask != 0]
    return not nonzero.size or bool((nonzero == nonzero[0]).all())


def _components(mask: np.ndarray, facts: MaskFacts, void: np.ndarray | None) -> np.ndarray:
    level = facts.own_level
    foreground = np.zeros(mask.shape, bool) if level is None else mask > level / 2
    if void is not None:
        foreground &= ~void
    labels = ndimage.label(foreground, EIGHT)[0].astype(np.int32)
    if void is not None:
        labels[void] = IGNORE_LABEL
    return labels


def _as_int32(mask: np.ndarray) -> np.ndarray:
    """int32 ids as stored; ids beyond int32 (uint32, int64) renumbered 1..N in order."""
    if mask.dtype.itemsize < 4 or mask.dtype == np.int32 or mask.max(initial=0) <= INT32_MAX:
        return mask.astype(np.int32)
    positive = mask > 0
    ids = np.unique(mask[positive])
    labels = np.zeros(mask.shape, np.int32)
    labels[positive] = np.searchsorted(ids, mask[positive]) + 1
    return labels
