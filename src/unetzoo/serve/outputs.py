"""Labels into responses: the files `unetzoo predict` writes, as bytes, and the overlay the
page shows.

- binary: an 8-bit gray PNG, 0 background and 255 foreground (as `predict`);
- multiclass: a palette PNG whose pixel values are the class indices, coloured with the
  model's class colours (as `predict`);
- multilabel: one 8-bit TIFF of K pages (one per class, in the model's class order), 0/255
  (`predict` writes the same pages as K PNGs in K folders);
- instance: a label TIFF, 16-bit (32-bit past 65,535 objects), one id per object (as
  `predict`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from ..viz import class_colors, overlay, to_display


def mask_file(labels: np.ndarray, checkpoint: Any) -> tuple[bytes, str]:
    """(bytes, media type) of the mask `predict` writes for `labels` (`H x W` uint8, or
    `K x H x W` for multilabel)."""
    buffer = io.BytesIO()
    if checkpoint.task == "instance":
        import tifffile

        ids = np.asarray(labels)
        dtype = np.uint16 if ids.size == 0 or ids.max() <= np.iinfo(np.uint16).max \
            else np.uint32
        tifffile.imwrite(buffer, ids.astype(dtype), photometric="minisblack",
                         compression="zlib")
        return buffer.getvalue(), "image/tiff"
    if checkpoint.task == "multilabel":
        import tifffile

        tifffile.imwrite(buffer, (labels * 255).astype(np.uint8), photometric="minisblack",
                         metadata={"axes": "CYX", "Labels": list(checkpoint.class_names)})
        return buffer.getvalue(), "image/tiff"
    if checkpoint.task == "multiclass":
        image = Image.fromarray(labels.astype(np.uint8), mode="P")
        colors = class_colors(checkpoint.model_spec["num_classes"], checkpoint.class_colors)
        image.putpalette(colors.flatten().tolist())
    else:
        image = Image.fromarray((labels * 255).astype(np.uint8))
    image.save(buffer, format="PNG")
    return buffer.getvalue(), "image/png"


def overlay_png(image: np.ndarray, labels: np.ndarray, checkpoint: Any) -> bytes:
    """A PNG of the image (`H x W x C` in [0, 1]) with labelled pixels tinted in their class
    colour (`viz.overlay`, as the report's pictures)."""
    colors = class_colors(max(len(checkpoint.class_names), 2) + 1, checkpoint.class_colors)
    if labels.ndim == 3:  # multilabel: class k gets colour k + 1 (0 is the background's)
        colors = colors[1:]
    if checkpoint.task == "instance":  # objects in turns of the palette's colours
        colors = class_colors(13)
        ids = np.asarray(labels)
        labels = np.where(ids > 0, (ids - 1) % 12 + 1, 0)
    buffer = io.BytesIO()
    Image.fromarray(overlay(to_display(image), labels, colors)).save(buffer, format="PNG")
    return buffer.getvalue()
