"""The embedded default dataset: nucleus-like images generated deterministically.

Each image holds irregular elliptical nuclei, some touching, with internal texture, uneven
illumination, blur and noise. About 60% are bright nuclei on a dark background
(fluorescence-like, gray); the rest are dark nuclei on a bright, tinted background
(brightfield / H&E-like). Faint out-of-focus debris is background. The same seed always
gives the same pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .layouts import Pair
from .split import make_split, write_split_csv

DEFAULT_COUNT = 240
DEFAULT_SIZE = 128


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    import cv2

    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    return noise / (noise.std() + 1e-6)


def _blob(rng: np.random.Generator, size: int, cy: float, cx: float, radius: float
          ) -> np.ndarray:
    """Inside-mask (size x size) of an irregular ellipse centred at (cy, cx)."""
    angle, ratio = rng.uniform(0, np.pi), rng.uniform(0.6, 1.0)
    harmonics = [(k, rng.uniform(0, 0.08), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5)]
    reach = int(np.ceil(radius * 1.3 / ratio)) + 1
    y0, y1 = max(0, int(cy) - reach), min(size, int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(size, int(cx) + reach + 1)
    inside = np.zeros((size, size), bool)
    if y0 >= y1 or x0 >= x1:
        return inside
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = dy - cy, dx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / ratio
    theta = np.arctan2(v, u)
    wobble = 1 + sum(a * np.cos(k * theta + phase) for k, a, phase in harmonics)
    inside[y0:y1, x0:x1] = np.hypot(u, v) < radius * wobble
    return inside


def synthesize(seed: int, index: int, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, 0/255 uint8 mask) pair, fully determined by (seed, index)."""
    import cv2

    rng = np.random.default_rng([seed, index])
    mask = np.zeros((size, size), bool)
    signal = np.zeros((size, size), np.float32)
    centres: list[tuple[float, float, float]] = []
    texture = 1 + 0.25 * _smooth_noise(rng, size, rng.uniform(1.0, 2.5))
    for _ in range(int(rng.integers(4, 13))):
        radius = rng.uniform(0.04, 0.11) * size
        if centres and rng.random() < 0.35:  # touching a previous nucleus
            cy, cx, r0 = centres[int(rng.integers(len(centres)))]
            direction = rng.uniform(0, 2 * np.pi)
            distance = (r0 + radius) * rng.uniform(0.85, 1.0)
            cy, cx = cy + distance * np.sin(direction), cx + distance * np.cos(direction)
        else:
            cy, cx = rng.uniform(0, size, 2)
        centres.append((cy, cx, radius))
        inside = _blob(rng, size, cy, cx, radius) & ~mask
        signal[inside] = rng.uniform(0.45, 1.0) * texture[inside]
        mask |= inside
    for _ in range(int(rng.integers(0, 4))):  # faint, blurry debris that is not a nucleus
        debris = _blob(rng, size, *rng.uniform(0, size, 2), rng.uniform(0.02, 0.05) * size)
        signal[debris & ~mask] = rng.uniform(0.1, 0.25)
    signal = cv2.GaussianBlur(signal, (0, 0), rng.uniform(0.6, 1.6))
    background = rng.uniform(0.03, 0.15) + 0.06 * _smooth_noise(rng, size, size / 4)
    image = np.clip(background + signal + rng.uniform(0.02, 0.06) * rng.standard_normal(
        (size, size)), 0, 1)
    if rng.random() < 0.4:  # dark nuclei on a bright, tinted background
        tint = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.55, 0.8), rng.uniform(0.75, 0.95)])
        rgb = (1 - 0.8 * image)[..., None] * tint
    else:
        rgb = np.repeat(image[..., None], 3, axis=2)
    return (rgb * 255).round().astype(np.uint8), mask.astype(np.uint8) * 255


def generate_dataset(root: Path | str, count: int = DEFAULT_COUNT, size: int = DEFAULT_SIZE,
                     seed: int = 0) -> Path:
    """Write `count` pairs as `root/images/*.png`, `root/masks/*.png` and `root/split.csv`
    (70% train, 15% val, 15% test). Returns the CSV path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        image, mask = synthesize(seed, index, size)
        name = f"nuclei_{index:04d}.png"
        Image.fromarray(image).save(root / "images" / name)
        Image.fromarray(mask).save(root / "masks" / name)
        pairs.append(Pair(root / "images" / name, root / "masks" / name))
    split = make_split(pairs, train_size=0.7, val_size=0.15, seed=seed)
    return write_split_csv(split, root, root / "split.csv", overwrite=True)
