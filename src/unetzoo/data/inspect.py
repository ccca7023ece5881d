"""Inspect a dataset without training: counts, sizes, channels, bit depths, the task and
class frequencies, and every problem found (where training stops at the first)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError, DataError
from ..task import IGNORE_INDEX, Task, check_task
from .classmap import find_class_map
from .dataset import _task_from_sample, default_class_names, spread_sample
from .io import read_array, read_header, read_mask
from .layouts import Pair, describe_layout, find_pairs
from .masks import MaskEncoder, binarize, infer_task, is_lossy, load_target


@dataclass
class Inspection:
    """What `inspect_dataset` found."""

    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    image_kinds: Counter = field(default_factory=Counter)  # (extension, channels, bits)
    mask_kinds: Counter = field(default_factory=Counter)  # (extension, bits)
    task: Task | None = None
    class_names: tuple[str, ...] = ()
    pixels: np.ndarray | None = None  # per-class pixel counts of the pixels read
    ignored: int = 0
    read: int = 0  # masks read
    read_pixels: int = 0  # pixels per label of the masks read (multilabel)
    problems: list[DataError] = field(default_factory=list)

    def format(self) -> str:
        splits = Counter(p.split or "unsplit" for p in self.pairs)
        unlabelled = sum(not p.labelled for p in self.pairs)
        lines = [f"dataset: {self.root} ({self.layout})",
                 f"pairs: {len(self.pairs)} (" + ", ".join(f"{k} {v}" for k, v in sorted(
                     splits.items())) + (f"; {unlabelled} without masks" if unlabelled else "")
                 + ")"]
        if self.image_sizes:
            sizes = sorted(self.image_sizes)
            common = ", ".join(f"{w}x{h} ({n})" for (h, w), n in self.image_sizes.most_common(3))
            lines.append(f"image sizes (W x H): {len(sizes)} distinct, smallest "
                         f"{sizes[0][1]}x{sizes[0][0]}, largest {sizes[-1][1]}x{sizes[-1][0]}; "
                         f"most common {common}")
        lines.append("images: " + ", ".join(
            f"{n} {ext} {'RGB' if ch == 3 else 'gray'} {bits}-bit"
            for (ext, ch, bits), n in self.image_kinds.most_common()))
        if self.mask_kinds:
            lines.append("masks: " + ", ".join(f"{n} {ext} {bits}-bit"
                                              for (ext, bits), n in self.mask_kinds.most_common()))
        if self.task is not None:
            lines.append(f"task: {self.task}, classes: {', '.join(self.class_names)}")
        if self.pixels is not None and self.pixels.sum() + self.ignored > 0:
            total = self.pixels.sum() + self.ignored if self.task != "multilabel" else \
                self.read_pixels
            names = self.frequency_names
            lines.append(f"class pixel frequencies ({self.read} masks read):")
            for name, count in zip(names, self.pixels, strict=True):
                lines.append(f"  {name:<20} {100 * count / max(total, 1):6.2f}%")
            if self.ignored:
                lines.append(f"  {'(ignored)':<20} {100 * self.ignored / max(total, 1):6.2f}%")
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines += [f"  {p}" for p in self.problems]
        else:
            lines.append("problems: none found")
        return "\n".join(lines)

    @property
    def frequency_names(self) -> tuple[str, ...]:
        if self.task == "binary":
            return ("background", *self.class_names)
        return self.class_names


def _headers(pair: Pair, found: Inspection) -> bool:
    try:
        image = read_header(pair.image)
    except DataError as error:
        found.problems.append(error)
        return False
    found.image_sizes[image.size] += 1
    found.image_kinds[(pair.image.suffix.lower(), image.channels, image.bits)] += 1
    good = True
    for mask in pair.mask_files:
        try:
            header = read_header(mask)
        except DataError as error:
            found.problems.append(error)
            good = False
            continue
        found.mask_kinds[(mask.suffix.lower(), header.bits)] += 1
        if header.size != image.size:
            found.problems.append(DataError(
                f"mask is {header.width}x{header.height} (W x H) but its image {pair.image} is "
                f"{image.width}x{image.height}", mask))
            good = False
    return good


def _values(pair: Pair, rgb: bool, values: set[int], overlap: list[bool]) -> None:
    """Decode the image and masks; gather stored mask values or class-mask overlap."""
    read_array(pair.image, palette=False)
    if pair.class_masks:
        layers = [binarize(read_mask(p), p) for p in pair.class_masks]
        overlap[0] |= bool(sum(layer.astype(np.int16) for layer in layers).max() > 1)
    elif pair.mask is not None:
        mask = read_mask(pair.mask, rgb=rgb)
        if mask.ndim == 2:
            values.update(int(v) for v in np.unique(mask))


def _find_task(pairs: list[Pair], found: Inspection, values: set[int], overlap: bool,
               task: Task | None, class_map, ignore_index: int | None) -> MaskEncoder | None:
    labelled = [p for p in pairs if p.labelled]
    if not labelled:
        return None
    try:
        if class_map is not None or labelled[0].class_masks:
            if labelled[0].class_masks and task is None:
                folders = len(labelled[0].class_names)
                task = "multilabel" if overlap else "binary" if folders == 1 else "multiclass"
            task, num_classes, names = _task_from_sample(labelled[:1], class_map, task)
        else:
            values -= {ignore_index}
            lossy = any(is_lossy(p.mask) for p in labelled)  # type: ignore[arg-type]
            found_task, num_classes = infer_task(values, lossy)
            task = task or found_task
            if task == "multiclass":
                num_classes = max(values - {IGNORE_INDEX}, default=1) + 1
            names = ()
        check_task(task, num_classes)
    except (DataError, ConfigError) as error:
        found.problems.append(DataError(f"no task fits the masks: {error}"))
        return None
    found.task = task
    found.class_names = tuple(names) or default_class_names(task, num_classes)
    return MaskEncoder(task, num_classes, ignore_index, class_map)


def _count(target: np.ndarray, found: Inspection, classes: int) -> None:
    if target.ndim == 3:  # multilabel H x W x K
        valid = target != IGNORE_INDEX
        counts = ((target == 1) & valid).reshape(-1, target.shape[2]).sum(0)
        found.ignored += int((~valid).sum())
        found.read_pixels += int(target[..., 0].size)
    else:
        counts = np.bincount(target[target != IGNORE_INDEX].ravel(), minlength=classes)[:classes]
        found.ignored += int((target == IGNORE_INDEX).sum())
    found.pixels = counts if found.pixels is None else found.pixels + counts


def inspect_dataset(root: Path | str, csvfile: Path | str | None = None, *,
                    class_map: Path | str | None = None, task: Task | None = None,
                    ignore_index: int | None = None, sample: int | None = None,
                    progress: bool = True) -> Inspection:
    """Read every header, and the pixels of every pair (or of `sample` spread pairs),
    collecting each problem instead of stopping at the first."""
    root = Path(root)
    found = Inspection(root, describe_layout(root, csvfile))
    found.pairs = find_pairs(root, csvfile, found.problems)
    cmap = find_class_map(root, class_map)
    good = [p for p in tqdm(found.pairs, desc="headers", unit="pair", disable=not progress,
                            leave=False) if _headers(p, found)]
    chosen = spread_sample(good, sample) if sample else good
    values: set[int] = set()
    overlap = [False]
    readable = []
    for pair in tqdm(chosen, desc="pixels", unit="pair", disable=not progress, leave=False):
        try:
            _values(pair, cmap is not None and cmap.by_color, values, overlap)
            readable.append(pair)
        except DataError as error:
            found.problems.append(error)
    encoder = _find_task(readable, found, values, overlap[0], task, cmap, ignore_index)
    if encoder is not None:
        classes = len(found.frequency_names)
        for pair in readable:
            if not pair.labelled:
                continue
            try:
                _count(load_target(pair, encoder), found, classes)
                found.read += 1
            except DataError as error:
                found.problems.append(error)
    return found
