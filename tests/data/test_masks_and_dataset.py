"""Mask encoding per task, task inference, up-front scanning and samples."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_pairs
from unetzoo.data.dataset import SegmentationDataset, scan_dataset
from unetzoo.data.layouts import Pair, find_pairs
from unetzoo.data.masks import MaskOptions, PairSurvey, decide, mask_facts, read_as
from unetzoo.data.transforms import Preprocessing, train_transform
from unetzoo.errors import DataError, MaskValueError


def surveys(*masks: np.ndarray, ext: str = ".png") -> list[PairSurvey]:
    """Surveys of masks given as arrays, named m0.png, m1.png, ..."""
    out = []
    for k, mask in enumerate(masks):
        path = Path(f"m{k}{ext}")
        out.append(PairSurvey(Pair(Path(f"i{k}.png"), path), (mask_facts(mask, path),)))
    return out


def test_binary_masks_0_255_and_0_1() -> None:
    reading = decide(surveys(np.array([[0, 255]], np.uint8), np.array([[0, 1]], np.uint8)))
    assert reading.evidence == "binary: 1 masks 0/255, 1 masks 0/1 (1 and 255 both foreground)"
    assert reading.encode(np.array([[0, 255]], np.uint8), Path("m.png")).tolist() == [[0, 1]]
    assert reading.encode(np.array([[0, 1]], np.uint8), Path("m.png")).tolist() == [[0, 1]]
    with pytest.raises(MaskValueError, match=re.escape(
            "m.png: holds 0/2, but this dataset's masks were read as binary 0/1 or 0/full")):
        reading.encode(np.array([[0, 2]], np.uint8), Path("m.png"))


def test_jpeg_mask_noise_is_thresholded_at_half_the_level() -> None:
    noisy = np.array([[0, 3, 120, 140, 250, 255, 255, 255]], np.uint8)
    reading = decide(surveys(noisy, ext=".jpg"))
    assert reading.encode(noisy, Path("m.jpg")).tolist() == [[0, 0, 0, 1, 1, 1, 1, 1]]
    with pytest.raises(DataError, match="JPEG compression changes class indices"):
        decide(surveys(noisy, ext=".jpg"), MaskOptions(task="multiclass"))


def test_multiclass_values_and_ignore() -> None:
    reading = read_as("multiclass", 3)
    assert reading.encode(np.array([[0, 2, 255]], np.uint8), Path("m.png")).tolist() == \
        [[0, 2, 255]]
    with pytest.raises(MaskValueError, match=re.escape("m.png: holds value(s) {3} that the "
                                                       "classes read from the masks")):
        reading.encode(np.array([[0, 3]], np.uint8), Path("m.png"))


def test_task_from_values() -> None:
    def task(*masks: np.ndarray) -> tuple[str, int]:
        reading = decide(surveys(*masks))
        return reading.task, reading.num_classes

    index = np.array([[0, 1, 2, 255]], np.uint8).repeat(4, 0)
    assert task(np.array([[0, 255]], np.uint8)) == ("binary", 1)
    assert task(np.array([[0, 1]], np.uint8)) == ("binary", 1)
    assert task(index) == ("multiclass", 3)


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
        scan_dataset(find_pairs(root), MaskOptions(task="binary"))


def test_samples_are_normalised_and_augmentation_is_seeded(pairs_dir: Path) -> None:
    pre = Preprocessing(3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), img_size=32)
    pairs = find_pairs(pairs_dir)
    data = SegmentationDataset(pairs, pre, read_as("binary", 1),
                               train_transform(32, "crop"), seed=3)
    a, b = data[0], data[0]
    assert a["image"].shape == (3, 32, 32) and a["mask"].shape == (32, 32)
    # 48 px images cropped to 32: no padding, so no ignore value; 0/255 masks become 0/1
    assert set(a["mask"].unique().tolist()) <= {0, 1}
    assert (a["image"] == b["image"]).all()
    data.set_epoch(1)
    assert not (data[0]["image"] == a["image"]).all()
    plain = SegmentationDataset(pairs, pre, read_as("binary", 1))[0]
    assert plain["image"].shape == (3, 48, 48)
    # without a transform: (pixel / 255 - mean) / std exactly, and the mask 255 -> 1
    pixels = np.asarray(Image.open(pairs[0].image).convert("RGB"), np.float32) / 255
    expected = torch.from_numpy((pixels - 0.5) / 0.25).permute(2, 0, 1)
    assert torch.allclose(plain["image"], expected, atol=1e-5)
    stored = np.asarray(Image.open(pairs[0].mask))
    assert (plain["mask"].numpy() == (stored == 255)).all()


def test_padding_of_small_images_is_ignored_in_the_target(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=1, size=20)
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=32)
    data = SegmentationDataset(find_pairs(root), pre, read_as("binary", 1),
                               train_transform(32, "crop", augment="none"), seed=0)
    mask = data[0]["mask"]
    assert (mask == 255).sum() == 32 * 32 - 20 * 20


def test_class_masks_encode_exclusive_and_overlapping(tmp_path: Path) -> None:
    from dataclasses import replace

    a = np.array([[255, 0, 0]], np.uint8)
    b = np.array([[0, 255, 0]], np.uint8)
    paths = [tmp_path / "tumor" / "x.png", tmp_path / "stroma" / "x.png"]
    pair = Pair(tmp_path / "x.png", class_masks=tuple(paths), class_names=("tumor", "stroma"))
    reading = decide([PairSurvey(pair, tuple(mask_facts(m, p) for m, p in zip(
        [a, b], paths, strict=True)))])
    assert (reading.task, reading.rule) == ("multiclass", "class-folders")
    assert reading.encode_classes([a, b], paths).tolist() == [[1, 2, 0]]
    both = np.array([[255, 255, 0]], np.uint8)
    multilabel = replace(reading, task="multilabel", num_classes=2)
    assert multilabel.encode_classes([a, both], paths)[..., 1].tolist() == [[1, 1, 0]]
    with pytest.raises(DataError, match="class masks tumor, stroma overlap at 1 pixel"):
        reading.encode_classes([a, both], paths)


def test_class_folder_task_is_detected_and_overridable(tmp_path: Path) -> None:
    from tests.data.builders import write_class_folders

    exclusive = find_pairs(write_class_folders(tmp_path / "x", count=2, size=16))
    overlapping = find_pairs(write_class_folders(tmp_path / "o", count=2, size=16,
                                                 overlap=True))
    info = scan_dataset(exclusive)
    assert (info.task, info.num_classes, info.class_names) == (
        "multiclass", 3, ("background", "left", "nucleus"))
    assert scan_dataset(overlapping).task == "multilabel"
    assert scan_dataset(exclusive, MaskOptions(task="multilabel")).class_names == (
        "left", "nucleus")
    with pytest.raises(DataError, match="overlap"):
        scan_dataset(overlapping, MaskOptions(task="multiclass"))


def test_a_class_folder_missing_from_training_names_its_own_mask(tmp_path: Path) -> None:
    from unetzoo.data.dataset import classes_not_in_training

    for folder in ("images", "tumor", "stroma"):
        (tmp_path / folder).mkdir()
    pairs = []
    for name, tumor, stroma in (("a", 1, 0), ("b", 1, 0), ("v", 0, 1)):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "images" / f"{name}.png")
        paths = (tmp_path / "tumor" / f"{name}.png", tmp_path / "stroma" / f"{name}.png")
        for path, on in zip(paths, (tumor, stroma), strict=True):
            mask = np.zeros((8, 8), np.uint8)
            mask[:2, :2] = 255 * on
            Image.fromarray(mask).save(path)
        pairs.append(Pair(tmp_path / "images" / f"{name}.png", split="val" if name == "v"
                          else "train", class_masks=paths, class_names=("tumor", "stroma")))
    for task, first in (("multiclass", 1), ("multilabel", 0)):
        info = scan_dataset(pairs, MaskOptions(task=task))  # type: ignore[arg-type]
        assert info.class_names[first:] == ("tumor", "stroma")
        assert classes_not_in_training(info, pairs[:2], pairs[2:], 3) == [
            "class 'stroma' has no pixels in the 2 training masks read; it is only in 1 "
            f"val/test mask(s), e.g. {tmp_path / 'stroma' / 'v.png'}: move such images into "
            "the training split. The model cannot learn it"]
    # masks read as a sample (3 of 40 pairs): the verdict is not claimed for unread masks
    assert classes_not_in_training(info, pairs[:2], pairs[2:], 40) == [
        "class 'stroma' has no pixels in the 2 training masks read (a sample of the 40 pairs; "
        f"--full-check reads them all); it is only in 1 val/test mask(s), e.g. "
        f"{tmp_path / 'stroma' / 'v.png'}: move such images into the training split. If the "
        "training masks not read lack it too, the model cannot learn it"]


def test_multilabel_samples_are_k_by_h_by_w_through_augmentation(tmp_path: Path) -> None:
    from tests.data.builders import write_class_folders

    pairs = find_pairs(write_class_folders(tmp_path / "o", count=2, size=20, overlap=True))
    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=32)
    data = SegmentationDataset(pairs, pre, read_as("multilabel", 2),
                               train_transform(32, "crop"), seed=1)
    mask = data[0]["mask"]
    assert mask.shape == (2, 32, 32) and set(mask.unique().tolist()) <= {0, 1, 255}
    assert (mask == 255).any()  # padding is ignored in every label


def test_roi_outside_is_ignored(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=1, size=8)
    roi = np.zeros((8, 8), np.uint8)
    roi[2:6, 2:6] = 255
    (root / "roi").mkdir()
    Image.fromarray(roi).save(root / "roi" / "img_000.png")
    pre = Preprocessing(3, (0.0,) * 3, (1.0,) * 3, img_size=8)
    mask = SegmentationDataset(find_pairs(root), pre, read_as("binary", 1))[0]["mask"]
    assert (mask[roi == 0] == 255).all() and (mask[roi > 0] != 255).all()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_large_datasets_check_a_sample_and_training_skips_bad_files(
        tmp_path: Path, monkeypatch, caplog) -> None:
    import logging

    import unetzoo.data.dataset as dataset_module

    root = write_pairs(tmp_path / "d", count=6, size=64)
    _truncate(root / "images" / "img_002.png")  # header intact, pixels broken
    monkeypatch.setattr(dataset_module, "SAMPLE_SIZE", 2)
    pairs = find_pairs(root)
    info = scan_dataset(pairs)  # reads the pixels of img_000 and img_005 only
    assert (info.pixels_checked, info.headers_checked) == (2, 6)
    with pytest.raises(DataError, match=re.escape("img_002.png")):
        scan_dataset(pairs, full=True)
    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=32)
    strict = SegmentationDataset(pairs, pre, info.reading)
    with pytest.raises(DataError, match=re.escape("img_002.png")):
        strict[2]
    lenient = SegmentationDataset(pairs, pre, info.reading, skip_bad=True)
    logging.getLogger("unetzoo").propagate = True
    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        assert lenient[2]["name"] == "img_003"
    assert "skipped a bad sample" in caplog.text and "img_002.png" in caplog.text
    for name in ("img_003", "img_004"):
        _truncate(root / "images" / f"{name}.png")
    monkeypatch.setattr(dataset_module, "MAX_CONSECUTIVE_BAD", 3)
    with pytest.raises(DataError, match="3 consecutive samples cannot be read"):
        lenient[2]


def test_two_workers_give_the_samples_of_zero_workers(pairs_dir: Path) -> None:
    import random

    import torch
    from torch.utils.data import DataLoader, RandomSampler

    class GlobalNoise:  # a user transform that draws from the global generators
        def __init__(self, inner) -> None:
            self.inner = inner

        def set_random_seed(self, seed: int) -> None:
            self.inner.set_random_seed(seed)

        def __call__(self, image, mask=None):
            out = self.inner(image=image, mask=mask)
            out["image"] = out["image"] + np.float32(np.random.rand() + random.random())
            return out

    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=32)
    data = SegmentationDataset(find_pairs(pairs_dir), pre, read_as("binary", 1),
                               GlobalNoise(train_transform(32, "crop")), seed=7)

    def batches(workers: int) -> list[torch.Tensor]:
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(3))
        loader = DataLoader(data, batch_size=4, sampler=sampler, num_workers=workers)
        return [torch.cat([b["image"].flatten(), b["mask"].flatten().float()]) for b in loader]

    state = np.random.get_state()[1].copy()
    zero, two = batches(0), batches(2)
    assert all(torch.equal(a, b) for a, b in zip(zero, two, strict=True))
    assert (np.random.get_state()[1] == state).all()  # the caller's generator is untouched


def test_spread_sample_includes_both_ends() -> None:
    from unetzoo.data.dataset import spread_sample

    assert spread_sample(list(range(10)), 4) == [0, 3, 6, 9]
    assert spread_sample([1, 2], 5) == [1, 2]


def test_foreground_oversampling_puts_foreground_in_every_patch():
    import numpy as np

    from unetzoo.data.transforms import train_transform

    image = np.zeros((200, 200, 3), np.float32)
    mask = np.zeros((200, 200), np.uint8)
    mask[150:154, 20:24] = 1  # one small object in a large image
    always = train_transform(32, "crop", "none", fg_oversample=1.0)
    uniform = train_transform(32, "crop", "none")
    always.set_random_seed(0)
    uniform.set_random_seed(0)
    hits = [always(image=image, mask=mask)["mask"].max() for _ in range(20)]
    assert all(h == 1 for h in hits)
    assert sum(uniform(image=image, mask=mask)["mask"].max() for _ in range(20)) < 10


@pytest.mark.parametrize("side", [200, 405, 486])
def test_resize_mode_keeps_the_mask_on_its_image(side: int) -> None:
    """A disc resized to 256 px: the mask's centroid is where the image's is (INTER_NEAREST
    would put it half a resized pixel down and right, 0.46-0.68 px here)."""
    from unetzoo.data.transforms import resize_transform

    yy, xx = np.mgrid[:side, :side]
    mask = (np.hypot(yy - 0.45 * side, xx - 0.55 * side) < 0.25 * side).astype(np.uint8)
    out = resize_transform(256)(image=np.stack([mask * 255] * 3, -1), mask=mask)
    weight = out["image"][..., 0].astype(float)  # bilinear: grey edge pixels weigh partly
    centre = [(axis * weight).sum() / weight.sum() for axis in np.mgrid[:256, :256]]
    found = np.nonzero(out["mask"])
    assert np.allclose([found[0].mean(), found[1].mean()], centre, atol=0.1)


def test_resize_mode_trains_on_the_pixels_it_predicts_on() -> None:
    """Training (the sample cache's resize) and inference shrink an image the same way,
    antialiased (OpenCV's INTER_LINEAR, albumentations' default, is not: on a 2.5x smaller
    lesion photograph it kept 1.8x the fine detail the predictor's resize keeps)."""
    import torch

    from unetzoo.data.transforms import resize_image, resize_transform

    rng = np.random.default_rng(0)
    image = rng.random((480, 640, 3), dtype=np.float32)
    trained = resize_transform(160)(image=image)["image"]
    predicted = resize_image(torch.from_numpy(image).permute(2, 0, 1)[None], 160)
    assert trained.shape == (160, 160, 3) and trained.dtype == np.float32
    np.testing.assert_array_equal(trained, predicted[0].permute(1, 2, 0).numpy())
    assert trained.std() < 0.07  # antialiased: 0.057; OpenCV's INTER_LINEAR keeps 0.204
    masks = np.zeros((480, 640), np.int64)
    masks[:, 320:] = 2
    assert set(np.unique(resize_transform(160)(image=image, mask=masks)["mask"])) == {0, 2}


def test_single_level_masks_at_many_levels_are_refused_in_one_line() -> None:
    """Nine masks, each 0 and a level of its own: not binary (nine levels), not an image
    (every file is two flat regions): the gaps refusal, not a crash."""
    masks = [np.array([[0, 3 * k + 5]], np.uint8) for k in range(9)]
    with pytest.raises(DataError, match=re.escape(
            "m2.png: mask values {0, 5, 8, 11, 14, 17, 20, 23, 26, 29} in the dataset are not "
            "class indices 0..9 (gaps); give a class map")):
        decide(surveys(*masks))
