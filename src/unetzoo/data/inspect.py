"""Inspect a dataset without training: counts, sizes, channels, bit depths, how the masks
are read (task, classes and the evidence, as training reads them) and class frequencies,
and every problem found (where training stops at the first)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..progress import progress_bar
from ..task import IGNORE_INDEX, Task, check_task
from .classmap import find_class_map
from .dataset import default_class_names, pair_headers, spread_sample
from .io import read_image
from .layouts import Pair, describe_layout, find_pairs
from .masks import MaskOptions, MaskReading, PairSurvey, decide, load_target, survey_pair


@dataclass
class Inspection:
    """What `inspect_dataset` found."""

    root: Path
    layout: str
    pairs: list[Pair] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    image_kinds: Counter = field(default_factory=Counter)  # (extension, kind, bits)
    mask_kinds: Counter = field(default_factory=Counter)  # (extension, bits)
    reading: MaskReading | None = None
    class_names: tuple[str, ...] = ()
    pixels: np.ndarray | None = None  # per-class pixel counts of the pixels read
    ignored: int = 0
    read: int = 0  # masks read
    read_pixels: int = 0  # pixels per label of the masks read (multilabel)
    problems: list[DataError] = field(default_factory=list)

    @property
    def task(self) -> Task | None:
        return self.reading.task if self.reading else None

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
            f"{n} {ext} {kind} {bits}-bit"
            for (ext, kind, bits), n in self.image_kinds.most_common()))
        if self.mask_kinds:
            lines.append("masks: " + ", ".join(f"{n} {ext} {bits}-bit"
                                              for (ext, bits), n in self.mask_kinds.most_common()))
        if self.reading is not None:
            lines.append(f"read as: {self.reading.evidence}")
            lines.append(f"task: {self.reading.task}, classes: {', '.join(self.class_names)}")
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
        if self.task in ("binary", "instance"):
            return ("background", *self.class_names)
        return self.class_names


def _headers(pair: Pair, found: Inspection) -> bool:
    before = len(found.problems)
    image, masks = pair_headers(pair, found.problems)
    if image is not None:
        found.image_sizes[image.size] += 1
        found.image_kinds[(pair.image.suffix.lower(), image.kind, image.bits)] += 1
    for path, header in masks:
        found.mask_kinds[(path.suffix.lower(), header.bits)] += 1
    return len(found.problems) == before


def _count(target: np.ndarray, found: Inspection, classes: int) -> None:
    if found.task == "instance":  # label image: background, objects, IGNORE_LABEL (< 0)
        counts = np.array([(target == 0).sum(), (target > 0).sum()], np.int64)
        found.ignored += int((target < 0).sum())
    elif target.ndim == 3:  # multilabel H x W x K
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
                    ignore_index: int | None = None, instances: bool = False,
                    mask_threshold: float | None = None, sample: int | None = None,
                    progress: bool = True, components: bool = False) -> Inspection:
    """Inspect a dataset folder without training, collecting every problem instead of
    stopping at the first.

    Reads every header, and the pixels of every pair (or of `sample` spread pairs); decides
    how the masks are read from all masks read (as training does from its sample: see
    `data.masks`), then encodes each mask to count class pixels.

    Args:
        root: the dataset folder.
        csvfile: a CSV split (image,mask,split) relative to `root`; default: the layout.
        class_map: a class map YAML (default: `root/classes.yaml` when present).
        task, ignore_index, instances, mask_threshold: as the training options.
        components: --instances-from-components (with task "instance": binary masks'
            connected components are the objects).
        sample: read the pixels of this many spread pairs only.
        progress: progress bars (on a terminal; elsewhere nothing).

    Returns:
        The Inspection; `format()` gives the report `unetzoo inspect` prints.

    Raises:
        DataError: the folder does not exist or has no images folder (everything else is
            collected in `Inspection.problems`).

    Example:
        >>> found = inspect_dataset("data/nuclei", sample=100)  # doctest: +SKIP
        >>> found.reading.evidence  # doctest: +SKIP
        'binary: 100 masks 0/255'
    """
    root = Path(root)
    found = Inspection(root, describe_layout(root, csvfile))
    found.pairs = find_pairs(root, csvfile, found.problems)
    try:
        cmap = find_class_map(root, class_map)
    except ConfigError as error:
        found.problems.append(DataError(str(error)))
        cmap = None
    options = MaskOptions(task, None, cmap, ignore_index, instances, mask_threshold,
                          components)
    good = [p for p in progress_bar(found.pairs, "headers", "pair", enabled=progress)
            if _headers(p, found)]
    chosen = spread_sample(good, sample) if sample else good
    surveys: list[PairSurvey] = []
    readable = []
    for pair in progress_bar(chosen, "pixels", "pair", enabled=progress):
        try:
            read_image(pair.image)
            if pair.labelled:
                surveys.append(survey_pair(pair, options.ignore, bool(cmap and cmap.by_color),
                                           objects=task == "instance"))
            readable.append(pair)
        except DataError as error:
            found.problems.append(error)
    if not surveys:
        return found
    try:
        reading = decide(surveys, options)
        check_task(reading.task, reading.num_classes)
    except (DataError, ConfigError) as error:
        found.problems.append(DataError(f"no reading fits the masks: {error}"))
        return found
    found.reading = reading
    found.class_names = reading.class_names or default_class_names(reading.task,
                                                                   reading.num_classes)
    classes = len(found.frequency_names)
    for pair in readable:
        if not pair.labelled:
            continue
        try:
            _count(load_target(pair, reading), found, classes)
            found.read += 1
        except DataError as error:
            found.problems.append(error)
    return found
