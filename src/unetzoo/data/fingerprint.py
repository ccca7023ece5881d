"""What a training recipe has to know about a dataset and a machine, measured.

`fingerprint_dataset` reads an evenly spread sample of the training pairs (all of them for
small datasets) and records image sizes, channels, bit depth, intensity statistics per
channel, how much images differ in brightness, foreground fraction, object sizes and class
frequencies; `fingerprint_machine` records cores, bf16 units and the GPU. Both are plain
dataclasses, so the planner (`engine.plan`) is a pure function of them and is tested on
synthetic fingerprints. nnU-Net's "dataset fingerprint" (Isensee et al., Nature Methods
2021) is the model for this split between measuring and deciding.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import DataError
from ..task import IGNORE_INDEX, IGNORE_LABEL, Task
from .dataset import spread_sample
from .io import read_array, to_unit_float
from .layouts import Pair
from .masks import MaskReading, load_target

log = logging.getLogger("unetzoo")

FINGERPRINT_SAMPLE = 128  # images read for a fingerprint
PIXELS_PER_IMAGE = 20_000  # pixels per image kept for the intensity percentiles
COLOUR_DEVIATION = 0.02  # mean |channel - grey| (of 1) above which an RGB image is in colour


@dataclass(frozen=True)
class DatasetFingerprint:
    """Measured facts of a training set (units: pixels, intensities in [0, 1]).

    count: training images; sampled: images read for the statistics.
    bit_depth: 8, 16 or 32 (float) as stored.
    median_height, median_width, min_side, max_side: image sizes.
    mean, std, p01, p99: per channel over sampled pixels (0.5th / 99.5th percentiles).
    brightness_spread: std of per-image mean intensities over the mean per-image std;
        above ~1 the images differ more from each other than within themselves.
    foreground_brighter: fraction of images whose foreground is brighter than background
        (near 0 or 1: one polarity; in between: mixed modalities, e.g. fluorescence and
        brightfield).
    foreground_fraction: mean fraction of labelled pixels that are foreground;
        sparse_images: fraction of images with under 1% foreground.
    object_area: median area of connected foreground objects; objects_per_image: median.
    class_frequencies: pixel fraction per model output class (binary: foreground only).
    foreground_width, background_width: median width of the foreground's structures and
        of the gaps between them (see `structure_width`); 0 when not measured. What a
        downscale has to keep: vessels and membranes are a few pixels wide, lesions hundreds.
    coloured_images: fraction of sampled 3-channel images in colour (channels differ from
        their mean by over COLOUR_DEVIATION on average); greyscale stored as RGB is not.
    """

    count: int
    sampled: int
    task: Task
    num_classes: int
    channels: int
    bit_depth: int
    median_height: int
    median_width: int
    min_side: int
    max_side: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    p01: tuple[float, ...]
    p99: tuple[float, ...]
    brightness_spread: float
    foreground_brighter: float
    foreground_fraction: float
    sparse_images: float
    object_area: float
    objects_per_image: float
    class_frequencies: tuple[float, ...] = field(default=())
    foreground_width: float = 0.0
    background_width: float = 0.0
    coloured_images: float = 0.0

    @property
    def median_area(self) -> int:
        return self.median_height * self.median_width

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class MachineFingerprint:
    """cores: CPU cores usable; bf16: `amx`, `avx512_bf16` or `none`; gpu: name or None;
    gpu_memory_gb: memory of the first GPU; memory_gb: host memory."""

    cores: int
    bf16: str
    gpu: str | None = None
    gpu_memory_gb: float = 0.0
    memory_gb: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint_machine() -> MachineFingerprint:
    """This machine: cores available to this process, bf16 units, first GPU, memory."""
    import torch

    from ..runtime import cpu_bf16_units

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
        os.cpu_count() or 1
    gpu, gpu_memory = None, 0.0
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu, gpu_memory = props.name, props.total_memory / 2**30
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30 \
        if hasattr(os, "sysconf") else 0.0
    return MachineFingerprint(cores, cpu_bf16_units(), gpu, round(gpu_memory, 1),
                              round(memory, 1))


def _bit_depth(array: np.ndarray) -> int:
    if array.dtype.kind == "f":
        return 32
    return 16 if array.dtype.itemsize >= 2 and int(array.max(initial=0)) > 255 else 8


def _objects(foreground: np.ndarray) -> list[int]:
    """Areas of the 8-connected components of a bool mask."""
    if not foreground.any():
        return []
    _, _, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8),
                                                      connectivity=8)
    return [int(a) for a in stats[1:, cv2.CC_STAT_AREA]]


def structure_width(region: np.ndarray) -> float | None:
    """Median width in pixels of the structures of a bool `H x W` region: twice the
    distance to the region's edge along its ridge (the local maxima of the Euclidean
    distance transform, which trace the medial axis; Blum 1967), less one pixel. A disc
    gives its diameter, a strip its thickness (an even one a pixel less: the ridge is then
    two pixels wide, each half a pixel off centre); the image border is not an edge.

    Returns:
        The width, or None when the region is empty or fills the image."""
    if not region.any() or region.all():
        return None
    distance = cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L2, 5)
    ridge = region & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    return float(2 * np.median(distance[ridge]) - 1)


def fingerprint_dataset(pairs: Sequence[Pair], reading: MaskReading, channels: int,
                        sample: int = FINGERPRINT_SAMPLE, seed: int = 0) -> DatasetFingerprint:
    """Measure the training `pairs` (see DatasetFingerprint) from up to `sample` of them
    spread through the list; unreadable pairs are logged and left out.

    Raises:
        DataError: when none of the sampled pairs can be read.
    """
    rng = np.random.default_rng(seed)
    task, classes = reading.task, reading.num_classes
    outputs = 1 if task == "binary" else classes
    heights, widths, depths, pixels = [], [], [], []
    image_means, image_stds, brighter, fractions, areas, counts = [], [], [], [], [], []
    coloured: list[bool] = []
    widths_fg: list[float] = []
    widths_bg: list[float] = []
    class_pixels, labelled_pixels = np.zeros(outputs), 0
    used = 0
    for pair in spread_sample(list(pairs), sample):
        try:
            raw = read_array(pair.image, palette=False)
            target = load_target(pair, reading, raw.shape[:2]) if pair.labelled else None
        except DataError as exc:
            log.warning("left out of the fingerprint: %s", exc)
            continue
        used += 1
        depths.append(_bit_depth(raw))
        image = raw[..., None] if raw.ndim == 2 else raw
        if image.shape[2] in (2, 4):
            image = image[..., :-1]
        image = to_unit_float(image)
        if image.shape[2] != channels:
            image = np.repeat(image.mean(2, keepdims=True), channels, axis=2)
        heights.append(image.shape[0])
        widths.append(image.shape[1])
        flat = image.reshape(-1, channels)
        picks = rng.choice(len(flat), min(len(flat), PIXELS_PER_IMAGE), replace=False)
        pixels.append(flat[picks])
        gray = image.mean(2)
        if channels == 3:
            coloured.append(float(np.abs(image - gray[..., None]).mean()) > COLOUR_DEVIATION)
        image_means.append(float(gray.mean()))
        image_stds.append(float(gray.std()))
        if target is None:
            continue
        if task == "instance":  # label images: ids of objects, -1 void (255 may be an id)
            valid = target != IGNORE_LABEL
        else:
            valid = target != IGNORE_INDEX if target.ndim == 2 else \
                np.ones(target.shape[:2], bool)
        if task == "instance":
            foreground = (target > 0) & valid
            class_pixels += int(foreground.sum())
        elif task == "multilabel":
            foreground = target.any(axis=2)
            class_pixels += target.reshape(-1, outputs).sum(0)
        else:
            foreground = (target > 0) & valid
            counted = np.bincount(target[valid].ravel(), minlength=max(2, classes))
            class_pixels += counted[1:2] if task == "binary" else counted[:classes]
        labelled_pixels += int(valid.sum())
        fractions.append(float(foreground.sum() / max(1, valid.sum())))
        if task == "instance":  # one object per id, touching ones apart
            sizes = np.bincount(target[foreground].ravel())
            objects = [int(s) for s in sizes[sizes > 0]]
        else:
            objects = _objects(foreground)
        areas += objects
        counts.append(len(objects))
        background = ~foreground & valid
        for region, found in ((foreground, widths_fg), (background, widths_bg)):
            if (width := structure_width(region)) is not None:
                found.append(width)
        if foreground.any() and background.any():
            brighter.append(float(gray[foreground].mean() > gray[background].mean()))
    if not used:
        raise DataError("none of the sampled training images can be read")
    values = np.concatenate(pixels).astype(np.float64)
    spread = float(np.std(image_means) / max(np.mean(image_stds), 1e-6))
    return DatasetFingerprint(
        count=len(pairs), sampled=used, task=task, num_classes=classes, channels=channels,
        bit_depth=max(depths), median_height=int(np.median(heights)),
        median_width=int(np.median(widths)), min_side=int(min(min(heights), min(widths))),
        max_side=int(max(max(heights), max(widths))),
        mean=tuple(float(v) for v in values.mean(0)),
        std=tuple(float(v) for v in values.std(0)),
        p01=tuple(float(v) for v in np.percentile(values, 0.5, axis=0)),
        p99=tuple(float(v) for v in np.percentile(values, 99.5, axis=0)),
        brightness_spread=round(spread, 4),
        foreground_brighter=float(np.mean(brighter)) if brighter else 1.0,
        foreground_fraction=float(np.mean(fractions)) if fractions else 0.0,
        sparse_images=float(np.mean([f < 0.01 for f in fractions])) if fractions else 0.0,
        object_area=float(np.median(areas)) if areas else 0.0,
        objects_per_image=float(np.median(counts)) if counts else 0.0,
        class_frequencies=tuple(float(v) for v in class_pixels / max(1, labelled_pixels)),
        coloured_images=float(np.mean(coloured)) if coloured else 0.0,
        foreground_width=float(np.median(widths_fg)) if widths_fg else 0.0,
        background_width=float(np.median(widths_bg)) if widths_bg else 0.0)
