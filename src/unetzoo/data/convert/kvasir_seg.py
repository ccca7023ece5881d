"""Kvasir-SEG gastrointestinal polyps: `Kvasir-SEG/images/<id>.jpg` and
`Kvasir-SEG/masks/<id>.jpg` (1000 pairs of varying size). The masks are JPEGs whose
compression noise is thresholded at half the range; `kavsir_bboxes.json` is not used.
There is no official split: a seeded 80/10/10 split is written."""

from __future__ import annotations

from ..classmap import ClassMap
from .common import binary_class_map, binary_mask, paired
from .source import Source
from .writer import DatasetWriter

NAME = "kvasir-seg"
SUMMARY = "Kvasir-SEG polyps: images/ and masks/ (.jpg, JPEG-noisy masks thresholded)"


def convert(source: Source, writer: DatasetWriter) -> ClassMap:
    pattern = r"(?P<kind>images|masks)/(?P<id>[^/]+)\.(?:jpg|jpeg|png)"
    found = source.match(pattern)
    images = {m["id"]: n for n, m in found.items() if m["kind"] == "images"}
    masks = {m["id"]: n for n, m in found.items() if m["kind"] == "masks"}
    for image, mask in paired(source, images, masks, "mask"):
        size = source.size(image)
        writer.add(image, source.read(image), binary_mask(source, mask, size), None)
    return binary_class_map("polyp")
