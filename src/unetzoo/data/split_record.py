"""A run's split, recorded with every file's size and content digest, and kept on resume.

The record is the run folder's `split.csv`: the columns `read_split_csv` reads (image, mask
or one `mask:<class>` column per class, split, roi where present; paths relative to the
dataset folder, POSIX style) followed by

    image_bytes, image_blake2b, mask_bytes, mask_blake2b

(sizes in bytes; BLAKE2b-128 digests as 32 hexadecimal digits, `b2sum -l 128 FILE`; a pair
with several mask files, class masks or a region of interest, records their total size and
the digest of their digests in order, see `data.digests.files_digest`). The file stays a
split `--csvfile` can read and a person can open.

The rule on resume (`resume_split`): a run keeps the split it started with, always. Images
added to the dataset since are named and left out (or, when asked, join train only); files
gone are named and dropped from their split; files whose content changed are named and
keep their split (a changed test file is a warning of its own); an image the dataset now
puts in another split keeps the run's.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..errors import ConfigError, DataError
from ..fileio import atomic_write_text
from .digests import file_digest, file_size, files_digest
from .layouts import CLASS_COLUMN, SPLIT_NAMES, Pair, csv_column, nfc
from .split_check import FIT_SPLITS, file_id, shown

RECORD_COLUMNS = ("image_bytes", "image_blake2b", "mask_bytes", "mask_blake2b")
NAMES_SHOWN = 10  # how many files a line names before "and N more"
ADD_NEW = ("train",)  # where images added since a run started may go, when asked


@dataclass(frozen=True)
class RecordRow:
    """One pair of a recorded split: paths relative to the dataset folder (POSIX style),
    the split, and the sizes (bytes) and digests of the image and of the mask files.
    Sizes are None and digests "" in a split.csv written before they were recorded."""

    image: str
    split: str | None
    mask: str = ""
    class_masks: tuple[str, ...] = ()
    roi: str = ""
    image_bytes: int | None = None
    image_digest: str = ""
    mask_bytes: int | None = None
    mask_digest: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def mask_files(self) -> tuple[str, ...]:
        """The mask or class masks, then the region of interest (as `Pair.mask_files`)."""
        masks = (self.mask,) if self.mask else self.class_masks
        return masks + ((self.roi,) if self.roi else ())


@dataclass
class SplitRecord:
    """The split of a run: its rows under the dataset folder `root`; `path` is the file it
    was read from, if any."""

    root: Path
    rows: list[RecordRow]
    class_names: tuple[str, ...] = ()
    path: Path | None = None

    @property
    def has_digests(self) -> bool:
        """Whether every row records its image digest (not a split.csv of older runs)."""
        return all(r.image_digest for r in self.rows)

    def counts(self) -> dict[str, int]:
        """Rows per split: {"train": n, "val": n, "test": n}."""
        return {s: sum(r.split == s for r in self.rows) for s in ("train", "val", "test")}

    def fit_digests(self) -> set[str]:
        """The image digests of the train and val rows: what a checkpoint learnt from and
        was chosen by (see `data.digests.pack_digests` to store them compactly)."""
        return {r.image_digest for r in self.rows if r.split in FIT_SPLITS and r.image_digest}

    def text(self) -> str:
        """The record as CSV text (see the module docstring for the columns)."""
        names = self.class_names
        has_roi = any(r.roi for r in self.rows)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image", *([f"{CLASS_COLUMN}{n}" for n in names] or ["mask"]),
                         "split", *(["roi"] if has_roi else []), *RECORD_COLUMNS])
        for r in self.rows:
            masks = (list(r.class_masks) or [""] * len(names)) if names else [r.mask]
            writer.writerow([r.image, *masks, r.split or "", *([r.roi] if has_roi else []),
                             "" if r.image_bytes is None else r.image_bytes, r.image_digest,
                             "" if r.mask_bytes is None else r.mask_bytes, r.mask_digest])
        return out.getvalue()

    def write(self, path: Path | str) -> Path:
        """Write the record atomically to `path` (a run's `split.csv`), replacing it."""
        self.path = Path(path)
        return atomic_write_text(path, self.text())


def relative_key(path: Path, root: Path) -> str:
    """The record's name of `path`: relative to `root`, POSIX style, Unicode NFC (absolute
    when outside `root`)."""
    return nfc(shown(path, root))


def _clean(value: str) -> str:
    """A recorded path as a key: POSIX separators, no `./`, NFC."""
    if not value:
        return ""
    value = value.replace("\\", "/")
    return nfc(PurePosixPath(value).as_posix())


def record_row(pair: Pair, root: Path) -> RecordRow:
    """The record of one pair: relative paths, sizes and digests of its files.

    Raises:
        DataError: a file cannot be read (naming it).
    """
    mask_bytes, mask_digest = files_digest(pair.mask_files)

    def rel(path: Path | None) -> str:
        return relative_key(path, root) if path is not None else ""

    return RecordRow(rel(pair.image), pair.split, rel(pair.mask),
                     tuple(rel(m) for m in pair.class_masks), rel(pair.roi),
                     file_size(pair.image), file_digest(pair.image),
                     mask_bytes if pair.mask_files else None, mask_digest)


def record_split(pairs: Sequence[Pair], root: Path | str) -> SplitRecord:
    """The record of a run's split: for every pair (unlabelled test rows included), its
    image and mask paths relative to `root`, split, sizes and BLAKE2b-128 digests. Each
    file is read once (about 0.3 s for the 664 pairs, 55 MB, of dsb2018 from the page cache).

    Raises:
        DataError: a file cannot be read (naming it).

    Example:
        >>> record_split(data.train + data.val + data.test, data.root).write(
        ...     run_dir / "split.csv")  # doctest: +SKIP
    """
    root = Path(root)
    names = next((p.class_names for p in pairs if p.class_masks), ())
    return SplitRecord(root, [record_row(p, root) for p in pairs], tuple(names))


def read_split_record(root: Path | str, path: Path | str) -> SplitRecord:
    """A recorded split as written (files that are gone since stay in it), from a run's
    `split.csv`; one without the size and digest columns (older runs) gives rows without
    them.

    Args:
        root: the dataset folder the paths are relative to.
        path: the record (`<run>/split.csv`).

    Raises:
        DataError: the file is missing or unreadable, has no image column, an unknown split
            or a size that is not a whole number (naming the line).
    """
    root, path = Path(root), Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [csv_column(c) for c in reader.fieldnames or []]
            if "image" not in header:
                raise DataError("expected a split record with columns image,mask,split,...; "
                                f"got {','.join(reader.fieldnames or []) or 'an empty file'}",
                                path)
            names = tuple(c[len(CLASS_COLUMN):] for c in header if c.startswith(CLASS_COLUMN))
            rows = []
            for raw in reader:
                values = {csv_column(k): (v or "").strip() for k, v in raw.items() if k}
                rows.append(_record_row(values, names, reader.line_num, path))
    except FileNotFoundError as exc:
        raise DataError("split record not found", path) from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read the split record ({exc})", path) from exc
    return SplitRecord(root, rows, names, path)


def _record_row(values: dict[str, str], names: tuple[str, ...], line: int, path: Path
                ) -> RecordRow:
    split = values.get("split", "").lower()
    if split and split not in SPLIT_NAMES:
        raise DataError(f"line {line}: unknown split {values['split']!r}", path)

    def size(column: str) -> int | None:
        value = values.get(column, "")
        if not value:
            return None
        if not value.isdigit():
            raise DataError(f"line {line}: {column} {value!r} is not a size in bytes", path)
        return int(value)

    class_masks = tuple(_clean(values.get(f"{CLASS_COLUMN}{n}", "")) for n in names)
    return RecordRow(_clean(values.get("image", "")), SPLIT_NAMES[split] if split else None,
                     _clean(values.get("mask", "")), class_masks if all(class_masks) else (),
                     _clean(values.get("roi", "")), size("image_bytes"),
                     values.get("image_blake2b", "").lower(), size("mask_bytes"),
                     values.get("mask_blake2b", "").lower(), line)


def _names(items: Sequence[str], limit: int = NAMES_SHOWN) -> str:
    more = f", ... and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _images(count: int, what: str = "image") -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


def _verb(count: int, one: str, more: str) -> str:
    return one if count == 1 else more


@dataclass
class SplitDrift:
    """How the dataset differs from a recorded split.

    `added`: current pairs whose image the record does not hold; `removed`: recorded rows
    whose image is gone; `changed`: (row, what) for files whose content (size or digest) or
    mask file names differ, `what` one of "image", "mask", "image and mask", "mask files";
    `moved`: (row, split now) for images the dataset's own split now puts elsewhere; `kept`:
    (row, current pair) for every recorded row still present; `digests`: whether contents
    could be compared (the record holds digests)."""

    added: list[Pair]
    removed: list[RecordRow]
    changed: list[tuple[RecordRow, str]]
    moved: list[tuple[RecordRow, str]]
    kept: list[tuple[RecordRow, Pair]]
    digests: bool = True
    root: Path = Path(".")

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.removed or self.changed or self.moved)

    def describe(self) -> str:
        """One line: what differs (naming files), or that nothing does."""
        by_name = "" if self.digests else " (by name only: the record holds no digests)"
        if self.unchanged:
            return f"the dataset matches the run's split: {_images(len(self.kept))}{by_name}"
        parts = []
        if self.added:
            parts.append(f"{len(self.added)} added "
                         f"({_names([relative_key(p.image, self.root) for p in self.added])})")
        if self.removed:
            parts.append(f"{len(self.removed)} removed "
                         f"({_names([r.image for r in self.removed])})")
        if self.changed:
            parts.append(f"{len(self.changed)} changed "
                         f"({_names([f'{r.image}: {w}' for r, w in self.changed])})")
        if self.moved:
            parts.append(f"{len(self.moved)} in another split now "
                         f"({_names([f'{r.image}: {r.split} -> {s}' for r, s in self.moved])})")
        return f"the dataset differs from the run's split: {'; '.join(parts)}{by_name}"


