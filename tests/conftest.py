"""Shared fixtures: small datasets built in the test, the optional real datasets beside the
project, and determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetzoo.data.synthetic import synthesize

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests use small tensors: one thread each avoids oversubscribing the cores when pytest-xdist
# runs several workers (and under load from other processes).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_dataset():
    """Return a function giving ../shared/data/NAME, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = SHARED_DATA / name
        if not (path / "split.csv").is_file():
            pytest.skip(f"shared dataset {name} not present at {path}")
        return path

    return get


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


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    """A 12-image binary paired dataset of 48 x 48 synthetic nuclei."""
    return write_pairs(tmp_path / "data")
