"""What the training images looked like, so that a model can say when it is given images unlike
them (a bit-depth change, a contrast-stretched export, another modality) instead of
predicting confident garbage without a word.

`InputStatistics.measure` samples the training images (spread through the split, as the
normalisation statistics are) and records per channel: the stored pixel types, the images'
median values and the range they cover, the pooled pixels' spread and 0.5 / 99.5
percentiles. With a fixed (dataset) normalisation they are measured on the [0, 1] values
`read_image` gives; with a per-image normalisation (image, percentile), which takes away a
change of brightness or bit depth, on the normalised values the model sees, where a change
of what the images show (another stain, another modality) remains.
A checkpoint carries them; `predict` and `eval` compare each image with them
(`InputStatistics.distance`) and name, in one line per run, the images far outside
(`FAR`: measured in benchmarks/input_shift.py on real shifts).

The distance of an image is, over its channels and a few quantiles of its values (1st to
99th percentile), the largest gap between its quantile and the range the training images'
same quantile covered, in units of that quantile's spread over the training images: an
image like the training images is at 0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .io import read_array, read_image

log = logging.getLogger("unetzoo")

SAMPLE_IMAGES = 64  # training images measured (spread through the split)
SAMPLE_PIXELS = 1 << 16  # pixels per image (a strided sample)
STD_FLOOR = 0.004  # a spread below this (about one level of 8 bits) counts as this
FAR = 4.0  # an image this many training spreads beyond the training images is "far"
# benchmarks/input_shift.py on dsb2018 (153 fluorescence training images, 53 test images per
# condition; results/input_shift.json): same-source test images, brightness x0.8 / x1.25,
# gamma 0.8 / 1.25 and JPEG q75 re-encodes lay at 0-1.8; 12-bit data stored in 16 bits met
# as 8-bit exports at 3.9-85 (median 22), contrast-stretched at 86-139, another modality
# (brightfield / H&E for fluorescence) at 21-33 (6-25 under percentile normalisation)


def _stored_type(path: Path) -> str:
    """The file's stored pixel type (what `read_image` scaled: uint8, uint16, float32...)."""
    return str(read_array(path, palette=False).dtype)