def compare_split(record: SplitRecord, pairs: Sequence[Pair]) -> SplitDrift:
    """Compare a recorded split with the dataset's pairs now (images matched by their path
    relative to `record.root`). Contents are compared by size, then digest: only files whose
    size is unchanged are hashed.

    Raises:
        DataError: a file cannot be read (naming it).
    """
    root = record.root
    current: dict[str, Pair] = {}
    for pair in pairs:
        current.setdefault(relative_key(pair.image, root), pair)
    recorded = {r.image for r in record.rows}
    added = [p for k, p in current.items() if k not in recorded]
    removed, changed, moved, kept = [], [], [], []
    for row in record.rows:
        pair = current.get(row.image)
        if pair is None:
            removed.append(row)
            continue
        kept.append((row, pair))
        what = _what_changed(row, pair, root)
        if what:
            changed.append((row, what))
        if pair.split is not None and row.split is not None and pair.split != row.split:
            moved.append((row, pair.split))
    return SplitDrift(added, removed, changed, moved, kept, record.has_digests, root)


def _what_changed(row: RecordRow, pair: Pair, root: Path) -> str:
    masks_now = tuple(relative_key(m, root) for m in pair.mask_files)
    if masks_now != row.mask_files:
        return "mask files"
    image = bool(row.image_digest) and (file_size(pair.image) != row.image_bytes
                                        or file_digest(pair.image) != row.image_digest)
    mask = bool(row.mask_digest) and (sum(file_size(m) for m in pair.mask_files)
                                      != row.mask_bytes
                                      or files_digest(pair.mask_files)[1] != row.mask_digest)
    return "image and mask" if image and mask else "image" if image else "mask" if mask else ""


