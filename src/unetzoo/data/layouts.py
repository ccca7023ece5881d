"""Find (image, mask) pairs in the layouts people have, with errors naming the file.

Layouts:
- paired folders `DIR/images/*` and `DIR/masks/*` matched by file stem; a mask may carry a
  common suffix such as `_mask` or `_segmentation` (ISIC) after the image's stem;
- a CSV split (columns image,mask,split; paths relative to DIR) as written by `unetzoo split`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .io import IMAGE_EXTENSIONS, is_image_file

log = logging.getLogger("unetzoo")

IMAGE_DIRS = ("images", "image", "imgs", "img")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "gt")
MASK_SUFFIXES = ("", "_mask", "_masks", "-mask", "_segmentation", "_seg", "_label", "_labels",
                 "_gt", "_manual1")
SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test"}
IGNORED_NAMES = {"thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class Pair:
    """One sample: an image, its mask (None where there is none, e.g. to predict) and split."""

    image: Path
    mask: Path | None
    split: str | None = None

    @property
    def name(self) -> str:
        return self.image.stem


def _list_images(folder: Path) -> dict[str, Path]:
    """Image files of a folder by stem; refuses duplicate stems, skips other files."""
    by_stem: dict[str, Path] = {}
    skipped: list[str] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list folder ({exc.strerror or exc})", folder) from exc
    for entry in entries:
        try:
            regular = entry.is_file()
        except OSError as exc:  # broken mounts, permissions
            raise DataError(f"cannot read ({exc.strerror or exc})", entry) from exc
        if entry.is_symlink() and not entry.exists():
            raise DataError("is a broken or looping symbolic link", entry)
        if not regular or not is_image_file(entry):
            if entry.name.lower() not in IGNORED_NAMES and not entry.name.startswith("."):
                skipped.append(entry.name)
            continue
        if entry.stem in by_stem:
            raise DataError(f"two files share the stem {entry.stem!r}: {by_stem[entry.stem].name} "
                            f"and {entry.name}; keep one", folder)
        by_stem[entry.stem] = entry
    if skipped:
        log.warning("%s: skipped %d non-image entr%s: %s", folder, len(skipped),
                    "y" if len(skipped) == 1 else "ies", ", ".join(skipped[:5]))
    return by_stem


def _subfolder(root: Path, names: Iterable[str], what: str) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"no {what} folder; expected one of: {', '.join(names)}", root)


def _mask_stem(stem: str, images: dict[str, Path]) -> str | None:
    """The image stem a mask stem belongs to, trying the known mask suffixes."""
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and stem[: len(stem) - len(suffix)] in images:
            return stem[: len(stem) - len(suffix)]
    return None


def find_folder_pairs(root: Path) -> list[Pair]:
    """Pairs from `root/images` and `root/masks`, matched by stem."""
    images = _list_images(_subfolder(root, IMAGE_DIRS, "images"))
    masks_dir = _subfolder(root, MASK_DIRS, "masks")
    masks = _list_images(masks_dir)
    if not images:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found",
                        _subfolder(root, IMAGE_DIRS, "images"))
    matched: dict[str, Path] = {}
    for stem, path in masks.items():
        owner = _mask_stem(stem, images)
        if owner is None:
            raise DataError("mask has no image with a matching name", path)
        if owner in matched:
            raise DataError(f"two masks for image {owner!r}: {matched[owner].name} and {path.name}",
                            masks_dir)
        matched[owner] = path
    missing = [images[s] for s in images if s not in matched]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"image has no mask in {masks_dir}{more}", missing[0])
    return [Pair(images[s], matched[s]) for s in sorted(images)]


def _inside(root: Path, value: str, row: int, csvfile: Path) -> Path:
    path = Path(value) if Path(value).is_absolute() else root / value
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise DataError(f"row {row}: {value!r} points outside the dataset folder {root}", csvfile)
    if not path.is_file():
        raise DataError(f"row {row}: file {value!r} not found under {root}", csvfile)
    return path


def read_split_csv(root: Path, csvfile: Path) -> list[Pair]:
    """Pairs from a CSV with columns image,mask,split (mask may be empty for test rows)."""
    if not csvfile.is_file():
        raise DataError("CSV split file not found", csvfile)
    try:
        with open(csvfile, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            if "image" not in columns:
                raise DataError(f"expected a header with columns image,mask,split; got "
                                f"{','.join(reader.fieldnames or []) or 'an empty file'}", csvfile)
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
                    for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV ({exc})", csvfile) from exc
    if not rows:
        raise DataError("CSV has no rows", csvfile)
    pairs = []
    for number, row in enumerate(rows, start=2):
        split = row.get("split", "").lower() or None
        if split is not None and split not in SPLIT_NAMES:
            raise DataError(f"row {number}: unknown split {row['split']!r}; use train, val or "
                            "test", csvfile)
        image = _inside(root, row["image"], number, csvfile)
        mask = _inside(root, row["mask"], number, csvfile) if row.get("mask") else None
        pairs.append(Pair(image, mask, SPLIT_NAMES[split] if split else None))
    return pairs


def find_pairs(root: Path | str, csvfile: Path | str | None = None) -> list[Pair]:
    """Pairs of a dataset folder: from `csvfile` (relative to `root` unless it exists as
    given) when given, else from paired image/mask folders."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder not found" if not root.exists() else "not a folder", root)
    if csvfile is None:
        return find_folder_pairs(root)
    csv_path = Path(csvfile)
    if not csv_path.is_file() and (root / csv_path).is_file():
        csv_path = root / csv_path
    return read_split_csv(root, csv_path)
