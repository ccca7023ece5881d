"""Objects from an instance model's outputs: its representation's channels activated (softmax
groups, sigmoids, regressions as they are), then decoded into a label image by the
post-processing of `instances.labels` (seeds and a seeded watershed) with the thresholds the
run chose on its validation images, which the checkpoint carries.

The whole image's outputs are blended from tiles first (the predictor's sliding window), and
only then decoded: an object on a tile seam is one object, never cut in two or counted twice.
An image too large to hold is decoded band by band with context rows around each band
(`stitch_objects`): each object is kept by the one band holding its top row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from ...errors import ConfigError, DataError
from ...instances.labels import Thresholds, decode
from ...instances.targets import Representation, get_representation


def activate(logits: torch.Tensor, representation: Representation) -> torch.Tensor:
    """The activated outputs (`... x C x H x W`): softmax over each softmax group, sigmoid
    on sigmoid channels, regressions as they are (float32)."""
    logits = logits.float()
    out = logits.clone()
    groups: dict[str, list[int]] = {}
    for index, channel in enumerate(representation.channels):
        if channel.activation == "sigmoid":
            out[..., index, :, :] = logits[..., index, :, :].sigmoid()
        elif channel.activation == "softmax":
            groups.setdefault(channel.group or "", []).append(index)
    for indices in groups.values():
        out[..., indices, :, :] = logits[..., indices, :, :].softmax(-3)
    return out


@dataclass(frozen=True)
class InstanceDecoding:
    """How an instance model's outputs become objects: its representation and thresholds
    (`Checkpoint.instance` as plain data: {"representation": ..., "thresholds": {...},
    "chosen": {...}}; `chosen` records the validation scores the thresholds were chosen by)."""

    representation: Representation
    thresholds: Thresholds = field(default_factory=Thresholds)
    chosen: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "the checkpoint"
                  ) -> InstanceDecoding:
        """From `Checkpoint.instance`.

        Raises:
            ConfigError: none recorded, or an unknown representation.
        """
        if not values or not values.get("representation"):
            raise ConfigError(f"{where} is an instance model without its representation "
                              "(retrain it, or export it again with this unetzoo)")
        return cls(get_representation(values["representation"]),
                   Thresholds(**values.get("thresholds", {})), values.get("chosen"))

    def to_dict(self) -> dict[str, Any]:
        return {"representation": self.representation.name,
                "thresholds": self.thresholds.to_dict(), "chosen": self.chosen}

    @property
    def vectors(self) -> tuple[tuple[int, int], ...]:
        """Channel pairs (x, y) that are offsets in the image plane (HoVer-Net's horizontal
        and vertical maps), which test-time augmentation maps back by each symmetry."""
        return self.representation.vectors

    def decode(self, outputs: np.ndarray, name: str | None = None) -> np.ndarray:
        """int32 `H x W` labels (0 background, objects 1..N) of activated `C x H x W`
        outputs."""
        return decode(outputs, self.representation, self.thresholds, name=name)


def stitch_objects(bands: Iterable[np.ndarray], decoding: InstanceDecoding,
                   shape: tuple[int, int], rows: int, margin: int
                   ) -> Iterator[tuple[int, np.ndarray]]:
    """Object labels of an image whose activated outputs come as bands of rows
    (`C x r x W` each, any number of rows, top to bottom, adding up to `shape[0]`), as
    (first row, uint32 `rows x W` labels) bands, top to bottom, never holding the image.

    Each band of `rows` own rows is decoded (`decoding.decode`) in a window reaching
    `margin` rows above it and `2 * margin` below; of the objects found there, a band keeps
    those whose top row lies in its own rows, numbered on from the bands before (ids unique
    over the image, 1..N, in band order). An object at most `margin` rows tall is so seen
    whole by the band that keeps it, with at least `margin` rows of context around each of
    its pixels, and by no other band: on a seam it is neither cut in two nor counted twice.
    Where two bands' objects claim the same pixel (decodings of overlapping windows that
    differ at their edges), the earlier band's keeps it; an object left without pixels
    gets no id. A taller object, cut at the bottom of its band's window, goes on in the
    next band: an object there that began above the band gives its unclaimed pixels the id
    that most of its claimed pixels have (a new id where none are claimed), so every
    foreground pixel keeps a label and a tall object mostly keeps one id (where the two
    windows' decodings part, it may be split). An image of at most `rows` rows is decoded
    whole, exactly as `decode`.

    Memory: the outputs of `rows + 3 * margin` rows and the labels of `rows + 2 * margin`.

    Raises:
        DataError: more than 2**32 - 1 objects; bands that do not add up to `shape[0]`.
    """
    height, width = shape
    rows, margin = max(1, rows), max(0, margin)
    parts: list[np.ndarray] = []
    held_top = held_end = 0  # the outputs held: rows held_top..held_end
    canvas = np.zeros((0, width), np.uint32)  # labels of rows own_top.. painted so far
    own_top, next_id = 0, 1

    def decode_band() -> tuple[int, np.ndarray]:
        nonlocal parts, held_top, canvas, own_top, next_id
        own_end = min(own_top + rows, height)
        w0, w1 = max(0, own_top - margin), min(height, own_end + 2 * margin)
        held = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        labels = decoding.decode(held[:, w0 - held_top: w1 - held_top])
        tops = np.array([s[0].start if s is not None else -1
                         for s in ndimage.find_objects(labels)], np.int64) + w0
        mine = labels[own_top - w0:]  # rows own_top..w1 (objects kept start there)
        if canvas.shape[0] < mine.shape[0]:
            canvas = np.concatenate([canvas, np.zeros((mine.shape[0] - canvas.shape[0], width),
                                                      np.uint32)])
        free = canvas == 0
        lut = np.zeros(int(labels.max()) + 1, np.uint32)
        # objects that began above (taller than the margin, or seen by an earlier band):
        # their unclaimed pixels go on with the id they have there (most of their pixels)
        above = np.flatnonzero(tops[1:] < own_top) + 1 if labels.max() else tops[:0]
        is_above = np.zeros(lut.size, bool)
        is_above[above] = True
        claimed = ~free & is_above[mine]
        if claimed.any():
            pairs, counts = np.unique(np.stack([mine[claimed].astype(np.int64),
                                                canvas[claimed].astype(np.int64)]),
                                      axis=1, return_counts=True)
            order = np.lexsort((-counts, pairs[0]))  # by object, most pixels first
            first = np.unique(pairs[0][order], return_index=True)[1]
            lut[pairs[0][order][first]] = pairs[1][order][first]
        seen = np.unique(mine[free])
        seen = seen[seen > 0]
        new = seen[(lut[seen] == 0) & (tops[seen - 1] < own_end)]  # new objects, in order
        if next_id + new.size - 1 > np.iinfo(np.uint32).max:
            raise DataError(f"more than {np.iinfo(np.uint32).max:,} objects: more than a "
                            "32-bit label image holds")
        lut[new] = np.arange(next_id, next_id + new.size, dtype=np.uint32)
        next_id += new.size
        canvas = np.where(free, lut[mine], canvas)
        done, canvas = canvas[: own_end - own_top], canvas[own_end - own_top:]
        keep_from = max(0, own_end - margin)  # the next window's first row
        parts, held_top = [held[:, keep_from - held_top:]], keep_from
        top, own_top = own_top, own_end
        return top, done

    for band in bands:
        parts.append(np.asarray(band, np.float32))
        held_end += band.shape[1]
        while own_top < height and \
                held_end >= min(height, min(own_top + rows, height) + 2 * margin):
            yield decode_band()
    if held_end != height:
        raise DataError(f"output bands add up to {held_end} rows; the image has {height}")
    while own_top < height:
        yield decode_band()