class ResumedSplit(NamedTuple):
    """What `resume_split` gives: the pairs to use (the recorded splits), the lines to log
    as (logging level, line), and the record to store when it grew (images added to train
    with `add_new`), else None: the run folder's record stays as it is."""

    pairs: list[Pair]
    lines: list[tuple[int, str]]
    record: SplitRecord | None


def resume_split(record: SplitRecord, pairs: Sequence[Pair], add_new: str | None = None
                 ) -> ResumedSplit:
    """The pairs a resumed run uses: the split it started with, always.

    Every recorded row still in the dataset keeps its recorded split (in the record's
    order, repeated rows included); rows whose image is gone are dropped and named; files
    whose contents changed keep their split and are named (a changed val or test file in a
    warning, the test split's in a line of its own); images the dataset's split now puts
    elsewhere keep the run's; images added since the run started are named and left out,
    or join train with `add_new="train"` (never val or test, which chose the checkpoints
    and scored the run).

    Args:
        record: the run's split (`read_split_record(dataset, run_dir / "split.csv")`).
        pairs: the dataset's pairs now (`find_pairs`), with or without splits.
        add_new: None (leave new images out) or "train".

    Returns:
        ResumedSplit(pairs, lines, record): pairs with their splits, (level, line) to log,
        and the grown record to write over `<run>/split.csv` (None: keep the file).

    Raises:
        ConfigError: `add_new` other than None or "train".
        DataError: every training image of the record is gone (naming the record), or a
            file cannot be read.
    """
    if add_new is not None and add_new not in ADD_NEW:
        raise ConfigError(f"--add-new {add_new!r}: images added since a run started may join "
                          "train only (val chose the checkpoints, test scored the run)")
    where = record.path or record.root
    drift = compare_split(record, pairs)
    present = {row.image: pair for row, pair in drift.kept}
    used = [replace(present[r.image], split=r.split) for r in record.rows if r.image in present]
    lines: list[tuple[int, str]] = []
    joined: list[Pair] = []
    if not drift.digests:
        lines.append((logging.INFO, f"{where}: the run's split records no file digests "
                      "(written before they were recorded): files are matched by name only, "
                      "changed contents go unseen"))
    if drift.added:
        names = _names([relative_key(p.image, record.root) for p in drift.added])
        if add_new == "train":
            lines.append((logging.INFO, f"{_images(len(drift.added))} added to the dataset "
                          f"since the run started join train (--add-new train): {names}"))
            joined = [replace(p, split="train") for p in drift.added]
            used += joined
        else:
            lines.append((logging.WARNING, f"{_images(len(drift.added))} added to the dataset "
                          f"since the run started {_verb(len(drift.added), 'is', 'are')} "
                          f"left out (a run keeps its split; --add-new train trains on them): "
                          f"{names}"))
    if drift.removed:
        lines.append((logging.WARNING, f"{_images(len(drift.removed), 'pair')} of the run's "
                      f"split {_verb(len(drift.removed), 'is', 'are')} gone from the dataset "
                      "and dropped from their split: "
                      f"{_names([f'{r.image} ({r.split})' for r in drift.removed])}"))
    fit = [(r, w) for r, w in drift.changed if r.split != "test"]
    held = [(r, w) for r, w in drift.changed if r.split == "test"]
    if fit:
        level = logging.WARNING if any(r.split == "val" for r, _ in fit) else logging.INFO
        lines.append((level, f"{_images(len(fit), 'pair')} changed since the run started "
                      "(content differs from the record) and keep their split: "
                      f"{_names([f'{r.image} ({r.split}: {w})' for r, w in fit])}"))
    if held:
        lines.append((logging.WARNING, f"TEST DATA CHANGED: {_images(len(held), 'test pair')} "
                      f"{_verb(len(held), 'differs', 'differ')} from what the run recorded: "
                      f"{_names([f'{r.image} ({w})' for r, w in held])}; test scores from now "
                      "on do not compare with the run's earlier ones"))
    if drift.moved:
        moved = [f"{r.image} (run: {r.split}, now: {s})" for r, s in drift.moved]
        lines.append((logging.WARNING, f"{_images(len(drift.moved))} the dataset now puts in "
                      f"another split keep the run's: {_names(moved)}"))
    counts = {s: sum(p.split == s for p in used) for s in ("train", "val", "test")}
    if not counts["train"]:
        raise DataError(f"none of the run's {record.counts()['train']} training images is in "
                        f"the dataset any more: restore them, or start a new run", where)
    state = "the dataset is unchanged" if drift.unchanged else ", ".join(
        f"{n} {what}" for n, what in ((len(drift.added), "added"),
                                      (len(drift.removed), "removed"),
                                      (len(drift.changed), "changed"),
                                      (len(drift.moved), "in another split")) if n) + \
        " since it started"
    lines.append((logging.INFO, f"the run keeps its split ({where}): train {counts['train']} / "
                  f"val {counts['val']} / test {counts['test']} images; {state}"))
    grown = None
    if joined:
        grown = SplitRecord(record.root, [*record.rows, *(record_row(p, record.root)
                                                            for p in joined)],
                            record.class_names, record.path)
    return ResumedSplit(used, lines, grown)


