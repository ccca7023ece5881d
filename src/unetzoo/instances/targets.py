"""Training targets of instance segmentation: what a network learns from an instance label image.

A semantic U-Net cannot give two touching nuclei two ids; it learns, per pixel, a few maps
from which a post-processing (`labels.decode`) draws the objects. This module computes those
maps from a label image (0 = background, one id per object; ids need not be consecutive) and
says, as plain data, how the network's channels are activated and trained. Each
representation is a name:

- ``three_class``: background / interior / boundary, one softmax group (the 3-class U-Net
  baseline of Schmidt et al., "Cell Detection with Star-convex Polygons", MICCAI 2018, 0.806
  AP@0.5 on its DSB 2018 subset; the "boundary" class of Caicedo et al., Cytometry A 2019).
  The boundary is the object's own edge: the object pixels with a 4-neighbour of another
  value (background or another object), one pixel wide; the interior is the rest.
- ``distance``: foreground + the distance of each object pixel to its object's own edge,
  divided by that object's maximum (every object peaks at 1), as in Naylor et al.,
  "Segmentation of Nuclei in Histopathology Images by Deep Regression of the Distance Map",
  IEEE TMI 2019. Pixels of another object count as the edge, so touching objects get two
  peaks with a valley between them.
- ``contour_touch``: foreground, boundary and "touching borders" as three sigmoid channels,
  the targets of the 2018 Data Science Bowl winners' watershed pipelines (topcoders: mask,
  contour, and the pixels where nuclei touch). Touching border: every pixel whose 3 x 3
  neighbourhood holds two different objects (both objects' rows of pixels along a shared
  edge, and the background pixel of a one-pixel gap between two objects).
- ``hover``: foreground + horizontal and vertical offsets of each pixel from its object's
  centroid, each side scaled to [-1, 1] per object (Graham et al., "HoVer-Net", Medical Image
  Analysis 2019); the offsets jump from +1 to -1 where two objects meet.

Conventions. Targets are float32 `C x H x W`, in the channel order of the representation's
table. The edge of the patch is not an object's edge: an object cut by it has no boundary
there and its distance is measured to its edges inside the patch (the network cannot see
beyond the patch either). Ids are relabelled internally; nothing depends on their values or
order. `encode` is vectorised (one Euclidean distance transform for ``distance``, shifted
comparisons and 3 x 3 min / max filters elsewhere, per-object reductions by one radix sort):
a 256 x 256 patch of 100 objects takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
from scipy import ndimage

from ..errors import ConfigError, DataError
from .matching import check_labels

Activation = Literal["softmax", "sigmoid", "none"]
LOSSES: tuple[str, ...] = ("ce", "bce", "dice", "mse", "l1")
ACTIVATIONS: tuple[str, ...] = ("softmax", "sigmoid", "none")


@dataclass(frozen=True)
class Channel:
    """One output channel of a representation.

    Attributes:
        name: what the channel holds ("interior", "distance", ...).
        activation: "softmax" (with the other channels of its `group`), "sigmoid", or "none"
            (a regression read as it is).
        losses: the loss terms the channel takes, summed with weight 1 each: "ce" (softmax
            cross-entropy over the group, one term for the group), "bce", "dice" (soft Dice
            of the activated channel), "mse", "l1".
        group: the softmax group's name; None for other channels.
        target: what the target holds, in words (values and range).
    """

    name: str
    activation: Activation
    losses: tuple[str, ...]
    group: str | None = None
    target: str = ""


@dataclass(frozen=True)
class Representation:
    """A target representation: its channels, how labels come back, and its source.

    Attributes:
        name: the representation's name (`REPRESENTATIONS` key).
        channels: the output channels, in order.
        foreground: how `labels.decode` reads the foreground probability, in words.
        seeds: how it reads the seed (object core) score, in words.
        weighted: whether `encode` also returns per-pixel loss weights.
        source: the paper or pipeline the representation follows.
        vectors: channel index pairs (x, y) that hold offsets in the image plane; a flip
            or rotation of the image changes their sign or swaps them.
    """

    name: str
    channels: tuple[Channel, ...]
    foreground: str
    seeds: str
    source: str
    weighted: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    vectors: tuple[tuple[int, int], ...] = ()

    @property
    def num_channels(self) -> int:
        """Output channels C the network needs."""
        return len(self.channels)

    def loss_text(self) -> str:
        """The loss in words, e.g. `hover: foreground bce+dice, horizontal mse, vertical mse`
        (a softmax group's cross-entropy is named once, by its group)."""
        terms, groups = [], set()
        for c in self.channels:
            if c.group is not None:
                if c.group not in groups:
                    groups.add(c.group)
                    terms.append(f"{c.group} {'+'.join(c.losses)}")
            else:
                terms.append(f"{c.name} {'+'.join(c.losses)}")
        return f"{self.name}: {', '.join(terms)}"

    def table(self) -> list[dict[str, Any]]:
        """The channel table as plain data: one dict per channel (index, name, activation,
        group, losses, target)."""
        return [{"index": k, "name": c.name, "activation": c.activation, "group": c.group,
                 "losses": list(c.losses), "target": c.target}
                for k, c in enumerate(self.channels)]


def _binary(name: str, target: str) -> Channel:
    return Channel(name, "sigmoid", ("bce", "dice"), None, target)


REPRESENTATIONS: dict[str, Representation] = {
    "three_class": Representation(
        name="three_class",
        channels=(
            Channel("background", "softmax", ("ce",), "classes", "1 outside objects, else 0"),
            Channel("interior", "softmax", ("ce",), "classes",
                    "1 on object pixels that are not boundary, else 0"),
            Channel("boundary", "softmax", ("ce",), "classes",
                    "1 on object pixels with a 4-neighbour of another value (1 px)"),
        ),
        foreground="1 - P(background)",
        seeds="P(interior)",
        source="Schmidt et al. 2018 (StarDist), 3-class U-Net baseline; Caicedo et al. 2019",
    ),
    "distance": Representation(
        name="distance",
        channels=(
            _binary("foreground", "1 on object pixels, else 0"),
            Channel("distance", "sigmoid", ("mse",), None,
                    "distance to the object's own edge (1 on edge pixels) / the object's "
                    "maximum: (0, 1] on objects, 0 outside"),
        ),
        foreground="P(foreground)",
        seeds="the predicted normalised distance",
        source="Naylor et al. 2019 (IEEE TMI), per-object normalised distance map",
    ),
    "contour_touch": Representation(
        name="contour_touch",
        channels=(
            _binary("foreground", "1 on object pixels, else 0"),
            _binary("boundary", "1 on object pixels with a 4-neighbour of another value"),
            _binary("touching", "1 where the 3 x 3 neighbourhood holds two objects"),
        ),
        foreground="P(foreground)",
        seeds="P(foreground) x (1 - P(boundary)) x (1 - P(touching))",
        source="2018 Data Science Bowl winners (topcoders): mask, contour and touching "
               "borders with a seeded watershed",
    ),
    "hover": Representation(
        name="hover",
        channels=(
            _binary("foreground", "1 on object pixels, else 0"),
            Channel("horizontal", "none", ("mse",), None,
                    "x - centroid x, each side divided by the object's largest |offset|: "
                    "[-1, 1] on objects, 0 outside"),
            Channel("vertical", "none", ("mse",), None,
                    "y - centroid y, scaled the same way"),
        ),
        foreground="P(foreground)",
        seeds="P(foreground) x (1 - edge energy), the energy being the Sobel derivative of "
              "the offsets where they fall (they fall only across an object's edge), / 4 "
              "(1 from a fall of 1 across one pixel)",
        source="Graham et al. 2019 (HoVer-Net), horizontal and vertical distance maps",
        vectors=((1, 2),),
    ),
}


# The instance task's default: the representation that scored best on held-out nuclei when
# all four were trained alike on dsb2018 (docs/instances.md has the table).
DEFAULT_REPRESENTATION = "hover"


def get_representation(representation: str | Representation) -> Representation:
    """The `Representation` of a name (a `Representation` is returned as it is).

    Raises:
        ConfigError: an unknown name.
    """
    if isinstance(representation, Representation):
        return representation
    found = REPRESENTATIONS.get(str(representation))
    if found is None:
        raise ConfigError(f"unknown instance representation {representation!r}; known: "
                          f"{', '.join(REPRESENTATIONS)}")
    return found


class Encoded(NamedTuple):
    """What `encode` returns.

    Attributes:
        targets: float32 `C x H x W`, in the order of the representation's channels.
        weights: float32 `H x W` per-pixel loss weights, or None when the representation
            has none (every pixel weighs 1).
    """

    targets: np.ndarray
    weights: np.ndarray | None


# --------------------------------------------------------------------------------------
# Objects of a patch


def compact_labels(labels: Any, name: str | None = None) -> tuple[np.ndarray, int]:
    """Relabel a label image to consecutive ids 1..N (0 stays background).

    Args:
        labels: `H x W` integer ids (see `matching.check_labels`).
        name: the image's name, for messages.

    Returns:
        (int32 `H x W` labels with ids 1..N in the order of the original ids, N).

    Raises:
        DataError: the label image is refused by `check_labels`.
    """
    array = check_labels(labels, "instance", name)
    if array.size == 0:
        return np.zeros(array.shape, np.int32), 0
    top = int(array.max())
    if top == 0:
        return np.zeros(array.shape, np.int32), 0
    if top <= max(4 * array.size, 1 << 16):
        present = np.zeros(top + 1, bool)
        present[array.ravel()] = True
        present[0] = False
        lut = np.zeros(top + 1, np.int32)
        count = int(present.sum())
        lut[present] = np.arange(1, count + 1, dtype=np.int32)
        return lut[array], count
    ids, inverse = np.unique(array, return_inverse=True)
    out = inverse.reshape(array.shape).astype(np.int32)
    if ids[0] != 0:
        out += 1
    return out, int(out.max())


class _Groups:
    """Per-object reductions over the pixels of compact labels (one sort, reused)."""

    def __init__(self, flat: np.ndarray, count: int) -> None:
        self.count = count
        kind = np.uint16 if count < (1 << 16) else np.int32
        self.order = np.argsort(flat.astype(kind, copy=False), kind="stable")
        ordered = flat[self.order]
        self.starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        self.ids = ordered[self.starts]

    def reduce(self, values: np.ndarray, ufunc: np.ufunc) -> np.ndarray:
        """`ufunc.reduceat` of `values` per id; `(count + 1,)`, index = id (0 unused)."""
        out = np.zeros(self.count + 1, values.dtype)
        out[self.ids] = ufunc.reduceat(values[self.order], self.starts)
        return out


def _edges(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour (inside the image) of another value: bool `H x W`."""
    change = np.zeros(labels.shape, bool)
    rows = labels[1:] != labels[:-1]
    cols = labels[:, 1:] != labels[:, :-1]
    change[1:] |= rows
    change[:-1] |= rows
    change[:, 1:] |= cols
    change[:, :-1] |= cols
    return change & (labels > 0)


def _touching(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixels whose 3 x 3 neighbourhood (inside the image) holds two different objects."""
    if count < 2:
        return np.zeros(labels.shape, bool)
    high = ndimage.maximum_filter(labels, size=3, mode="nearest")
    big = np.int32(count + 1)
    low = ndimage.minimum_filter(np.where(labels > 0, labels, big), size=3, mode="nearest")
    return (low != big) & (high != low)


def _distance(labels: np.ndarray, count: int) -> np.ndarray:
    """Per-object normalised distance to the object's own edge, float32 `H x W`."""
    objects = labels > 0
    edge = _edges(labels)
    inside = objects & ~edge
    dist = np.zeros(labels.shape, np.float32)
    if not objects.any():
        return dist
    if inside.all():
        dist[:] = 1.0  # one object fills the patch and has no edge in it
        return dist
    # distance to the nearest edge or background pixel; edge pixels are 1 (as the distance
    # of a pixel next to the background), so the value is the distance to the own edge
    # (pixels of another object count as edge: they are beyond the object's edge row)
    dist[objects] = (ndimage.distance_transform_edt(inside)[objects] + 1.0).astype(np.float32)
    flat = labels.ravel()
    groups = _Groups(flat, count)
    peak = groups.reduce(dist.ravel(), np.maximum)
    peak[0] = 1.0
    return dist / peak[labels]


def _offsets(labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """HoVer-Net horizontal and vertical maps, float32 `H x W` each."""
    height, width = labels.shape
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1).astype(np.float64)
    area[0] = 1.0
    xs = np.broadcast_to(np.arange(width, dtype=np.float32), (height, width)).ravel()
    ys = np.repeat(np.arange(height, dtype=np.float32), width)
    cy = (np.bincount(flat, weights=ys, minlength=count + 1) / area).astype(np.float32)
    cx = (np.bincount(flat, weights=xs, minlength=count + 1) / area).astype(np.float32)
    # each side's largest offset is the distance of the centroid to the bounding box's edge
    boxes = ndimage.find_objects(labels, max_label=count)
    lows = np.zeros((2, count + 1), np.float32)
    highs = np.zeros((2, count + 1), np.float32)
    for k, box in enumerate(boxes, start=1):
        if box is not None:
            lows[:, k] = box[1].start, box[0].start
            highs[:, k] = box[1].stop - 1, box[0].stop - 1
    maps = []
    for axis, (coord, centre) in enumerate(((xs, cx), (ys, cy))):
        offset = coord - centre[flat]
        offset[flat == 0] = 0.0
        top = highs[axis] - centre
        low = centre - lows[axis]
        top[top <= 0] = 1.0
        low[low <= 0] = 1.0
        offset /= np.where(offset > 0, top[flat], low[flat])
        maps.append(offset.reshape(height, width))
    return maps[0], maps[1]


def encode(labels: Any, representation: str | Representation, *,
           name: str | None = None) -> Encoded:
    """Training targets of an instance label image in one representation.

    Args:
        labels: `H x W` integer object ids, 0 = background; ids need not be consecutive (any
            integer type; see `matching.check_labels`). Apply geometric augmentation to the
            labels before encoding (a rotated distance map is not the map of the rotated
            labels at the patch edge).
        representation: a name of `REPRESENTATIONS` ("three_class", "distance",
            "contour_touch", "hover") or a `Representation`.
        name: the image's name or path, for messages.

    Returns:
        `Encoded(targets, weights)`: float32 `C x H x W` targets in the order of the
        representation's channels (see the module docstring and `Representation.table`), and
        per-pixel weights (None: no representation here weighs pixels).

    Raises:
        ConfigError: an unknown representation.
        DataError: the label image is refused (not 2-D, boolean, fractional, negative ids).
    """
    rep = get_representation(representation)
    compact, count = compact_labels(labels, name)
    if compact.size == 0:
        raise DataError("the instance label image is empty (0 pixels)", name)
    objects = compact > 0
    out = np.zeros((rep.num_channels, *compact.shape), np.float32)
    if rep.name == "three_class":
        edge = _edges(compact)
        out[0] = ~objects
        out[1] = objects & ~edge
        out[2] = edge
    elif rep.name == "distance":
        out[0] = objects
        out[1] = _distance(compact, count)
    elif rep.name == "contour_touch":
        out[0] = objects
        out[1] = _edges(compact)
        out[2] = _touching(compact, count)
    elif rep.name == "hover":
        out[0] = objects
        out[1], out[2] = _offsets(compact, count)
    else:  # a Representation built elsewhere under a new name
        raise ConfigError(f"instance representation {rep.name!r} has no encoder; known: "
                          f"{', '.join(REPRESENTATIONS)}")
    return Encoded(out, None)
