"""Small datasets whose masks (and images) are built the way users' files look after a
converter, an annotation-tool export, a resize, a JPEG save, ImageJ or a model's output:
the inputs that are easy to read wrongly. Each writer returns the dataset folder.

`shared_case_*` port the generators of ../shared/cases (04, 05, 15, 19, 27) so the tests do
not depend on that folder: the same RNG seeds, sizes and formats.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

# -- the shared cases' generators (../shared/cases/gen.py), ported ----------------------------


def blob_pair(h: int = 64, w: int = 64, rng: np.random.Generator | None = None,
              shape: str = "rect") -> tuple[np.ndarray, np.ndarray]:
    """A gray image with one bright rectangle or disc on noise, and its 0/1 mask."""
    rng = rng or np.random.default_rng(0)
    img = rng.normal(60, 15, (h, w)).clip(0, 255)
    mask = np.zeros((h, w), np.uint8)
    rh, rw = max(2, h // 4), max(2, w // 4)
    y = rng.integers(0, max(1, h - rh))
    x = rng.integers(0, max(1, w - rw))
    if shape == "rect":
        mask[y:y + rh, x:x + rw] = 1
    else:
        yy, xx = np.mgrid[:h, :w]
        mask[((yy - y - rh / 2) ** 2 + (xx - x - rw / 2) ** 2) < (min(rh, rw) / 2) ** 2] = 1
    img[mask == 1] = rng.normal(200, 10, int(mask.sum())).clip(0, 255)
    return img.astype(np.uint8), mask


def rgbify(gray: np.ndarray) -> np.ndarray:
    return np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.8).astype(np.uint8)], -1)


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def multiclass_pair(h: int = 64, w: int = 64, values: tuple[int, ...] = (1, 2, 3),
                    rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A gray image with one rectangle per class value, brightness encoding the class."""
    rng = rng or np.random.default_rng(0)
    img = rng.normal(40, 10, (h, w))
    mask = np.zeros((h, w), np.uint8)
    for v in values:
        rh, rw = h // 4, w // 4
        y, x = rng.integers(0, h - rh), rng.integers(0, w - rw)
        mask[y:y + rh, x:x + rw] = v
    for k, v in enumerate(values):
        img[mask == v] = 90 + 50 * k
    return img.clip(0, 255).astype(np.uint8), mask


def shared_case_04(root: Path, ext: str) -> Path:
    """Case 04: 0/255 disc masks resized with bilinear interpolation (anti-aliased edges),
    saved as PNG (`ext` png) or JPEG (jpg)."""
    for i in range(12):
        img, m = blob_pair(128, 128, rng=np.random.default_rng(i), shape="disc")
        img64 = np.asarray(Image.fromarray(rgbify(img)).resize((64, 64), Image.BILINEAR))
        m64 = np.asarray(Image.fromarray(m * 255).resize((64, 64), Image.BILINEAR))
        save(img64, root / "images" / f"p{i:02d}.jpg", quality=95)
        save(m64, root / "masks" / f"p{i:02d}.{ext}", **({"quality": 90} if ext == "jpg" else {}))
    return root


def shared_case_05(root: Path) -> Path:
    """Case 05: one binary dataset merged from two sources: 0/1 and 0/255 masks."""
    for i in range(12):
        img, m = blob_pair(rng=np.random.default_rng(i))
        save(rgbify(img), root / "images" / f"s{i:02d}.png")
        save(m * (1 if i % 2 == 0 else 255), root / "masks" / f"s{i:02d}.png")
    return root


def shared_case_15(root: Path, layout: str) -> Path:
    """Case 15: two-channel TIFF images (channel 0 noise, channel 1 the marker that shows the
    object): `layout` contig (H x W x 2), planar (2 x H x W) or imagej (one page per
    channel, axes CYX)."""
    for i in range(14):
        img, m = blob_pair(rng=np.random.default_rng(i))
        noise = np.random.default_rng(50 + i).integers(200, 3000, img.shape).astype(np.uint16)
        marker = img.astype(np.uint16) * 16
        path = root / "images" / f"s{i:02d}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        if layout == "contig":
            tifffile.imwrite(path, np.stack([noise, marker], -1), photometric="minisblack",
                             planarconfig="contig")
        elif layout == "planar":
            tifffile.imwrite(path, np.stack([noise, marker]), photometric="minisblack",
                             planarconfig="separate")
        else:
            tifffile.imwrite(path, np.stack([noise, marker]), imagej=True,
                             metadata={"axes": "CYX"})
        save(m * 255, root / "masks" / f"s{i:02d}.png")
    return root