def training_overlap(pairs: Sequence[Pair], record: SplitRecord | None = None, *,
                     digests: Collection[str] = (), root: Path | None = None) -> str | None:
    """One line naming the scored `pairs` whose image trained or validated a checkpoint,
    by file (the same file as a recorded train/val row: path, link; by device and inode) or
    by content (a byte copy under another name): for `eval` to print; None when there is
    none. With a record, only scored files of a size a train/val image has are hashed
    (10-20 ms for dsb2018's 66 test or 664 images).

    Args:
        pairs: the pairs to score.
        record: the checkpoint's run split (`read_split_record`), whose train and val rows
            count; only scored files of a size a train/val image has are hashed.
        digests: image digests (hexadecimal, full or prefixes of one length) a checkpoint
            carries of its train and val images (`unpack_digests`); every scored image is
            then hashed.
        root: the folder scored file names are shown relative to (default: the record's).

    Raises:
        DataError: a scored file cannot be read (naming it).
    """
    fit = [r for r in record.rows if r.split in FIT_SPLITS] if record is not None else []
    by_file = {file_id(record.root / r.image): r for r in fit} if record is not None else {}
    by_file.pop(None, None)  # recorded files that are gone
    by_digest = {r.image_digest: r for r in fit if r.image_digest}
    sizes = {r.image_bytes for r in fit if r.image_bytes is not None}
    width = len(next(iter(digests))) if digests else 0
    root = root or (record.root if record is not None else None)
    hits: list[str] = []
    for pair in pairs:
        name = shown(pair.image, root)
        row = by_file.get(file_id(pair.image))
        if row is not None:
            hits.append(f"{name} ({row.split})")
            continue
        if not digests and not (by_digest and file_size(pair.image) in sizes):
            continue
        digest = file_digest(pair.image)
        row = by_digest.get(digest)
        if row is not None:
            hits.append(f"{name} (a copy of {row.image}, {row.split})")
        elif digests and digest[:width] in digests:
            hits.append(f"{name} (a copy of a training image)")
    if not hits:
        return None
    return (f"{len(hits)} of the {len(pairs)} images scored trained or validated this "
            f"checkpoint, so their scores are not held-out scores: {_names(hits)}")
