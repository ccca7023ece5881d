"""Small datasets in the layouts and public formats people have, built on disk for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from unetzoo.data.synthetic import synthesize


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_class_folders(root: Path, count: int = 8, size: int = 32, overlap: bool = False,
                        splits: tuple[str, ...] = ("train", "val"), test_images: int = 0
                        ) -> Path:
    """`root/<split>/images` plus class folders `nucleus/` and `left/` of 0/255 masks.

    Exclusive (multiclass): `left` is the left half of each nucleus and `nucleus` the rest;
    with `overlap` (multilabel), `nucleus` is the whole nucleus. `test_images` adds a
    `test/images` folder without masks.
    """
    index = 0
    for split in splits:
        for _ in range(count):
            image, mask = synthesize(0, index, size)
            left = np.zeros_like(mask)
            left[:, : size // 2] = mask[:, : size // 2]
            nucleus = mask if overlap else np.where(left > 0, 0, mask).astype(np.uint8)
            name = f"{split}_{index:03d}.png"
            png(root / split / "images" / name, image)
            png(root / split / "nucleus" / name, nucleus)
            png(root / split / "left" / name, left)
            index += 1
    for i in range(test_images):
        png(root / "test" / "images" / f"test_{i:03d}.png", synthesize(1, i, size)[0])
    return root


# -- public formats, in their exact file names, nesting, extensions and bit depths ----------

def _disk(size: int, seed: int, radius: float = 0.3) -> np.ndarray:
    """A bool disk somewhere in a size x size image."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    yy, xx = np.mgrid[:size, :size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < (radius * size) ** 2


def _rgb(size: int, seed: int, height: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (height or size, size, 3), dtype=np.uint8)


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    import io

    out = io.BytesIO()
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(out, array, photometric="rgb" if array.ndim == 3 else "minisblack")
    else:
        Image.fromarray(array).save(out, format=fmt, **kwargs)
    return out.getvalue()


def inverted_gif(mask: np.ndarray) -> bytes:
    """A 0/255 mask as a palette GIF whose index 0 is white: palette indices are not values."""
    import io

    image = Image.fromarray((mask == 0).astype(np.uint8), mode="P")
    image.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    out = io.BytesIO()
    image.save(out, format="GIF")
    return out.getvalue()


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def dsb2018_files(count: int = 3, size: int = 24) -> dict[str, bytes]:
    """stage1_train/<id>/images/<id>.png (RGBA) and one 0/255 PNG per nucleus."""
    files = {"stage1_train_labels.csv": b"ImageId,EncodedPixels\n"}
    for i in range(count):
        key = f"{i:02d}" + "ab" * 31  # 64 hex digits, like the real ids
        rgba = np.dstack([_rgb(size, i), np.full((size, size), 255, np.uint8)])
        files[f"stage1_train/{key}/images/{key}.png"] = encode(rgba, "PNG")
        for j in range(2):
            nucleus = np.zeros((size, size), np.uint8)
            nucleus[2 + 10 * j: 8 + 10 * j, 4:12] = 255
            files[f"stage1_train/{key}/masks/{j}{key[:20]}.png"] = encode(nucleus, "PNG")
    return files


def drive_zips(root: Path, size: int = 20, test_manual: bool = True) -> Path:
    """training.zip (21_training.tif ...) and test.zip (01_test.tif ...) as distributed."""
    fov = (_disk(size, 0, 0.45) * 255).astype(np.uint8)
    parts = {"training": range(21, 23), "test": range(1, 3)}
    for part, numbers in parts.items():
        files = {}
        for n in numbers:
            vessels = (_disk(size, n, 0.2) * 255).astype(np.uint8)
            files[f"{part}/images/{n:02d}_{part}.tif"] = encode(_rgb(size, n), "TIFF")
            if part == "training" or test_manual:
                files[f"{part}/1st_manual/{n:02d}_manual1.gif"] = inverted_gif(vessels)
            if part == "test":
                files[f"{part}/2nd_manual/{n:02d}_manual2.gif"] = inverted_gif(vessels)
            files[f"{part}/mask/{n:02d}_{part}_mask.gif"] = encode(fov, "GIF")
        write_zip(root / f"{part}.zip", files)
    return root


def cvc_clinicdb_files(count: int = 3, size: int = 16) -> dict[str, bytes]:
    """CVC-ClinicDB/Original/<n>.tif and CVC-ClinicDB/Ground Truth/<n>.tif."""
    files = {}
    for n in range(1, count + 1):
        files[f"CVC-ClinicDB/Original/{n}.tif"] = encode(_rgb(size, n, size - 4), "TIFF")
        mask = np.zeros((size - 4, size), np.uint8)
        mask[3:9, 4:10] = 255
        mask[3, 4] = 140  # anti-aliased edge
        files[f"CVC-ClinicDB/Ground Truth/{n}.tif"] = encode(mask, "TIFF")
    return files


