"""Check a dataset up front without reading all of it, then read, encode and transform
samples lazily.

Up-front checks scale to hundreds of thousands of files: every file is checked to exist, be
non-empty and have a supported extension; headers (sizes, channels) are compared for up to
`HEADER_LIMIT` pairs; pixels and mask values are read for an evenly spread sample of
`SAMPLE_SIZE` pairs (all with `full=True`), and `data.masks` decides from them what the
stored mask values mean. Whatever was not read up front is checked when it is loaded: the
training set then skips an unreadable sample, logging its path, instead of stopping
mid-epoch; a mask holding a value the reading cannot hold stops training, naming the file.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, MaskValueError
from ..task import IGNORE_INDEX, Task, check_task
from .cache import SampleCache
from .classmap import Color
from .io import ImageHeader, check_file, read_header, read_image
from .layouts import Pair, report
from .masks import MaskOptions, MaskReading, decide, load_target, survey_pair
from .transforms import Preprocessing

log = logging.getLogger("unetzoo")

SAMPLE_SIZE = 256
HEADER_LIMIT = 20_000
MAX_CONSECUTIVE_BAD = 16
T = TypeVar("T")


@dataclass(frozen=True)
class DatasetInfo:
    """What a scan of the dataset found: channels, the mask reading (task, classes and
    why), and how much was read."""

    in_channels: int
    task: Task
    num_classes: int
    class_names: tuple[str, ...]
    class_colors: tuple[Color, ...] | None = None
    reading: MaskReading | None = field(default=None, compare=False)
    pixels_checked: int = 0  # pairs whose pixels were read before training
    headers_checked: int = 0  # pairs whose headers were read before training
    images: str = ""  # how the images' channels are read (`channel_evidence`)
    # pixels per class of each labelled pair read (by image path; `target_class_pixels`)
    class_pixels: dict[Path, np.ndarray] = field(default_factory=dict, compare=False,
                                                 repr=False)


def default_class_names(task: Task, num_classes: int) -> tuple[str, ...]:
    if task == "binary":
        return ("foreground",)
    if task == "instance":
        return ("object",)
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


def pair_headers(pair: Pair, problems: list[DataError] | None = None
                 ) -> tuple[ImageHeader | None, list[tuple]]:
    """The image header and (mask path, header) of each mask file of a pair, each mask
    compared in size with the image. Raises the first problem, or collects them in
    `problems` (then a header that cannot be read is None / left out)."""
    try:
        image = read_header(pair.image)
    except DataError as error:
        report(problems, error)
        return None, []
    masks = []
    for mask in pair.mask_files:
        try:
            header = read_header(mask)
        except DataError as error:
            report(problems, error)
            continue
        masks.append((mask, header))
        if header.size != image.size:
            report(problems, DataError(
                f"mask is {header.width}x{header.height} (W x H) but its image {pair.image} "
                f"is {image.width}x{image.height}", mask))
    return image, masks


def check_headers(pairs: Sequence[Pair]) -> list[ImageHeader]:
    """Compare image and mask sizes from file headers; the images' headers."""
    return [image for image in (pair_headers(pair)[0] for pair in pairs) if image]


def check_files(pairs: Sequence[Pair], full: bool = False) -> list[ImageHeader]:
    """Check that every file exists, is non-empty and has a supported extension, and compare
    sizes from the headers of up to `HEADER_LIMIT` pairs (all with `full`, else a spread
    sample beyond the limit). Returns the image headers read."""
    for pair in pairs:
        for path in (pair.image, *pair.mask_files):
            check_file(path)
    headers = pairs if full or len(pairs) <= HEADER_LIMIT else spread_sample(pairs, SAMPLE_SIZE)
    return check_headers(headers)


def channel_evidence(headers: Sequence[ImageHeader], channels: int) -> str:
    """One line on how the images (`headers`, of all images or a sample) become the model's
    `channels` input channels: their kinds, a declared alpha channel dropped (transparency,
    not a channel), gray replicated to 3 channels, colour converted to gray (luminance).
    Nothing is left unsaid: `read_image` does exactly these conversions."""
    kinds = Counter(header.kind for header in headers)
    line = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common()) or "none read"
    alpha = sum(n for kind, n in kinds.items() if kind in ("gray+alpha", "RGBA"))
    notes = [f"{n} {how}" for n, how in (
        (alpha, "with a declared alpha channel: the alpha is dropped (transparency, not an "
                "input channel; to keep it, save it as a TIFF sample not declared alpha)"),
        (sum(h.channels == 1 for h in headers) if channels == 3 else 0,
         "gray: replicated to 3 channels"),
        (sum(h.channels == 3 for h in headers) if channels == 1 else 0,
         "colour: converted to gray (luminance)")) if n]
    return f"{line}; {'; '.join(notes)}" if notes else line


