"""From a labelled pair to its training target under the dataset's reading: its mask (or
class masks) read and encoded, checked against the image's size, and pixels outside a
region-of-interest mask (DRIVE's field of view) set to `IGNORE_INDEX`; and `binarize`, the
binary rule applied to one file on its own (regions of interest, converters)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DataError
from ...task import IGNORE_INDEX, IGNORE_LABEL
from ..io import read_mask
from ..layouts import Pair
from . import refusals
from .facts import mask_facts
from .reading import MaskReading


def load_target(pair: Pair, reading: MaskReading, size: tuple[int, int] | None = None
                ) -> np.ndarray:
    """The target of a labelled pair: read, encoded, checked against the image `size`
    (height, width), with pixels outside its region of interest set to `IGNORE_INDEX`
    (`IGNORE_LABEL` in an instance label image).

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
        raise refusals.mask_size(target, pair.image, size, where)
    if pair.roi is not None:
        roi = binarize(read_mask(pair.roi), pair.roi)
        if roi.shape != target.shape[:2]:
            raise refusals.roi_size(roi, target, pair.roi)
        target[roi == 0] = IGNORE_LABEL if reading.task == "instance" else IGNORE_INDEX
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
        raise refusals.not_one_channel(mask, path)
    facts = mask_facts(mask, path)
    level = facts.own_level
    if not facts.two_level and not facts.looks_soft:
        raise refusals.not_a_binary_mask(facts)
    return np.zeros(mask.shape, np.uint8) if level is None else \
        (mask > level / 2).astype(np.uint8)


class InstanceEncoder:
    """What an instance model learns from a label image: `instances.targets.encode`'s
    channels of its representation, then a validity channel (0 where the label image is
    `IGNORE_LABEL`: void, padding, outside a region of interest), as float32
    `(C + 1) x H x W` (what `losses.InstanceLoss` takes). Picklable: it runs in the
    data-loading workers, after augmentation (`SegmentationDataset(target_encoder=...)`)."""

    def __init__(self, representation: str) -> None:
        from ...instances.targets import get_representation

        self.representation = get_representation(representation).name

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        from ...instances.targets import encode

        valid = labels != IGNORE_LABEL
        encoded = encode(np.where(valid, labels, 0), self.representation)
        return np.concatenate([encoded.targets, valid[None].astype(np.float32)])
