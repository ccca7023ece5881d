"""What the converters share: binary masks from the formats' mask files (read by the one
binary rule of `data.masks`), size checks and the class map of a two-class dataset."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ..classmap import ClassMap
from ..masks import binarize
from .source import Source


def binary_mask(source: Source, name: str, size: tuple[int, int]) -> np.ndarray:
    """The 0/255 mask of member `name` (its one foreground level, soft edges and JPEG noise
    thresholded at half the level: `data.masks.binarize`), checked to be `size` (height,
    width)."""
    mask = binarize(source.gray_mask(name), source.where(name)) * np.uint8(255)
    check_size(source, name, mask, size)
    return mask


def check_size(source: Source, name: str, mask: np.ndarray, size: tuple[int, int]) -> None:
    if mask.shape[:2] != tuple(size):
        raise DataError(f"mask is {mask.shape[1]}x{mask.shape[0]} (W x H) but its image is "
                        f"{size[1]}x{size[0]}", source.where(name))


def binary_class_map(foreground: str) -> ClassMap:
    """Background 0 and `foreground` 255, nothing ignored: the masks the converters write."""
    return ClassMap(("background", foreground), ((0,), (255,)), None, ())


def paired(source: Source, images: dict[str, str], masks: dict[str, str], what: str
           ) -> list[tuple[str, str]]:
    """(image, mask) member names by key; an image without a mask or a mask without an
    image is an error naming the file."""
    for key, name in masks.items():
        if key not in images:
            raise DataError(f"{what} has no image with a matching name", source.where(name))
    for key, name in images.items():
        if key not in masks:
            raise DataError(f"image has no {what}", source.where(name))
    return [(images[k], masks[k]) for k in sorted(images)]