def read_masks(pairs: Sequence[Pair], options: MaskOptions | None = None) -> MaskReading:
    """The reading of the masks of `pairs` (every labelled pair given is read: pass a
    sample for large datasets); see `data.masks.decide`.

    Raises:
        DataError: naming a file, for unreadable masks and values that are not read as meant
            on their own (with the flag or class-map entry that resolves it).
    """
    options = options or MaskOptions()
    rgb = options.class_map is not None and options.class_map.by_color
    objects = options.task == "instance"
    return decide([survey_pair(p, options.ignore, rgb, objects) for p in pairs if p.labelled],
                  options)


def verify_pairs(pairs: Sequence[Pair], reading: MaskReading, full: bool = False,
                 class_pixels: dict[Path, np.ndarray] | None = None) -> int:
    """Read and encode the sample (every pair with `full`); the largest channel count. With
    `class_pixels`, each labelled pair's pixels per class (`target_class_pixels`) are put
    there, keyed by image path."""
    channels = 1
    for pair in pairs if full else spread_sample(pairs, SAMPLE_SIZE):
        image = read_image(pair.image)
        channels = max(channels, image.shape[2])
        if pair.labelled:
            target = load_target(pair, reading, image.shape[:2])
            if class_pixels is not None:
                class_pixels[pair.image] = target_class_pixels(target, reading)
    return channels


def target_class_pixels(target: np.ndarray, reading: MaskReading) -> np.ndarray:
    """Pixels per class (`K`, int64) of an encoded target (`H x W` class indices, or
    `H x W x K` 0/1 for multilabel; background and objects of an instance label image);
    ignored pixels are not counted."""
    if target.ndim == 3:
        return (target == 1).sum((0, 1)).astype(np.int64)
    if reading.task == "instance":
        return np.array([(target == 0).sum(), (target > 0).sum()], np.int64)
    classes = 2 if reading.task == "binary" else reading.num_classes
    valid = target[target != IGNORE_INDEX].ravel().astype(np.int64)
    return np.bincount(valid, minlength=classes)[:classes]


def _mask_showing(pair: Pair, folder: int) -> Path:
    """The mask file of `pair` that holds class folder `folder` (class-folder layouts), else
    its mask (or its image)."""
    if 0 <= folder < len(pair.class_masks):
        return pair.class_masks[folder]
    return (*pair.mask_files, pair.image)[0]


def classes_not_in_training(info: DatasetInfo, train: Sequence[Pair],
                            others: Sequence[Pair], total: int) -> list[str]:
    """One line for each class (foreground classes; every label when multilabel) that has
    no pixels in the training masks read, saying where it is found (val / test masks) or
    that it is found nowhere: a model cannot learn such a class, and its scores would mean
    nothing. `total` is the number of pairs, to say whether the masks read were a sample."""
    if info.task in ("binary", "instance") or not info.class_pixels:
        return []
    pixels = info.class_pixels
    train_read = [pixels[p.image] for p in train if p.image in pixels]
    if not train_read:
        return []
    in_train = np.sum(train_read, axis=0)
    read = len(pixels)
    sample = f" (a sample of the {total} pairs; --full-check reads them all)" \
        if read < total else ""
    lines = []
    first = 1 if info.task == "multiclass" else 0
    for k in range(first, len(in_train)):
        if in_train[k]:
            continue
        found = [p for p in others if p.image in pixels and pixels[p.image][k] > 0]
        example = _mask_showing(found[0], k - first) if found else None
        where = (f"it is only in {len(found)} val/test mask(s), e.g. {example}: move such "
                 "images into the training split" if found else
                 "nor in any val/test mask read")
        verdict = ("If the training masks not read lack it too, the model cannot learn it"
                   if sample else "The model cannot learn it")
        lines.append(f"class {info.class_names[k]!r} has no pixels in the {len(train_read)} "
                     f"training masks read{sample}; {where}. {verdict}")
    return lines


