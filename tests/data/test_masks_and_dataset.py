"""Mask encoding per task, task inference, up-front scanning and samples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_pairs
from unetzoo.data.dataset import SegmentationDataset, scan_dataset
from unetzoo.data.layouts import find_pairs
from unetzoo.data.masks import MaskEncoder, infer_task
from unetzoo.data.transforms import Preprocessing, train_transform
from unetzoo.errors import DataError


def test_binary_masks_0_255_and_0_1() -> None:
    enc = MaskEncoder("binary", 1)
    assert enc.encode(np.array([[0, 255]], np.uint8), Path("m.png")).tolist() == [[0, 1]]
    assert enc.encode(np.array([[0, 1]], np.uint8), Path("m.png")).tolist() == [[0, 1]]
    with pytest.raises(DataError, match=re.escape("m.png: mask values {0, 1, 2} do not fit")):
        enc.encode(np.array([[0, 1, 2]], np.uint8), Path("m.png"))


def test_jpeg_mask_noise_is_thresholded() -> None:
    noisy = np.array([[0, 3, 120, 140, 250]], np.uint8)
    assert MaskEncoder("binary", 1).encode(noisy, Path("m.jpg")).tolist() == [[0, 0, 0, 1, 1]]
    with pytest.raises(DataError, match="JPEG"):
        MaskEncoder("multiclass", 3).encode(noisy, Path("m.jpg"))


def test_multiclass_values_and_ignore() -> None:
    enc = MaskEncoder("multiclass", 3)
    assert enc.encode(np.array([[0, 2, 255]], np.uint8), Path("m.png")).tolist() == [[0, 2, 255]]
    with pytest.raises(DataError, match=re.escape("values {3} are outside the classes 0..2")):
        enc.encode(np.array([[0, 3]], np.uint8), Path("m.png"))


def test_infer_task() -> None:
    assert infer_task({0, 255}, lossy=False) == ("binary", 1)
    assert infer_task({0, 1}, lossy=False) == ("binary", 1)
    assert infer_task({0, 1, 2, 255}, lossy=False) == ("multiclass", 3)
    assert infer_task(set(range(256)), lossy=True) == ("binary", 1)


def test_scan_finds_task_channels_and_size_mismatch(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=3, size=32, multiclass=True)
    info = scan_dataset(find_pairs(root))
    assert (info.in_channels, info.task, info.num_classes) == (3, "multiclass", 3)
    assert info.class_names == ("background", "class1", "class2")
    Image.fromarray(np.zeros((31, 32), np.uint8)).save(root / "masks" / "img_001.png")
    with pytest.raises(DataError, match=re.escape("img_001.png: mask is 32x31")):
        scan_dataset(find_pairs(root))


def test_scan_reports_misfit_masks_before_training(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=2, size=16)
    mask = np.zeros((16, 16), np.uint8)
    mask[:4], mask[4:8] = 3, 7
    Image.fromarray(mask).save(root / "masks" / "img_001.png")
    with pytest.raises(DataError, match=re.escape("img_001.png: mask values")):
        scan_dataset(find_pairs(root), task="binary")


def test_samples_are_normalised_and_augmentation_is_seeded(pairs_dir: Path) -> None:
    pre = Preprocessing(3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), img_size=32)
    pairs = find_pairs(pairs_dir)
    data = SegmentationDataset(pairs, pre, MaskEncoder("binary", 1),
                               train_transform(32, "crop"), seed=3)
    a, b = data[0], data[0]
    assert a["image"].shape == (3, 32, 32) and a["mask"].shape == (32, 32)
    assert a["mask"].unique().tolist() in ([0, 1], [0], [1], [0, 1, 255], [0, 255], [1, 255])
    assert (a["image"] == b["image"]).all()
    data.set_epoch(1)
    assert not (data[0]["image"] == a["image"]).all()
    plain = SegmentationDataset(pairs, pre, MaskEncoder("binary", 1))[0]
    assert plain["image"].shape == (3, 48, 48)
    assert plain["image"].mean().abs() < 3


def test_padding_of_small_images_is_ignored_in_the_target(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=1, size=20)
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=32)
    data = SegmentationDataset(find_pairs(root), pre, MaskEncoder("binary", 1),
                               train_transform(32, "crop", augment="none"), seed=0)
    mask = data[0]["mask"]
    assert (mask == 255).sum() == 32 * 32 - 20 * 20
