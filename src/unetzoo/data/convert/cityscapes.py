"""Cityscapes fine annotations: `leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_
leftImg8bit.png` and `gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png`.
Label ids are mapped to the 19 training ids of the official labels table (cityscapesScripts
helpers/labels.py), every other id to 255 (ignored). The test split's labels are withheld,
so it is left out; `val` is the usual evaluation split."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ..classmap import ClassMap
from .source import Source
from .writer import DatasetWriter

NAME = "cityscapes"
SUMMARY = "Cityscapes gtFine: labelIds mapped to the 19 training ids, 255 ignored"

# (name, label id, colour) of the 19 evaluated classes, in training-id order.
TRAIN_CLASSES: tuple[tuple[str, int, tuple[int, int, int]], ...] = (
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)), ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)), ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)), ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)), ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
LABEL_IDS = 34  # ids 0..33; all but the 19 above are void or not evaluated


def train_id_table() -> np.ndarray:
    """256-entry lookup: label id -> training id (255 for ignored ids and unknown values)."""
    table = np.full(256, 255, np.uint8)
    for train_id, (_, label_id, _) in enumerate(TRAIN_CLASSES):
        table[label_id] = train_id
    return table


def class_map() -> ClassMap:
    return ClassMap(tuple(c[0] for c in TRAIN_CLASSES),
                    tuple((k,) for k in range(len(TRAIN_CLASSES))),
                    tuple(c[2] for c in TRAIN_CLASSES), (255,))


def convert(source: Source, writer: DatasetWriter) -> ClassMap:
    stem = r"(?P<city>[^/]+)/(?P<key>(?P=city)_\d+_\d+)"
    images = {(m["split"], m["key"]): n for n, m in
              source.match(rf"leftImg8bit/(?P<split>train|val)/{stem}_leftImg8bit\.png").items()}
    labels = {(m["split"], m["key"]): n for n, m in
              source.match(rf"gtFine/(?P<split>train|val)/{stem}_gtFine_labelIds\.png").items()}
    table = train_id_table()
    for key, name in labels.items():
        if key not in images:
            raise DataError("label image has no leftImg8bit image", source.where(name))
    for key in sorted(images):
        name = images[key]
        if key not in labels:
            raise DataError(f"image has no gtFine/{key[0]}/.../{key[1]}_gtFine_labelIds.png",
                            source.where(name))
        ids = source.index_mask(labels[key])
        if ids.max(initial=0) >= LABEL_IDS:
            bad = sorted({int(v) for v in np.unique(ids) if v >= LABEL_IDS})[:5]
            raise DataError(f"label ids {bad} are outside the Cityscapes ids 0..33",
                            source.where(labels[key]))
        height, width = source.size(name)
        if ids.shape != (height, width):
            raise DataError(f"labels are {ids.shape[1]}x{ids.shape[0]} (W x H) but the image is "
                            f"{width}x{height}", source.where(labels[key]))
        writer.add(name, source.read(name), table[ids], key[0])
    return class_map()
