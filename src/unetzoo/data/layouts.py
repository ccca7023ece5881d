"""Find (image, mask) pairs in the layouts people have, with errors naming the file.

Layouts (detected in this order):
- a CSV split (columns image, mask, split; optional roi, or one `mask:<class>` column per
  class instead of mask; paths relative to DIR) as written by `unetzoo split` and `convert`;
- paired folders `DIR/images/*` and `DIR/masks/*` matched by file stem; a mask may carry a
  common suffix such as `_mask` or `_segmentation` (ISIC) after the image's stem. Folder
  names are matched case-insensitively and include the names tools export (`GT/`,
  `SegmentationClass/` and `JPEGImages/` of Pascal VOC, `labels/`, `Ground Truth/`, ...);
- class folders `DIR/images/*` and one folder of binary masks per class (`DIR/class1/*`,
  `DIR/class2/*`, ..., or `DIR/masks/class1/*`, ...); a single such folder may also hold
  index masks (`data.masks` decides from the values);
- split folders `DIR/{train,val,test}/` each holding one of the two layouts above; a split
  folder with images only (e.g. test) gives pairs without masks, for prediction.
Any of the folder layouts may add `roi/` (or `fov/`): region-of-interest masks whose zero
pixels are ignored by losses and metrics.

File names that differ only in their Unicode normalisation (NFC on Linux and Windows, NFD
from macOS) match, in folders and in CSV files.

Every finder takes `problems`: None raises the first problem, a list collects them all
(skipping what they concern) for `unetzoo inspect`.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .io import IMAGE_EXTENSIONS, is_image_file

log = logging.getLogger("unetzoo")

IMAGE_DIRS = ("images", "image", "imgs", "img", "jpegimages", "inputs", "input", "original")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "annotation", "gt",
             "groundtruth", "ground_truth", "ground truth", "segmentationclass",
             "segmentationclasspng", "segmentations", "segmentation", "targets")
ROI_DIRS = ("roi", "fov")
MASK_SUFFIXES = ("", "_mask", "_masks", "-mask", "_segmentation", "_seg", "_label", "_labels",
                 "_gt", "_manual1")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "__macosx"}
CLASS_COLUMN = "mask:"


@dataclass(frozen=True)
class Pair:
    """One sample: an image, its mask (None where there is none, e.g. to predict) and split.

    Class-folder layouts give `class_masks` (one binary mask per class, named by
    `class_names`) instead of `mask`; `roi` is an optional region-of-interest mask. `row`
    is the line of the CSV split the pair was read from (None for folder layouts); it is
    not part of a pair's identity (equality, hash).
    """

    image: Path
    mask: Path | None = None
    split: str | None = None
    class_masks: tuple[Path, ...] = ()
    class_names: tuple[str, ...] = ()
    roi: Path | None = None
    row: int | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return self.image.stem

    @property
    def labelled(self) -> bool:
        return self.mask is not None or bool(self.class_masks)

    @property
    def mask_files(self) -> tuple[Path, ...]:
        """Every mask-like file of the pair: mask or class masks, and the ROI."""
        masks = (self.mask,) if self.mask is not None else self.class_masks
        return masks + ((self.roi,) if self.roi is not None else ())


def report(problems: list[DataError] | None, error: DataError) -> None:
    """Raise `error`, or collect it when `problems` is a list."""
    if problems is None:
        raise error
    problems.append(error)


def nfc(name: str) -> str:
    """`name` in Unicode normalisation form C, so NFC and NFD spellings compare equal."""
    return unicodedata.normalize("NFC", name)


def _list_images(folder: Path, problems: list[DataError] | None = None) -> dict[str, Path]:
    """Image files of a folder by stem (NFC); refuses duplicate stems, skips other files."""
    by_stem: dict[str, Path] = {}
    skipped: list[str] = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        report(problems, DataError(f"cannot list folder ({exc.strerror or exc})", folder))
        return by_stem
    for entry in entries:  # string operations: building a Path per entry is the cost here
        name = entry.name
        stem, ext = os.path.splitext(nfc(name))
        try:
            regular = entry.is_file()
        except OSError as exc:  # symlink loops, broken mounts, permissions
            report(problems, DataError(f"cannot read ({exc.strerror or exc})", folder / name))
            continue
        if entry.is_symlink() and not regular and not os.path.exists(entry.path):
            report(problems, DataError("is a broken or looping symbolic link", folder / name))
            continue
        if not regular or ext.lower() not in IMAGE_EXTENSIONS or name.startswith("."):
            if name.lower() not in IGNORED_NAMES and not name.startswith("."):
                skipped.append(name)
            continue
        if stem in by_stem:
            report(problems, DataError(f"two files share the stem {stem!r}: "
                                       f"{by_stem[stem].name} and {name}; keep one", folder))
            continue
        by_stem[stem] = folder / name
    if skipped:
        log.warning("%s: skipped %d non-image entr%s: %s", folder, len(skipped),
                    "y" if len(skipped) == 1 else "ies", ", ".join(skipped[:5]))
    return by_stem


def _subfolder(root: Path, names: Iterable[str]) -> Path | None:
    """The first of `names` (case-insensitive, in their order) that is a folder of `root`."""
    try:
        folders = {nfc(e.name).lower(): Path(e.path) for e in sorted(
            os.scandir(root), key=lambda e: e.name) if e.is_dir()}
    except OSError:
        return None
    return next((folders[n] for n in names if n in folders), None)


def _mask_stem(stem: str, images: dict[str, Path]) -> str | None:
    """The image stem a mask stem belongs to, trying the known mask suffixes."""
    for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and stem[: len(stem) - len(suffix)] in images:
            return stem[: len(stem) - len(suffix)]
    return None


def _match(images: dict[str, Path], folder: Path, problems: list[DataError] | None,
           what: str = "mask", required: bool = True) -> dict[str, Path]:
    """Masks of `folder` by the image stem they belong to; every image needs one."""
    matched: dict[str, Path] = {}
    for stem, path in _list_images(folder, problems).items():
        owner = _mask_stem(stem, images)
        if owner is None:
            report(problems, DataError(f"{what} has no image with a matching name", path))
        elif owner in matched:
            report(problems, DataError(f"two {what}s for image {owner!r}: "
                                       f"{matched[owner].name} and {path.name}", folder))
        else:
            matched[owner] = path
    missing = [images[s] for s in images if s not in matched] if required else []
    if missing and problems is not None:
        problems.extend(DataError(f"image has no {what} in {folder}", m) for m in missing)
    elif missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DataError(f"image has no {what} in {folder}{more}", missing[0])
    return matched


def _class_folders(root: Path, images_dir: Path | None = None) -> list[Path]:
    skip = {images_dir.name.lower() if images_dir else "", *ROI_DIRS}
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() not in skip
               and not p.name.startswith(".") and p.name.lower() not in IGNORED_NAMES]
    return sorted(folders, key=lambda p: _natural(p.name))


def _holds_images(folder: Path) -> bool:
    return any(e.is_file() and is_image_file(Path(e.name)) for e in os.scandir(folder))


def _natural(name: str) -> tuple:
    """Sort key that puts class2 before class10."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def find_folder_pairs(root: Path, split: str | None = None,
                      problems: list[DataError] | None = None, allow_unlabelled: bool = False
                      ) -> list[Pair]:
    """Pairs from `root/images` and `root/masks` (matched by stem), or from `root/images`
    and one folder of binary masks per class; `root/roi` adds regions of interest."""
    images_dir = _subfolder(root, IMAGE_DIRS)
    if images_dir is None:
        raise DataError(f"no images folder; expected one of: {', '.join(IMAGE_DIRS)}", root)
    images = _list_images(images_dir, problems)
    if not images:
        try:
            nested = sorted(e.name for e in os.scandir(images_dir)
                            if e.is_dir() and not e.name.startswith("."))
        except OSError:  # already reported by _list_images
            nested = []
        why = (f"; it holds folders ({', '.join(nested[:5])}{', ...' if len(nested) > 5 else ''})"
               ", which are not searched: list the pairs in a CSV split (--csvfile, columns "
               "image,mask,split, paths relative to the dataset)" if nested else "")
        report(problems, DataError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) found"
                                   + why, images_dir))
        return []
    roi_dir = _subfolder(root, ROI_DIRS)
    rois = _match(images, roi_dir, problems, "region-of-interest mask") if roi_dir else {}
    masks_dir = _subfolder(root, MASK_DIRS)
    classes = [] if masks_dir else _class_folders(root, images_dir)
    if masks_dir is not None and not _holds_images(masks_dir) and _class_folders(masks_dir):
        classes, masks_dir = _class_folders(masks_dir), None  # masks/<class>/
    if masks_dir is None and not classes:
        if not allow_unlabelled:
            raise DataError(f"no masks folder; expected one of: {', '.join(MASK_DIRS)}, or "
                            "one folder of binary masks per class", root)
        return [Pair(images[s], None, split, roi=rois.get(s)) for s in sorted(images)]
    if masks_dir is not None:
        masks = _match(images, masks_dir, problems)
        return [Pair(images[s], masks[s], split, roi=rois.get(s))
                for s in sorted(images) if s in masks]
    per_class = [_match(images, folder, problems) for folder in classes]
    names = tuple(folder.name for folder in classes)
    return [Pair(images[s], None, split, tuple(m[s] for m in per_class), names, rois.get(s))
            for s in sorted(images) if all(s in m for m in per_class)]