def kvasir_files(count: int = 3, size: int = 32) -> dict[str, bytes]:
    """Kvasir-SEG/images/<id>.jpg, Kvasir-SEG/masks/<id>.jpg (JPEG) and the bbox JSON."""
    files = {"Kvasir-SEG/kavsir_bboxes.json": b"{}"}
    for i in range(count):
        key = f"cju{i}qkwl35piu0993l0dewei2"
        files[f"Kvasir-SEG/images/{key}.jpg"] = encode(_rgb(size, i), "JPEG")
        mask = np.repeat((_disk(size, i) * 255).astype(np.uint8)[..., None], 3, axis=2)
        files[f"Kvasir-SEG/masks/{key}.jpg"] = encode(mask, "JPEG", quality=75)
    return files


def isic2018_files(size: int = 16, test_truth: bool = False) -> dict[str, bytes]:
    """ISIC2018_Task1-2_<Part>_Input/ISIC_<n>.jpg and ..._GroundTruth/ISIC_<n>_segmentation.png."""
    files: dict[str, bytes] = {}
    numbers = {"Training": (0, 1, 2), "Validation": (3,), "Test": (4,)}
    for part, ids in numbers.items():
        files[f"ISIC2018_Task1-2_{part}_Input/ATTRIBUTION.txt"] = b"ISIC"
        for n in ids:
            files[f"ISIC2018_Task1-2_{part}_Input/ISIC_{n:07d}.jpg"] = encode(_rgb(size, n),
                                                                               "JPEG")
            if part != "Test" or test_truth:
                mask = (_disk(size, n) * 255).astype(np.uint8)
                files[f"ISIC2018_Task1_{part}_GroundTruth/ISIC_{n:07d}_segmentation.png"] = \
                    encode(mask, "PNG")
    return files


def cityscapes_files(width: int = 16, height: int = 8) -> dict[str, bytes]:
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and gtFine/... *_gtFine_labelIds.png,
    with the other gtFine files beside them."""
    files: dict[str, bytes] = {}
    ids = np.array([[0, 7, 8, 11, 26, 33, 4, 9]], np.uint8).repeat(height, 0).repeat(width // 8, 1)
    for split, city in (("train", "aachen"), ("train", "bochum"), ("val", "frankfurt"),
                        ("test", "berlin")):
        key = f"{city}_000000_000019"
        files[f"leftImg8bit/{split}/{city}/{key}_leftImg8bit.png"] = encode(
            _rgb(width, len(city), height), "PNG")
        gt = f"gtFine/{split}/{city}/{key}_gtFine"
        files[f"{gt}_labelIds.png"] = encode(ids if split != "test" else ids * 0, "PNG")
        files[f"{gt}_instanceIds.png"] = encode(ids.astype(np.uint16) * 1000, "PNG")
        files[f"{gt}_color.png"] = encode(_rgb(width, 0, height), "PNG")
        files[f"{gt}_polygons.json"] = b"{}"
    return files


# -- the field cases' synthetic pairs (the logic of shared/cases/gen.py, not the file) -------

def blob_pair(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A gray uint8 image of noise (mean 60, sd 15) with one bright rectangle (mean 200,
    sd 10) a quarter of the side, and its 0/1 mask."""
    image = rng.normal(60, 15, (size, size)).clip(0, 255)
    mask = np.zeros((size, size), np.uint8)
    side = max(2, size // 4)
    y = rng.integers(0, max(1, size - side))
    x = rng.integers(0, max(1, size - side))
    mask[y:y + side, x:x + side] = 1
    image[mask == 1] = rng.normal(200, 10, int(mask.sum())).clip(0, 255)
    return image.astype(np.uint8), mask


def write_blob_pairs(root: Path, start: int = 0, count: int = 12) -> Path:
    """Case 37's dataset: `root/images/sNN.png` (RGB, tinted) and `root/masks/sNN.png`
    (0/255) for NN in start..start+count-1, pair i drawn from seed i; no split file."""
    for i in range(start, start + count):
        gray, mask = blob_pair(np.random.default_rng(i))
        rgb = np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.8).astype(np.uint8)], -1)
        png(root / "images" / f"s{i:02d}.png", rgb)
        png(root / "masks" / f"s{i:02d}.png", mask * 255)
    return root
