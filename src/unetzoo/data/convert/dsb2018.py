"""2018 Data Science Bowl (BBBC038) stage1_train: `stage1_train/<id>/images/<id>.png` (RGBA)
and one 0/255 PNG per nucleus in `stage1_train/<id>/masks/`. The nucleus masks are merged
into one binary mask; `instances` also writes a 16-bit instance label map per image
(nucleus k of the sorted mask files is label k; where masks overlap, the later one wins)."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np

from ...errors import DataError
from ..classmap import ClassMap
from .common import binary_class_map, binary_mask
from .source import Source
from .writer import DatasetWriter

log = logging.getLogger("unetzoo")

NAME = "dsb2018"
SUMMARY = "2018 Data Science Bowl stage1_train: nuclei, one mask file per nucleus"


def convert(source: Source, writer: DatasetWriter, instances: bool = False) -> ClassMap:
    images = {m["id"]: name for name, m in source.match(r"(?P<id>[^/]+)/images/(?P=id)\.png")
              .items()}
    masks: dict[str, list[str]] = defaultdict(list)
    for name, m in source.match(r"(?P<id>[^/]+)/masks/[^/]+\.png").items():
        if m["id"] not in images:
            raise DataError("nucleus mask has no image (expected "
                            f"{m['id']}/images/{m['id']}.png)", source.where(name))
        masks[m["id"]].append(name)
    overlaps = 0
    for key in sorted(images):
        name = images[key]
        if not masks[key]:
            raise DataError(f"image has no nucleus masks in {key}/masks/", source.where(name))
        size = source.size(name)
        merged = np.zeros(size, np.uint8)
        labels = np.zeros(size, np.uint16)
        for label, mask_name in enumerate(sorted(masks[key]), start=1):
            nucleus = binary_mask(source, mask_name, size) > 0
            overlaps += int((nucleus & (labels > 0)).any())
            merged[nucleus] = 255
            labels[nucleus] = label
        writer.add(name, source.read(name), merged, None,
                   instances=labels if instances else None)
    if overlaps:
        log.warning("%d nucleus mask(s) overlap an earlier one; the instance map keeps the "
                    "later", overlaps)
    return binary_class_map("nucleus")