def find_split_folder_pairs(root: Path, problems: list[DataError] | None = None) -> list[Pair]:
    """Pairs from `root/{train,val,test}/` folders, each a paired or class-folder layout."""
    splits = [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.lower() in SPLIT_NAMES]
    pairs: list[Pair] = []
    classes: tuple[str, ...] | None = None
    for folder in sorted(splits, key=lambda p: ("train", "val", "test").index(
            SPLIT_NAMES[p.name.lower()])):
        split = SPLIT_NAMES[folder.name.lower()]
        found = find_folder_pairs(folder, split, problems, allow_unlabelled=split == "test")
        names = next((p.class_names for p in found if p.labelled), None)
        if names is not None and classes is not None and names != classes:
            report(problems, DataError(f"class folders {', '.join(names) or '(masks)'} differ "
                                       f"from the other splits' {', '.join(classes) or '(masks)'}",
                                       folder))
            continue
        classes = names if names is not None else classes
        pairs += found
    return pairs


def _lexical(path: Path) -> Path:
    """`path` made absolute with `..` and `.` collapsed, following no symbolic link."""
    return Path(os.path.normpath(os.path.abspath(path)))


def _inside(root: Path, value: str, row: int, csvfile: Path) -> Path:
    """The file a CSV row names, relative to the dataset folder `root` (or absolute).

    A path is inside the dataset when, with `..` collapsed as written, it lies under `root`
    (as given, or with its own links resolved): symbolic links inside the dataset (a linked
    `images/` folder, linked files) are followed wherever they point. The path returned has
    `..` collapsed, so the file opened is the one checked.

    Raises:
        DataError: the path leaves the dataset (`../x.png`, an absolute path elsewhere),
            or names no file; naming the CSV and its line.
    """
    given = Path(value) if Path(value).is_absolute() else root / value
    path = Path(os.path.normpath(given))
    if not path.exists() and "\\" in value and not Path(value).is_absolute():
        path = Path(os.path.normpath(root / value.replace("\\", "/")))  # written on Windows
    if not path.exists():  # the CSV and the file system may spell the name in NFC or NFD
        for form in ("NFC", "NFD"):
            other = Path(unicodedata.normalize(form, str(path)))
            if other.exists():
                path = other
                break
    written, folder = _lexical(path), root.resolve()
    if not (written.is_relative_to(_lexical(root)) or written.is_relative_to(folder)
            or path.resolve().is_relative_to(folder)):
        raise DataError(f"row {row}: {value!r} points outside the dataset folder {root}", csvfile)
    if not path.is_file():
        raise DataError(f"row {row}: file {value!r} not found under {root}", csvfile)
    return path