VOC_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [224, 224, 192] * 252


def shared_case_19(root: Path, layout: str) -> Path:
    """Case 19: index masks 0..3 with a void (255) first row, in `GT/` (layout gt),
    `SegmentationClass/` palette PNGs (voc), or as one 0/255 folder per class under
    `masks/0`, `masks/1`, `masks/2` (nested)."""
    for i in range(12):
        img, m = multiclass_pair(values=(1, 2, 3), rng=np.random.default_rng(i))
        m = m.copy()
        m[0, :] = 255
        save(rgbify(img), root / "images" / f"s{i:02d}.jpg", quality=95)
        if layout == "nested":
            for k in (1, 2, 3):
                save(((m == k) * 255).astype(np.uint8),
                     root / "masks" / str(k - 1) / f"s{i:02d}.png")
        else:
            folder = root / ("GT" if layout == "gt" else "SegmentationClass")
            folder.mkdir(parents=True, exist_ok=True)
            palette = Image.fromarray(m, mode="P")
            palette.putpalette(VOC_PALETTE)
            palette.save(folder / f"s{i:02d}.png")
    return root


def shared_case_27(root: Path) -> tuple[Path, list[np.ndarray]]:
    """Case 27: 0/1 masks saved as JPEG (quality 90); also the true masks."""
    truths = []
    for i in range(12):
        img, m = blob_pair(rng=np.random.default_rng(i))
        save(rgbify(img), root / "images" / f"s{i:02d}.png")
        save(m, root / "masks" / f"s{i:02d}.jpg", quality=90)
        truths.append(m)
    return root, truths


# -- more inputs of the same kind -------------------------------------------------------------


def disc(size: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2


def images(root: Path, count: int, size: int = 32, folder: str = "images") -> None:
    for i in range(count):
        save(np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8),
             root / folder / f"s{i:02d}.png")


def nuclei_labels(seed: int, size: int = 48, count: int | None = None, first: int = 1
                  ) -> np.ndarray:
    """An instance label image: `count` separate discs labelled first, first + 1, ..."""
    rng = np.random.default_rng(seed)
    count = count if count is not None else int(rng.integers(3, 12))
    labels = np.zeros((size, size), np.int32)
    for k in range(count):
        cy, cx = (k // 4) * 11 + 6, (k % 4) * 11 + 6
        labels[disc(size, cy + rng.uniform(-1, 1), cx + rng.uniform(-1, 1), 4)] = first + k
    return labels


def write_masks(root: Path, masks: list[np.ndarray], ext: str = "png", folder: str = "masks",
                **kwargs) -> Path:
    """`root/images/sNN.png` (noise) and the masks as `root/<folder>/sNN.<ext>`."""
    for i, mask in enumerate(masks):
        path = root / folder / f"s{i:02d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if ext in ("tif", "tiff"):
            tifffile.imwrite(path, mask, **kwargs)
        else:
            save(mask, path, **kwargs)
    images(root, len(masks), masks[0].shape[0])
    return root


def binary_discs(count: int = 6, size: int = 32, value: int = 255,
                 dtype: type = np.uint8) -> list[np.ndarray]:
    return [(disc(size, 10 + i, 14, 6) * value).astype(dtype) for i in range(count)]


def probability_maps(count: int = 6, size: int = 32, softness: float = 1.0
                     ) -> list[np.ndarray]:
    """float32 sigmoid outputs of a model: ~1 inside a disc, ~0 outside, soft edges."""
    yy, xx = np.mgrid[:size, :size]
    maps = []
    for i in range(count):
        distance = 7 - np.hypot(yy - 12 - i, xx - 14)
        maps.append((1 / (1 + np.exp(-distance / softness))).astype(np.float32))
    return maps


def voc_colour_masks(count: int = 4, size: int = 32) -> list[np.ndarray]:
    """RGB colour masks in the VOC colours of classes 0..3."""
    colours = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]], np.uint8)
    out = []
    for i in range(count):
        index = np.zeros((size, size), np.uint8)
        index[4:12, 4:12], index[16:24, 4 + i:12 + i], index[4:12, 18:26] = 1, 2, 3
        out.append(colours[index])
    return out


def nfd(name: str) -> str:
    return unicodedata.normalize("NFD", name)
