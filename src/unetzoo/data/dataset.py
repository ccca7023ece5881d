"""Check a dataset up front without reading all of it, then read, encode and transform
samples lazily.

Up-front checks scale to hundreds of thousands of files: every file is checked to exist, be
non-empty and have a supported extension; headers (sizes, channels) are compared for up to
`HEADER_LIMIT` pairs; pixels and mask values are read for an evenly spread sample of
`SAMPLE_SIZE` pairs (all with `full=True`). Whatever was not read up front is checked when
it is loaded: the training set then skips a bad sample, logging its path, instead of
stopping mid-epoch.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..task import Task, check_task
from .cache import SampleCache
from .classmap import ClassMap, Color
from .io import check_file, image_channels, read_array, read_header, read_image, read_mask
from .layouts import Pair
from .masks import MaskEncoder, binarize, infer_task, is_lossy, load_target
from .transforms import Preprocessing

log = logging.getLogger("unetzoo")

SAMPLE_SIZE = 256
HEADER_LIMIT = 20_000
MAX_CONSECUTIVE_BAD = 16
T = TypeVar("T")


@dataclass(frozen=True)
class DatasetInfo:
    """What a scan of the dataset found: channels, task, classes, and how much was read."""

    in_channels: int
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    class_colors: tuple[Color, ...] | None = None
    encoder: MaskEncoder | None = field(default=None, compare=False)
    pixels_checked: int = 0  # pairs whose pixels were read before training
    headers_checked: int = 0  # pairs whose headers were read before training


def default_class_names(task: Task, num_classes: int) -> tuple[str, ...]:
    if task == "binary":
        return ("foreground",)
    if task == "multiclass":
        return ("background", *(f"class{k}" for k in range(1, num_classes)))
    return tuple(f"class{k + 1}" for k in range(num_classes))


def spread_sample(items: Sequence[T], limit: int) -> list[T]:
    """Up to `limit` items evenly spread over `items`, first and last included."""
    if len(items) <= limit:
        return list(items)
    if limit < 2:
        return list(items[:limit])
    return [items[round(i * (len(items) - 1) / (limit - 1))] for i in range(limit)]


def check_headers(pairs: Sequence[Pair]) -> int:
    """Compare image and mask sizes from file headers; the largest channel count."""
    channels = 1
    for pair in pairs:
        image = read_header(pair.image)
        channels = max(channels, image.channels)
        for mask in pair.mask_files:
            header = read_header(mask)
            if header.size != image.size:
                raise DataError(f"mask is {header.width}x{header.height} (W x H) but its image "
                                f"{pair.image} is {image.width}x{image.height}", mask)
    return channels


def check_files(pairs: Sequence[Pair], full: bool = False) -> tuple[int, int]:
    """Check that every file exists, is non-empty and has a supported extension, and compare
    sizes from the headers of up to `HEADER_LIMIT` pairs (all with `full`, else a spread
    sample beyond the limit). Returns (largest channel count, pairs whose headers were read)."""
    for pair in pairs:
        for path in (pair.image, *pair.mask_files):
            check_file(path)
    headers = pairs if full or len(pairs) <= HEADER_LIMIT else spread_sample(pairs, SAMPLE_SIZE)
    return check_headers(headers), len(headers)


def _task_from_sample(pairs: Sequence[Pair], class_map: ClassMap | None, given: Task | None,
                      ignore_index: int | None = None) -> tuple[Task, int, tuple[str, ...]]:
    """(task, num_classes, class names) that fit the masks of `pairs`."""
    if class_map is not None:
        if any(p.class_masks for p in pairs):
            raise ConfigError("a class map applies to index or colour masks; class folders "
                              "take their class names from the folder names")
        task = given or ("binary" if class_map.num_classes == 2 else "multiclass")
        if task == "multilabel":
            raise ConfigError("a class map gives exclusive classes: use --task multiclass")
        names = class_map.names[1:] if task == "binary" else class_map.names
        return task, 1 if task == "binary" else class_map.num_classes, names
    folders = next((p.class_names for p in pairs if p.class_masks), None)
    if folders is not None:
        task = given or _class_folder_task(pairs, len(folders))
        if task == "multiclass":
            return task, len(folders) + 1, ("background", *folders)
        if task == "binary" and len(folders) != 1:
            raise ConfigError(f"a binary task needs one class folder, found {len(folders)}")
        return task, len(folders), folders
    values: set[int] = set()
    lossy = False
    for pair in pairs:
        mask = read_mask(pair.mask)  # type: ignore[arg-type]
        if mask.ndim != 2:
            raise DataError(f"colour mask of shape {mask.shape} needs a class map "
                            "(gray index or 0/255 masks are read directly)", pair.mask)
        lossy |= is_lossy(pair.mask)  # type: ignore[arg-type]
        values.update(int(v) for v in np.unique(mask))
    values -= {ignore_index}
    if given is not None:
        return given, 1 if given == "binary" else max(values - {255}, default=1) + 1, ()
    task, num_classes = infer_task(values, lossy)
    log.info("task inferred from mask values: %s with %d class(es)", task, num_classes)
    return task, num_classes, ()


def _class_folder_task(pairs: Sequence[Pair], folders: int) -> Task:
    for pair in pairs:
        layers = [binarize(read_mask(p), p) for p in pair.class_masks]
        if sum(layer.astype(np.int16) for layer in layers).max(initial=0) > 1:
            log.info("class masks overlap (e.g. %s): a multilabel task", pair.image.name)
            return "multilabel"
    return "binary" if folders == 1 else "multiclass"


def verify_pairs(pairs: Sequence[Pair], encoder: MaskEncoder, full: bool = False) -> int:
    """Read and encode the sample (every pair with `full`); the largest channel count."""
    channels = 1
    for pair in pairs if full else spread_sample(pairs, SAMPLE_SIZE):
        image = read_array(pair.image, palette=False)
        channels = max(channels, image_channels(image))
        if pair.labelled:
            load_target(pair, encoder, image.shape[:2])
    return channels


def scan_dataset(pairs: Sequence[Pair], task: Task | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, *, class_map: ClassMap | None = None,
                 ignore_index: int | None = None, full: bool = False) -> DatasetInfo:
    """Check `pairs` before any training (see the module docstring) and find the task,
    classes and channels; fails on the first problem with an error naming the file.

    The task and number of classes come from the class map, the class folders or the mask
    values (of the sample) unless given.
    """
    if not pairs:
        raise DataError("the dataset has no samples")
    channels, headers = check_files(pairs, full)
    sample = pairs if full else spread_sample(pairs, SAMPLE_SIZE)
    found_task, found_classes, found_names = _task_from_sample(sample, class_map, task,
                                                               ignore_index)
    num_classes = num_classes or found_classes
    check_task(found_task, num_classes)
    encoder = MaskEncoder(found_task, num_classes, ignore_index, class_map)
    channels = max(channels, verify_pairs(sample, encoder, full=True))
    names = tuple(class_names or found_names or default_class_names(found_task, num_classes))
    if len(names) != (1 if found_task == "binary" else num_classes):
        raise DataError(f"{len(names)} class names given for {num_classes} classes")
    return DatasetInfo(channels, found_task, num_classes, names,
                       class_map.colors if class_map else None, encoder, len(sample), headers)


def channel_statistics(pairs: Sequence[Pair], channels: int, limit: int = 64
                       ) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std over up to `limit` images spread through `pairs`; an
    unreadable image is logged and left out (training will skip it too)."""
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for pair in spread_sample(pairs, limit):
        try:
            image = read_image(pair.image, channels).reshape(-1, channels).astype(np.float64)
        except DataError as exc:
            log.warning("left out of the normalisation statistics: %s", exc)
            continue
        total += image.sum(0)
        squares += (image**2).sum(0)
        count += image.shape[0]
    if count == 0:
        raise DataError("none of the sampled training images can be read")
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0)).clip(min=1e-3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


@contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global generators for a block, then restore them, so
    transforms drawing from them are reproducible without disturbing the caller."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


class SegmentationDataset(Dataset):
    """Samples as dicts: `image` (C x H x W float32, normalised), `mask` (long target:
    `H x W`, or `K x H x W` multilabel) and `name`. Files are read when a sample is asked
    for, never all at once.

    With `seed` set, the random transform of sample i in epoch e is seeded from (seed, e, i)
    (albumentations and the global `random` / NumPy generators alike), so augmentation does
    not depend on worker count, process or resume point. With `skip_bad`, a sample that
    cannot be read is logged with its path and replaced by the next readable one. With a
    `cache` (see `data.cache`), files are decoded once rather than every epoch.
    """

    def __init__(self, pairs: Sequence[Pair], preprocessing: Preprocessing,
                 encoder: MaskEncoder | None, transform=None, seed: int | None = None,
                 skip_bad: bool = False, cache: SampleCache | None = None) -> None:
        self.pairs = list(pairs)
        self.preprocessing = preprocessing
        self.encoder = encoder
        self.transform = transform
        self.seed = seed
        self.skip_bad = skip_bad
        self.skipped: list[str] = []
        self.epoch = 0
        self.cache = cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not self.skip_bad:
            return self.load(index)
        first: DataError | None = None
        for step in range(min(MAX_CONSECUTIVE_BAD, len(self))):
            try:
                return self.load((index + step) % len(self))
            except DataError as exc:
                first = first or exc
                self.skipped.append(str(exc))
                log.warning("skipped a bad sample: %s", exc)
        raise DataError(f"{min(MAX_CONSECUTIVE_BAD, len(self))} consecutive samples cannot be "
                        f"read; the first: {first}")

    def load(self, index: int) -> dict[str, torch.Tensor | str]:
        """Sample `index`, raising DataError naming the file when it cannot be used."""
        pair = self.pairs[index]
        image, mask = self.cache.get(index) if self.cache else self.read(index)
        stats = self.preprocessing.statistics(image)  # of the whole image, before cropping
        if self.transform is not None:
            image, mask = self._augment(index, image, mask)
        sample: dict[str, torch.Tensor | str] = {
            "image": self.preprocessing.to_tensor(image, stats), "name": pair.name}
        if mask is not None:
            if mask.ndim == 3:  # multilabel H x W x K -> K x H x W
                mask = mask.transpose(2, 0, 1)
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return sample

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image (`H x W x C` float32 in [0, 1]) and target (None when unlabelled) of
        sample `index`, as stored: no transform, no normalisation."""
        pair = self.pairs[index]
        image = read_image(pair.image, self.preprocessing.in_channels)
        mask = None
        if pair.labelled and self.encoder is not None:
            mask = load_target(pair, self.encoder, image.shape[:2])
        return image, mask

    def _augment(self, index: int, image: np.ndarray, mask: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        def run() -> dict:
            return self.transform(image=image, mask=mask) if mask is not None else \
                self.transform(image=image)

        if self.seed is None:
            out = run()
        else:
            state = int(np.random.SeedSequence([self.seed, self.epoch, index])
                        .generate_state(1)[0])
            self.transform.set_random_seed(state)
            with seeded_global_rngs(state):
                out = run()
        return out["image"], out.get("mask")