def read_split_csv(root: Path, csvfile: Path, problems: list[DataError] | None = None
                   ) -> list[Pair]:
    """Pairs from a CSV with columns image, mask (or `mask:<class>` columns), split and
    optionally roi; mask may be empty for test rows. Other columns (the sizes and digests a
    run's split record adds, see `data.split_record`) are ignored. `Pair.row` is the line."""
    if not csvfile.is_file():
        raise DataError("CSV split file not found", csvfile)
    try:
        with open(csvfile, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [c.strip() for c in reader.fieldnames or []]
            if "image" not in [c.lower() for c in header]:
                raise DataError(f"expected a header with columns image,mask,split; got "
                                f"{','.join(reader.fieldnames or []) or 'an empty file'}", csvfile)
            rows, lines = [], []
            for row in reader:  # line_num: the file's line, blank lines counted
                rows.append({csv_column(k): (v or "").strip() for k, v in row.items() if k})
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read CSV ({exc})", csvfile) from exc
    if not rows:
        raise DataError("CSV has no rows", csvfile)
    class_columns = [csv_column(c) for c in header if csv_column(c).startswith(CLASS_COLUMN)]
    names = tuple(c[len(CLASS_COLUMN):] for c in class_columns)
    pairs = []
    for number, row in zip(lines, rows, strict=True):
        try:
            pairs.append(_csv_pair(root, csvfile, number, row, class_columns, names))
        except DataError as error:
            report(problems, error)
    return pairs


def csv_column(name: str) -> str:
    """A CSV header's column key: lower case and stripped; `mask:<class>` keeps the class
    name's case."""
    name = name.strip()
    return CLASS_COLUMN + name[len(CLASS_COLUMN):] if name.lower().startswith(CLASS_COLUMN) \
        else name.lower()


def _csv_pair(root: Path, csvfile: Path, number: int, row: dict[str, str],
              class_columns: list[str], names: tuple[str, ...]) -> Pair:
    split = row.get("split", "").lower() or None
    if split is not None and split not in SPLIT_NAMES:
        raise DataError(f"row {number}: unknown split {row['split']!r}; use train, val or test",
                        csvfile)
    image = _inside(root, row["image"], number, csvfile)
    mask = _inside(root, row["mask"], number, csvfile) if row.get("mask") else None
    roi = _inside(root, row["roi"], number, csvfile) if row.get("roi") else None
    given = [row.get(c, "") for c in class_columns]
    if any(given) and not all(given):
        raise DataError(f"row {number}: fill every mask:<class> column or none", csvfile)
    class_masks = tuple(_inside(root, v, number, csvfile) for v in given) if all(given) else ()
    return Pair(image, mask, SPLIT_NAMES[split] if split else None, class_masks,
                names if class_masks else (), roi, row=number)


def find_pairs(root: Path | str, csvfile: Path | str | None = None,
               problems: list[DataError] | None = None) -> list[Pair]:
    """Pairs of a dataset folder: from `csvfile` (relative to `root` unless it exists as
    given) when given, else from the folder layout found (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError("dataset folder not found" if not root.exists() else "not a folder", root)
    if csvfile is not None:
        csv_path = Path(csvfile)
        if not csv_path.is_file() and (root / csv_path).is_file():
            csv_path = root / csv_path
        return read_split_csv(root, csv_path, problems)
    if _subfolder(root, IMAGE_DIRS) is None and any(
            (root / name).is_dir() for name in os.listdir(root) if name.lower() in SPLIT_NAMES):
        return find_split_folder_pairs(root, problems)
    return find_folder_pairs(root, problems=problems)


def describe_layout(root: Path | str, csvfile: Path | str | None = None) -> str:
    """A few words naming the layout `find_pairs` reads at `root`."""
    root = Path(root)
    if csvfile is not None:
        return f"CSV split {csvfile}"
    images = _subfolder(root, IMAGE_DIRS)
    if images is None:
        return "split folders (train/val/test)"
    masks = _subfolder(root, MASK_DIRS)
    if masks is not None and (_holds_images(masks) or not _class_folders(masks)):
        return f"paired folders ({images.name}/, {masks.name}/)"
    where = f"{masks.name}/" if masks is not None else ""
    return f"class folders ({images.name}/ and one mask folder per class in {where or 'DIR/'})"