def scan_dataset(pairs: Sequence[Pair], options: MaskOptions | None = None,
                 class_names: Sequence[str] | None = None, *, full: bool = False
                 ) -> DatasetInfo:
    """Check `pairs` before any training (see the module docstring), decide how the masks
    are read (task, classes: `data.masks`) and find the channels; fails on the first
    problem with an error naming the file.

    Args:
        pairs: the pairs of every split.
        options: what the user said about the masks (task, number of classes, class map,
            ignore value, --instances, --mask-threshold).
        class_names: names in class-index order (default: from the class map or class
            folders, else background, class1, ...).
        full: read every pair's pixels (default: headers, and the pixels of a sample).

    Returns:
        The DatasetInfo, its `reading` ready to encode masks.

    Raises:
        DataError: naming the file, for the first unreadable, mismatched or misread pair.
        ConfigError: options that contradict the masks.
    """
    if not pairs:
        raise DataError("the dataset has no samples")
    options = options or MaskOptions()
    headers = check_files(pairs, full)
    sample = pairs if full else spread_sample(pairs, SAMPLE_SIZE)
    reading = read_masks(sample, options)
    num_classes = reading.num_classes
    check_task(reading.task, num_classes)
    class_pixels: dict[Path, np.ndarray] = {}
    channels = max(max((h.channels for h in headers), default=1),
                   verify_pairs(sample, reading, full=True, class_pixels=class_pixels))
    names = tuple(class_names or reading.class_names or
                  default_class_names(reading.task, num_classes))
    if len(names) != (1 if reading.task == "binary" else num_classes):
        raise DataError(f"{len(names)} class names given for {num_classes} classes")
    cmap = options.class_map
    return DatasetInfo(channels, reading.task, num_classes, names,
                       cmap.colors if cmap else None, reading, len(sample), len(headers),
                       channel_evidence(headers, channels), class_pixels)


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
    `H x W`, or `K x H x W` multilabel; the instance task's label image, ids as stored and
    `IGNORE_LABEL` for void) and `name`. Files are read when a sample is asked for, never
    all at once.

    With a `target_encoder`, the target is encoded after augmentation, in the worker that
    loads the sample: `target_encoder(target)` gets the augmented target (the instance
    task's int32 `H x W` label image) and returns an array, which becomes `mask` with its
    own dtype, or a dict of arrays, each added to the sample under its key (`mask`,
    `weights`, ...); `labels` then holds the augmented target itself (an int32 tensor for
    scoring objects). The encoder must be picklable (a module-level function or a
    `functools.partial` of one) for data-loading workers.

    With `seed` set, the random transform of sample i in epoch e is seeded from (seed, e, i)
    (albumentations and the global `random` / NumPy generators alike), so augmentation does
    not depend on worker count, process or resume point. With `skip_bad`, a sample that
    cannot be read is logged with its path and replaced by the next readable one; a mask
    value the reading cannot hold (MaskValueError) always stops, naming the file. With a
    `cache` (see `data.cache`), files are decoded once rather than every epoch. With
    `keep_pixels`, samples also hold `pixels`: the image as shown to people (`H x W x C`
    float32 in [0, 1], after the transform, before normalisation), for overlays: a per-image
    normalisation cannot be undone with the dataset's mean and std.
    """

    def __init__(self, pairs: Sequence[Pair], preprocessing: Preprocessing,
                 reading: MaskReading | None, transform=None, seed: int | None = None,
                 skip_bad: bool = False, cache: SampleCache | None = None,
                 keep_pixels: bool = False,
                 target_encoder: Callable[[np.ndarray], np.ndarray | dict[str, np.ndarray]]
                 | None = None) -> None:
        self.pairs = list(pairs)
        self.target_encoder = target_encoder
        self.keep_pixels = keep_pixels
        self.preprocessing = preprocessing
        self.reading = reading
        self.transform = transform
        self.seed = seed
        self.skip_bad = skip_bad
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
            except MaskValueError:
                raise
            except DataError as exc:
                first = first or exc
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
        if self.keep_pixels:
            sample["pixels"] = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if mask is not None and self.target_encoder is not None:
            sample.update(self._encoded(mask))
        elif mask is not None:
            if mask.ndim == 3:  # multilabel H x W x K -> K x H x W
                mask = mask.transpose(2, 0, 1)
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(mask)).long()
        return sample

    def _encoded(self, target: np.ndarray) -> dict[str, torch.Tensor]:
        """The augmented `target` as `labels` and what `target_encoder` makes of it."""
        assert self.target_encoder is not None
        encoded = self.target_encoder(target)
        arrays = encoded if isinstance(encoded, dict) else {"mask": encoded}
        out = {"labels": torch.from_numpy(np.ascontiguousarray(target))}
        out.update((key, torch.from_numpy(np.ascontiguousarray(value)))
                   for key, value in arrays.items())
        return out

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The image (`H x W x C` float32 in [0, 1]) and target (None when unlabelled) of
        sample `index`, as stored: no transform, no normalisation."""
        pair = self.pairs[index]
        image = read_image(pair.image, self.preprocessing.in_channels)
        mask = None
        if pair.labelled and self.reading is not None:
            mask = load_target(pair, self.reading, image.shape[:2])
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
