"""Small datasets in the layouts and public formats people have, built on disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetzoo.data.synthetic import synthesize


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_class_folders(root: Path, count: int = 8, size: int = 32, overlap: bool = False,
                        splits: tuple[str, ...] = ("train", "val"), test_images: int = 0
                        ) -> Path:
    """`root/<split>/images` plus class folders `nucleus/` and `left/` of 0/255 masks.

    Exclusive (multiclass): `left` is the left half of each nucleus and `nucleus` the rest;
    with `overlap` (multilabel), `nucleus` is the whole nucleus. `test_images` adds a
    `test/images` folder without masks.
    """
    index = 0
    for split in splits:
        for _ in range(count):
            image, mask = synthesize(0, index, size)
            left = np.zeros_like(mask)
            left[:, : size // 2] = mask[:, : size // 2]
            nucleus = mask if overlap else np.where(left > 0, 0, mask).astype(np.uint8)
            name = f"{split}_{index:03d}.png"
            png(root / split / "images" / name, image)
            png(root / split / "nucleus" / name, nucleus)
            png(root / split / "left" / name, left)
            index += 1
    for i in range(test_images):
        png(root / "test" / "images" / f"test_{i:03d}.png", synthesize(1, i, size)[0])
    return root
