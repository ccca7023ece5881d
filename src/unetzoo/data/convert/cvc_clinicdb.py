"""CVC-ClinicDB colonoscopy polyps: `Original/<n>.tif` and `Ground Truth/<n>.tif` (612
frames of 384 x 288). The PNG copy some mirrors ship beside the TIFFs (`PNG/Original/`,
`PNG/Ground Truth/`) is used only when there is no TIFF. Masks are thresholded at half their
range. The frames come from 31 video sequences and the dataset has no official split: the
seeded random split keeps frames of one sequence in several splits."""

from __future__ import annotations

from ..classmap import ClassMap
from .common import binary_class_map, binary_mask, paired
from .source import Source
from .writer import DatasetWriter

NAME = "cvc-clinicdb"
SUMMARY = "CVC-ClinicDB polyps: Original/ and Ground Truth/ (.tif)"


def convert(source: Source, writer: DatasetWriter) -> ClassMap:
    for ext in ("tif", "tiff", "png"):
        images = {m["n"]: name for name, m in
                  source.match(rf"Original/(?P<n>\d+)\.{ext}").items()}
        if images:
            break
    masks = {m["n"]: name for name, m in
             source.match(rf"Ground ?Truth/(?P<n>\d+)\.{ext}").items()}
    for image, mask in paired(source, images, masks, "ground-truth mask"):
        size = source.size(image)
        writer.add(image, source.read(image), binary_mask(source, mask, size), None)
    return binary_class_map("polyp")
