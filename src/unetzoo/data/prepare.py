"""From a dataset folder to what training or evaluation needs: pairs per split, checked
up front, with the task, classes and preprocessing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..task import Task
from .cache import SampleCache, choose_mode
from .classmap import find_class_map
from .dataset import (
    DatasetInfo,
    SegmentationDataset,
    channel_statistics,
    check_files,
    scan_dataset,
    verify_pairs,
)
from .layouts import Pair, find_pairs
from .masks import MaskEncoder
from .split import assign_splits
from .transforms import Preprocessing, ResizeMode, resize_transform

log = logging.getLogger("unetzoo")


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
    cache: str = "auto"  # see data.cache: auto, memory, disk or off
    _caches: dict[tuple, SampleCache] = field(default_factory=dict, repr=False, compare=False)

    @property
    def encoder(self) -> MaskEncoder:
        return self.info.encoder or MaskEncoder(self.info.task, self.info.num_classes)

    def dataset(self, pairs: list[Pair], transform=None, seed: int | None = None
                ) -> SegmentationDataset:
        """A dataset of `pairs`; with a (training) `transform`, bad samples met while
        training are logged and skipped rather than stopping the epoch. Unless `cache` is
        off, files are decoded (and, for training in resize mode, resized) once per run."""
        data = SegmentationDataset(pairs, self.preprocessing, self.encoder, transform, seed,
                                   skip_bad=transform is not None)
        data.cache = self.sample_cache(data, resized=transform is not None and
                                       self.preprocessing.resize_mode == "resize")
        return data

    def sample_cache(self, data: SegmentationDataset, resized: bool) -> SampleCache | None:
        """The cache of `data`'s pairs, made at its first use and kept for the run."""
        if self.cache == "off" or not data.pairs:
            return None
        size = self.preprocessing.img_size if resized else None
        key = (tuple(p.image for p in data.pairs), size)
        if key not in self._caches:
            channels = self.preprocessing.in_channels
            mode, why = choose_mode(self.cache, data.pairs, channels, size)
            reader = data.read
            if size is not None:
                resize = resize_transform(size)

                def reader(index: int) -> tuple:
                    image, target = data.read(index)
                    out = resize(image=image, mask=target) if target is not None else \
                        resize(image=image)
                    return out["image"], out.get("mask")

            settings = f"channels={channels}|resize={size}|{self.encoder!r}"
            self._caches[key] = SampleCache(data.pairs, reader, mode, settings)
            log.info("sample cache for %d images: %s (%s)", len(data.pairs), mode, why)
        return self._caches[key]


def prepare_data(dataset: str | Path | None, csvfile: str | Path | None = None, *,
                 task: Task | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, class_map: str | Path | None = None,
                 ignore_index: int | None = None, full_check: bool = False,
                 val_fraction: float = 0.1, seed: int = 0, img_size: int = 256,
                 resize_mode: ResizeMode = "crop", preprocessing: Preprocessing | None = None,
                 cache: str = "auto", normalization: str = "dataset") -> TrainData:
    """Find pairs, assign splits, check the files (all of them with `full_check`, else
    headers and a sample: see `data.dataset`), and fix the preprocessing (normalisation
    from the training images) unless one is given (resume).

    The class map is `class_map`, else `classes.yaml` in the dataset folder when present.
    `cache` says how decoded samples are kept (see `data.cache`); `normalization` how images
    are normalised (see `Preprocessing`). Test images without
    masks are left out of the test evaluation.
    """
    if not dataset:
        raise ConfigError("--dataset is required")
    root = Path(dataset)
    pairs = find_pairs(root, csvfile)
    train, val, test, made = assign_splits(pairs, val_fraction, seed)
    missing = [p for p in train + val if not p.labelled]
    if missing:
        raise ConfigError(f"{len(missing)} train/val rows have no mask, e.g. {missing[0].image}")
    unlabelled = [p for p in test if not p.labelled]
    if unlabelled:
        log.info("%d test image(s) without masks are left out of the test evaluation",
                 len(unlabelled))
        test = [p for p in test if p.labelled]
    info = scan_dataset(train + val + test, task, num_classes, class_names,
                        class_map=find_class_map(root, class_map), ignore_index=ignore_index,
                        full=full_check)
    if preprocessing is None:
        mean, std = channel_statistics(train, info.in_channels)
        preprocessing = Preprocessing(info.in_channels, mean, std, img_size, resize_mode,
                                      normalization)
    return TrainData(root, train, val, test, info, preprocessing, made, cache)


def evaluation_encoder(task: Task, num_classes: int, dataset: str | Path,
                       config: Mapping[str, Any] | None = None) -> MaskEncoder:
    """The mask encoder of a trained run (its `config`) on `dataset`: the run's class map
    when it still exists, else the dataset's `classes.yaml`, and the run's ignore index."""
    config = config or {}
    given = config.get("class_map")
    root = Path(dataset)
    if given and not (Path(given).is_file() or (root / given).is_file()):
        given = None
    return MaskEncoder(task, num_classes, config.get("ignore_index"),
                       find_class_map(root, given))


def labelled_split(dataset: str | Path, csvfile: str | Path | None, split: str | None,
                   encoder: MaskEncoder) -> tuple[list[Pair], str | None]:
    """The labelled pairs of one split (all pairs when the layout has no splits), checked
    against `encoder` before anything runs (headers, and the pixels of a sample); also the
    split actually used."""
    pairs = find_pairs(dataset, csvfile)
    has_splits = any(p.split for p in pairs)
    chosen = [p for p in pairs if split is None or not has_splits or p.split == split]
    if not chosen:
        found = sorted({p.split or "none" for p in pairs})
        raise DataError(f"no rows of split {split!r}; the split has: {', '.join(found)}",
                        Path(csvfile) if csvfile else Path(dataset))
    unlabelled = [p for p in chosen if not p.labelled]
    if unlabelled:
        raise DataError("has no mask to evaluate against (use `unetzoo predict` for "
                        "unlabelled images)", unlabelled[0].image)
    check_files(chosen)
    verify_pairs(chosen, encoder)
    return chosen, split if has_splits else None
