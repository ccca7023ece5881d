"""From a dataset folder to what training or evaluation needs: pairs per split, checked
up front, with the task, classes and preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..task import Task
from .dataset import DatasetInfo, SegmentationDataset, channel_statistics, scan_dataset
from .io import read_mask
from .layouts import Pair, find_pairs
from .masks import MaskEncoder
from .split import assign_splits
from .transforms import Preprocessing, ResizeMode


@dataclass
class TrainData:
    """The splits, what the scan found, and the preprocessing of one run."""

    root: Path
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    info: DatasetInfo
    preprocessing: Preprocessing
    new_split: bool = False

    @property
    def encoder(self) -> MaskEncoder:
        return MaskEncoder(self.info.task, self.info.num_classes)

    def dataset(self, pairs: list[Pair], transform=None, seed: int | None = None
                ) -> SegmentationDataset:
        return SegmentationDataset(pairs, self.preprocessing, self.encoder, transform, seed)


def prepare_data(dataset: str | Path | None, csvfile: str | Path | None = None, *,
                 task: Task | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, val_fraction: float = 0.1,
                 seed: int = 0, img_size: int = 256, resize_mode: ResizeMode = "crop",
                 preprocessing: Preprocessing | None = None) -> TrainData:
    """Find pairs, assign splits, scan every file for problems, and fix the preprocessing
    (normalisation from the training images) unless one is given (resume)."""
    if not dataset:
        raise ConfigError("--dataset is required")
    root = Path(dataset)
    pairs = find_pairs(root, csvfile)
    train, val, test, made = assign_splits(pairs, val_fraction, seed)
    missing = [p for p in train + val if p.mask is None]
    if missing:
        raise ConfigError(f"{len(missing)} train/val rows have no mask, e.g. {missing[0].image}")
    labelled = [p for p in train + val + test if p.mask is not None]
    info = scan_dataset(labelled, task, num_classes, class_names)
    if preprocessing is None:
        mean, std = channel_statistics(train, info.in_channels)
        preprocessing = Preprocessing(info.in_channels, mean, std, img_size, resize_mode)
    return TrainData(root, train, val, test, info, preprocessing, made)


def labelled_split(dataset: str | Path, csvfile: str | Path | None, split: str | None,
                   encoder: MaskEncoder) -> tuple[list[Pair], str | None]:
    """The labelled pairs of one split (all pairs when the layout has no splits), every mask
    checked against `encoder` before anything runs; also the split actually used."""
    pairs = find_pairs(dataset, csvfile)
    has_splits = any(p.split for p in pairs)
    chosen = [p for p in pairs if split is None or not has_splits or p.split == split]
    if not chosen:
        found = sorted({p.split or "none" for p in pairs})
        raise DataError(f"no rows of split {split!r}; the split has: {', '.join(found)}",
                        Path(csvfile) if csvfile else Path(dataset))
    unlabelled = [p for p in chosen if p.mask is None]
    if unlabelled:
        raise DataError("has no mask to evaluate against (use `unetzoo predict` for "
                        "unlabelled images)", unlabelled[0].image)
    for pair in chosen:
        encoder.check_values(np.unique(read_mask(pair.mask)), pair.mask)  # type: ignore[arg-type]
    return chosen, split if has_splits else None
