"""DRIVE retinal vessels, the official training.zip and test.zip (or their extracted
folders): `training/images/21_training.tif`, `training/1st_manual/21_manual1.gif`,
`training/mask/21_training_mask.gif`; `test/images/01_test.tif`, `test/1st_manual/
01_manual1.gif`, `test/mask/01_test_mask.gif`. The first observer's manual segmentation is
the ground truth; the field-of-view masks go to `roi/` (pixels outside it are ignored by
losses and metrics) unless `fov=False`. Test images without `1st_manual` (as on the
challenge site) are written without masks, for prediction."""

from __future__ import annotations

from ...errors import DataError
from ..classmap import ClassMap
from .common import binary_class_map, binary_mask
from .source import Source
from .writer import DatasetWriter

NAME = "drive"
SUMMARY = "DRIVE retinal vessels: training.zip / test.zip (.tif images, .gif manual and FOV)"
SPLITS = {"training": "train", "test": "test"}


def convert(source: Source, writer: DatasetWriter, fov: bool = True) -> ClassMap:
    for part, split in SPLITS.items():
        images = {m["n"]: name for name, m in
                  source.match(rf"{part}/images/(?P<n>\d+)_{part}\.tif").items()}
        manual = {m["n"]: name for name, m in
                  source.match(rf"{part}/1st_manual/(?P<n>\d+)_manual1\.gif").items()}
        fovs = {m["n"]: name for name, m in
                source.match(rf"{part}/mask/(?P<n>\d+)_{part}_mask\.gif").items()}
        for number, name in manual.items():
            if number not in images:
                raise DataError("manual segmentation has no image", source.where(name))
        if split == "train" and images and not manual:
            raise DataError(f"no {part}/1st_manual/*_manual1.gif found", source.path)
        for number in sorted(images):
            name = images[number]
            size = source.size(name)
            if split == "train" and number not in manual:
                raise DataError("image has no 1st_manual segmentation", source.where(name))
            if fov and number not in fovs:
                raise DataError(f"image has no field-of-view mask ({part}/mask/{number}_{part}"
                                "_mask.gif); pass --no-fov to convert without", source.where(name))
            mask = binary_mask(source, manual[number], size) if number in manual else None
            roi = binary_mask(source, fovs[number], size) if fov else None
            writer.add(name, source.read(name), mask, split, roi=roi)
    return binary_class_map("vessel")