def _strided(image: np.ndarray, pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    flat = image.reshape(-1, image.shape[-1])
    return flat[:: max(1, len(flat) // pixels)]


QUANTILES = (1.0, 5.0, 25.0, 50.0, 75.0, 95.0, 99.0)  # of each image's values, per channel


def image_quantiles(image: np.ndarray) -> np.ndarray:
    """`C x len(QUANTILES)`: the quantiles of an `H x W x C` image's values per channel (on a
    strided sample)."""
    if image.ndim == 2:
        image = image[..., None]
    return np.percentile(_strided(image), QUANTILES, axis=0).T.astype(np.float64)


@dataclass(frozen=True)
class InputStatistics:
    """What the training images' values looked like, per channel: each image's quantiles
    (1, 5, 25, 50, 75, 95, 99th percentiles of its values) summarised over the sampled
    images by their range and spread.

    Attributes:
        space: `stored` (values as `read_image` gives them: 8-bit / 255, 16-bit / 65535,
            float as stored) or `normalised` (after the model's per-image normalisation).
        channels: input channels.
        dtypes: the stored pixel types seen (e.g. ("uint16",)).
        low, high: per channel and quantile, the 1st and 99th percentiles over the training
            images of that image quantile (`channels x 7`).
        spread: per channel and quantile, its standard deviation over the training images
            (floored at `STD_FLOOR`).
        images: how many images were measured.
    """

    space: str
    channels: int
    dtypes: tuple[str, ...]
    low: tuple[tuple[float, ...], ...]
    high: tuple[tuple[float, ...], ...]
    spread: tuple[tuple[float, ...], ...]
    images: int

    @classmethod
    def from_quantiles(cls, quantiles: Sequence[np.ndarray], space: str,
                       dtypes: Iterable[str]) -> InputStatistics:
        """The statistics of images whose `image_quantiles` are given."""
        stack = np.stack(quantiles)  # images x C x Q

        def rounded(array: np.ndarray) -> tuple[tuple[float, ...], ...]:
            return tuple(tuple(round(float(v), 6) for v in row) for row in array)
        return cls(space, stack.shape[1], tuple(sorted(set(dtypes))),
                   rounded(np.percentile(stack, 1, axis=0)),
                   rounded(np.percentile(stack, 99, axis=0)),
                   rounded(np.maximum(stack.std(0), STD_FLOOR)), len(stack))

    @classmethod
    def measure(cls, paths: Sequence[Path], channels: int,
                normalize: Callable[[np.ndarray], np.ndarray] | None = None,
                limit: int = SAMPLE_IMAGES) -> InputStatistics | None:
        """Measure up to `limit` images spread through `paths` (unreadable ones left out:
        training says so), after `normalize` (`H x W x C` -> normalised `H x W x C`: a
        per-image normalisation) when given; None when none can be read."""
        if not paths:
            return None
        step = (len(paths) - 1) / (limit - 1) if len(paths) > limit else 1.0
        chosen = [paths[round(i * step)] for i in range(min(limit, len(paths)))]
        quantiles, dtypes = [], []
        for path in chosen:
            try:
                image = read_image(path, channels)
                dtypes.append(_stored_type(path))
            except DataError:
                continue
            quantiles.append(image_quantiles(normalize(image) if normalize else image))
        if not quantiles:
            return None
        return cls.from_quantiles(quantiles, "normalised" if normalize else "stored", dtypes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> InputStatistics | None:
        if not values:
            return None
        try:
            return cls(values["space"], int(values["channels"]), tuple(values["dtypes"]),
                       *(tuple(tuple(r) for r in values[k]) for k in ("low", "high", "spread")),
                       int(values["images"]))
        except (KeyError, TypeError, ValueError):
            return None  # written by another version: nothing to compare with

    def distance(self, image: np.ndarray) -> float:
        """How far `image` (`H x W x C`, in the statistics' `space`: as `read_image` gives
        it, or normalised) lies from the training images: over its channels and quantiles,
        the largest distance of its quantile beyond the training images' range of that
        quantile, in units of that quantile's spread over the training images (0 inside)."""
        values = image_quantiles(image)
        if values.shape[0] != self.channels:
            return 0.0
        low, high = np.asarray(self.low), np.asarray(self.high)
        gap = np.maximum(low - values, 0) + np.maximum(values - high, 0)
        return float((gap / np.asarray(self.spread)).max())

    def describe(self) -> str:
        """The training images in a few words: "uint16 images, values 0.0013-0.061"."""
        kinds = "/".join(self.dtypes) or "?"
        first, last = 0, len(QUANTILES) - 1
        ranges = ", ".join(f"{lo[first]:.3g}-{hi[last]:.3g}" for lo, hi in zip(
            self.low, self.high, strict=True))
        scale = "on a 0-1 scale" if self.space == "stored" else "after normalisation"
        return f"{kinds} images, values {ranges} {scale}"


class ShiftMonitor:
    """Collects the distance of each image of a run (`predict`, `eval`) from a model's
    training images and says, once, which were far and what resolves it."""

    def __init__(self, stats: InputStatistics | None, normalization: str,
                 normalize: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """`normalize`: the model's per-image normalisation (statistics in the `normalised`
        space need it; without it they are not compared)."""
        if stats is not None and stats.space == "normalised" and normalize is None:
            stats = None
        self.stats = stats
        self.normalization = normalization
        self.normalize = normalize if stats is not None and stats.space == "normalised" \
            else None
        self.far: list[tuple[float, str, str]] = []  # (distance, name, dtype)
        self.seen = 0

    def observe(self, image: Any, name: str, path: Path | None = None) -> None:
        """Measure one image (`H x W x C` in [0, 1]); other inputs are not measured."""
        if self.stats is None or not isinstance(image, np.ndarray):
            return
        self.seen += 1
        if image.ndim == 2:
            image = image[..., None]
        distance = self.stats.distance(self.normalize(image) if self.normalize else image)
        if distance > FAR:
            kind = ""
            if path is not None:
                try:
                    kind = _stored_type(path)
                except DataError:
                    kind = ""
            self.far.append((distance, name, kind))

    def summary(self) -> str | None:
        """One line, or None when every image lies near the training images."""
        if not self.far or self.stats is None:
            return None
        worst = sorted(self.far, reverse=True)
        shown = ", ".join(f"{name} ({d:.0f})" for d, name, _ in worst[:3])
        kinds = sorted({k for _, _, k in self.far if k})
        theirs = f" (stored as {'/'.join(kinds)})" if kinds and tuple(kinds) != \
            self.stats.dtypes else ""
        if self.normalization == "dataset":
            fix = ("convert them to the training images' range, or retrain with --normalize "
                   "percentile (each image scaled by its own percentiles)")
        else:
            fix = "check they show what the training images show (another stain, modality?)"
        return (f"{len(self.far)} of {self.seen} image(s) lie far from the images this model "
                f"was trained on: their values sit {worst[-1][0]:.0f}-{worst[0][0]:.0f} "
                f"training spreads beyond the training images' (more than {FAR:g} is far): "
                f"{shown}{', ...' if len(worst) > 3 else ''}{theirs}; it was trained on "
                f"{self.stats.describe()}. Its predictions there may be wrong: {fix}")
