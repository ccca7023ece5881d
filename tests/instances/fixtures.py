"""Deterministic label-image pairs for the instance-score tests and for make_reference.py.

numpy and the standard library only, so that the reference script (run in a separate venv
with StarDist and Cellpose) and the tests build the same arrays. Randomness comes from
`random.Random(seed).random()`, whose sequence Python keeps stable across versions; shapes
are drawn with plain float arithmetic. `fingerprint` hashes a pair so that a drift of the
generator is caught rather than read as a disagreement of scores.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np

SYNTHETIC_SEEDS = tuple(range(24))
# thresholds the reference is computed at: two below 0.5 (the assignment path) and DSB's ten
REFERENCE_THRESHOLDS = (0.1, 0.3, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
# dsb2018 label images used when ../shared/data/dsb2018 is present: the largest image and
# the one with most nuclei, and two more of the first ones in name order
DSB_IMAGES = (
    "c901794d1a421d52e5734500c0a2a8ca84651fb93b19cec2f411855e70cae339.png",
    "a102535b0e88374bea4a1cfd9ee7cb3822ff54f4ab2a9845d428ec22f9ee2288.png",
    "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552.png",
    "003cee89357d9fe13516167fd67b609a164651b21934585648c740d2c3d86dc1.png",
)
DSB_PERTURBATIONS = ("eroded", "shift2", "mixed")


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float,
             rx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _distinct_ids(rnd: random.Random, count: int, top: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        value = 1 + int(rnd.random() * top)
        if value not in ids:
            ids.append(value)
    return ids


def synthetic_pair(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A small true / predicted label image pair of ellipses, from a seed.

    Truth: 0-15 ellipses (none for seeds divisible by 8) painted in turn, later ones over
    earlier ones, with non-consecutive ids. Prediction: each true object jittered and
    rescaled, or missed, split into two halves, or merged with the previous one; plus a few
    extra blobs. The dtype cycles through uint8, uint16, int32 and int64.
    """
    rnd = random.Random(seed)
    shape = (40 + int(rnd.random() * 40), 40 + int(rnd.random() * 40))
    count = 0 if seed % 8 == 0 else 1 + int(rnd.random() * 15)
    dtype = (np.uint8, np.uint16, np.int32, np.int64)[seed % 4]
    top = 250 if dtype == np.uint8 else 60000
    true = np.zeros(shape, np.int64)
    true_ids = _distinct_ids(rnd, count, top)
    pred_ids = _distinct_ids(rnd, 3 * count + 4, top)
    pred = np.zeros(shape, np.int64)
    last_pred = 0
    for k in range(count):
        cy, cx = rnd.random() * shape[0], rnd.random() * shape[1]
        ry, rx = 2.5 + rnd.random() * 8, 2.5 + rnd.random() * 8
        true[_ellipse(shape, cy, cx, ry, rx)] = true_ids[k]
        action = rnd.random()
        dy, dx = (rnd.random() - 0.5) * 5, (rnd.random() - 0.5) * 5
        sy, sx = 0.7 + rnd.random() * 0.6, 0.7 + rnd.random() * 0.6
        if action < 0.12:
            continue  # missed
        mask = _ellipse(shape, cy + dy, cx + dx, ry * sy, rx * sx)
        new_id = pred_ids[3 * k]
        if action < 0.24:  # split in two halves
            left = np.arange(shape[1])[None, :] < cx + dx
            pred[mask & left] = new_id
            pred[mask & ~left] = pred_ids[3 * k + 1]
        elif action < 0.34 and last_pred:  # merged with the previous predicted object
            pred[mask] = last_pred
            new_id = last_pred
        else:
            pred[mask] = new_id
        last_pred = new_id
    for extra in range(int(rnd.random() * 3)):
        cy, cx = rnd.random() * shape[0], rnd.random() * shape[1]
        pred[_ellipse(shape, cy, cx, 2 + rnd.random() * 4, 2 + rnd.random() * 4)] = \
            pred_ids[3 * count + extra]
    return true.astype(dtype), pred.astype(dtype)


def handmade_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Small pairs whose scores are worked out by hand in test_matching.py."""
    z = np.zeros((8, 8), np.uint16)
    one = z.copy()
    one[2:6, 2:6] = 7  # a 4 x 4 square, id 7
    halves = z.copy()
    halves[2:6, 2:4] = 3  # left half of the square
    halves[2:6, 4:6] = 9  # right half
    two = z.copy()
    two[1:4, 1:4] = 4
    two[5:8, 5:8] = 6
    merged = z.copy()
    merged[1:4, 1:4] = 2
    merged[5:8, 5:8] = 2
    return {
        "empty_empty": (z, z.copy()),
        "empty_truth": (z, one.copy()),
        "empty_prediction": (one.copy(), z),
        "one_perfect": (one.copy(), one.copy()),
        "one_half": (one.copy(), np.where(halves == 3, 1, 0).astype(np.uint16)),
        "split_halves": (one.copy(), halves),
        "merge_two": (two, merged),
    }


def _eroded(labels: np.ndarray) -> np.ndarray:
    """Each object loses the pixels whose 4-neighbours are not all of the same object
    (pixels on the image border included)."""
    padded = np.pad(labels, 1)
    keep = np.ones(labels.shape, bool)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        keep &= padded[1 + dy:1 + dy + labels.shape[0], 1 + dx:1 + dx + labels.shape[1]] \
            == labels
    return np.where(keep, labels, 0).astype(labels.dtype)


def shifted(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The label image moved by (dy, dx) pixels, background coming in at the edges."""
    out = np.zeros_like(labels)
    h, w = labels.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        labels[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def perturbed(labels: np.ndarray, kind: str) -> np.ndarray:
    """A deterministic 'prediction' made from a true label image.

    eroded: every object eroded by one pixel; shift2: moved 2 px down and right; mixed:
    moved (1, -2), every 4th object dropped, every 5th merged into the next one, and every
    7th cut in two at its mean column (the right part gets a new id).
    """
    if kind == "eroded":
        return _eroded(labels)
    if kind == "shift2":
        return shifted(labels, 2, 2)
    if kind != "mixed":
        raise ValueError(f"unknown perturbation {kind!r}")
    out = shifted(labels, 1, -2).astype(np.int64)
    ids = np.unique(out)
    ids = ids[ids != 0]
    fresh = int(labels.max()) + 1
    columns = np.arange(out.shape[1])[None, :]
    for k, value in enumerate(ids):
        mask = out == value
        if k % 4 == 3:
            out[mask] = 0
        elif k % 5 == 1 and k + 1 < ids.size:
            out[mask] = ids[k + 1]
        elif k % 7 == 2:
            cut = np.nonzero(mask)[1].mean()
            out[mask & (columns >= cut)] = fresh
            fresh += 1
    return out.astype(np.int32)


def read_label_png(path: Path) -> np.ndarray:
    """A 16-bit instance label PNG as a uint16 array (Pillow)."""
    from PIL import Image

    with Image.open(path) as image:
        return np.array(image).astype(np.uint16)


def fingerprint(true: np.ndarray, pred: np.ndarray) -> str:
    """sha256 of a pair: shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for array in (true, pred):
        digest.update(f"{array.shape}{array.dtype.str}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
