"""Validate a dataset up front, then read, encode and transform samples lazily."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..task import Task, check_task
from .io import LOSSY_EXTENSIONS, image_channels, read_array, read_image, read_mask
from .layouts import Pair
from .masks import MaskEncoder, infer_task
from .transforms import Preprocessing

log = logging.getLogger("unetzoo")


@dataclass(frozen=True)
class DatasetInfo:
    """What a scan of the dataset found: channels, task, classes and sizes."""

    in_channels: int
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    sizes: tuple[tuple[int, int], ...]


def default_class_names(task: Task, num_classes: int) -> tuple[str, ...]:
    if task == "binary":
        return ("foreground",)
    if task == "multiclass":
        return ("background", *(f"class{k}" for k in range(1, num_classes)))
    return tuple(f"class{k + 1}" for k in range(num_classes))


def scan_dataset(pairs: Sequence[Pair], task: Task | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None) -> DatasetInfo:
    """Read every image and mask once, before any training, and fail on the first problem:
    unreadable or empty files, image/mask size mismatch, mask values that fit no task.

    The task and number of classes are inferred from the mask values unless given.
    """
    if not pairs:
        raise DataError("the dataset has no samples")
    channels = 1
    values: set[int] = set()
    lossy = False
    sizes = []
    mask_values: list[tuple[np.ndarray, Path]] = []
    for pair in pairs:
        image = read_array(pair.image)
        channels = max(channels, image_channels(image))
        sizes.append(image.shape[:2])
        if pair.mask is None:
            continue
        mask = read_mask(pair.mask)
        if mask.shape[:2] != image.shape[:2]:
            raise DataError(f"mask is {mask.shape[1]}x{mask.shape[0]} (W x H) but its image "
                            f"{pair.image} is {image.shape[1]}x{image.shape[0]}", pair.mask)
        if mask.ndim != 2:
            raise DataError(f"colour mask of shape {mask.shape} needs a class map "
                            "(gray index or 0/255 masks are read directly)", pair.mask)
        lossy |= pair.mask.suffix.lower() in LOSSY_EXTENSIONS
        uniques = np.unique(mask)
        values.update(int(v) for v in uniques)
        mask_values.append((uniques, pair.mask))
    if task is None:
        task, inferred = infer_task(values, lossy)
        num_classes = num_classes or inferred
        log.info("task inferred from mask values: %s with %d class(es)", task, num_classes)
    num_classes = num_classes or (1 if task == "binary" else max(values, default=1) + 1)
    check_task(task, num_classes)
    encoder = MaskEncoder(task, num_classes)
    for uniques, path in mask_values:
        encoder.check_values(uniques, path)
    names = tuple(class_names) if class_names else default_class_names(task, num_classes)
    if len(names) != (1 if task == "binary" else num_classes):
        raise DataError(f"{len(names)} class names given for {num_classes} classes")
    return DatasetInfo(channels, task, num_classes, names, tuple(sizes))


def channel_statistics(pairs: Sequence[Pair], channels: int, limit: int = 64
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over up to `limit` images spread through `pairs`."""
    step = max(1, len(pairs) // limit)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for pair in list(pairs)[::step][:limit]:
        image = read_image(pair.image, channels).reshape(-1, channels).astype(np.float64)
        total += image.sum(0)
        squares += (image**2).sum(0)
        count += image.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0)).clip(min=1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


class SegmentationDataset(Dataset):
    """Samples as dicts: `image` (C x H x W float32, normalised), `mask` (long target) and
    `name`. Files are read when a sample is asked for, never all at once.

    With `seed` set, the random transform of sample i in epoch e is seeded from (seed, e, i),
    so augmentation does not depend on worker count, process or resume point.
    """

    def __init__(self, pairs: Sequence[Pair], preprocessing: Preprocessing,
                 encoder: MaskEncoder | None, transform=None, seed: int | None = None) -> None:
        self.pairs = list(pairs)
        self.preprocessing = preprocessing
        self.encoder = encoder
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        pair = self.pairs[index]
        image = read_image(pair.image, self.preprocessing.in_channels)
        mask = None
        if pair.mask is not None and self.encoder is not None:
            mask = self.encoder.encode(read_mask(pair.mask), pair.mask)
            if mask.shape != image.shape[:2]:
                raise DataError(f"mask size {mask.shape} differs from its image's "
                                f"{image.shape[:2]}", pair.mask)
        if self.transform is not None:
            if self.seed is not None:
                state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)
                self.transform.set_random_seed(int(state[0]))
            out = self.transform(image=image, mask=mask) if mask is not None else \
                self.transform(image=image)
            image, mask = out["image"], out.get("mask")
        sample: dict[str, torch.Tensor | str] = {
            "image": self.preprocessing.to_tensor(image), "name": pair.name}
        if mask is not None:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return sample
