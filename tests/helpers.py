"""Helpers that build small datasets on disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetzoo.data.synthetic import synthesize


def write_pairs(root: Path, count: int = 12, size: int = 48, seed: int = 0,
                multiclass: bool = False) -> Path:
    """A paired dataset (root/images, root/masks) of synthetic nuclei, 0/255 masks, or
    index masks 0/1/2 (2 = the left half of each nucleus) with `multiclass`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = synthesize(seed, i, size)
        if multiclass:
            mask = (mask > 0).astype(np.uint8)
            mask[:, : size // 2] *= 2
        Image.fromarray(image).save(root / "images" / f"img_{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"img_{i:03d}.png")
    return root
