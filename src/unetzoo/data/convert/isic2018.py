"""ISIC 2018 Task 1 skin lesions: `ISIC2018_Task1-2_{Training,Validation,Test}_Input/
ISIC_<n>.jpg` and `ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/
ISIC_<n>_segmentation.png` (0/255). The folders give the train / val / test split; a split
without its ground-truth folder (e.g. the test set before its release) is written without
masks. Images outside such folders are matched to masks by name and split at random."""

from __future__ import annotations

import re

from ...errors import DataError
from ..classmap import ClassMap
from .common import binary_class_map, binary_mask
from .source import Source
from .writer import DatasetWriter

NAME = "isic2018"
SUMMARY = "ISIC 2018 Task 1 lesions: ISIC_*.jpg with ISIC_*_segmentation.png"
SPLITS = {"training": "train", "validation": "val", "test": "test"}
_PART = re.compile(r"_(Training|Validation|Test)_(?:Input|GroundTruth)/", re.IGNORECASE)


def _split(name: str) -> str | None:
    found = _PART.search(name)
    return SPLITS[found.group(1).lower()] if found else None


def convert(source: Source, writer: DatasetWriter) -> ClassMap:
    images = {m["id"]: n for n, m in source.match(r"(?P<id>ISIC_\d+)\.jpe?g").items()}
    masks = {m["id"]: n for n, m in source.match(r"(?P<id>ISIC_\d+)_segmentation\.png").items()}
    labelled_splits = {_split(n) for n in masks.values()}
    for key, name in masks.items():
        if key not in images:
            raise DataError("segmentation has no image ISIC_*.jpg", source.where(name))
    for key in sorted(images):
        name = images[key]
        split = _split(name)
        if key not in masks and (split in labelled_splits or split is None):
            raise DataError(f"image has no {key}_segmentation.png", source.where(name))
        mask = binary_mask(source, masks[key], source.size(name)) if key in masks else None
        writer.add(name, source.read(name), mask, split)
    return binary_class_map("lesion")
