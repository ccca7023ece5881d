"""Reproducible train / val / test splits written as CSV (image,mask,split; relative paths)."""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigError, RunError
from ..fileio import atomic_write_text
from .layouts import CLASS_COLUMN, Pair
from .split_check import check_split
from .split_record import SplitRecord, read_split_record, record_split, resume_split


def split_counts(n: int, train_size: float, val_size: float) -> tuple[int, int, int]:
    """(train, val, test) counts for fractions of `n`; each non-zero fraction gets >= 1."""
    if not 0 < train_size <= 1 or not 0 <= val_size < 1 or train_size + val_size > 1 + 1e-9:
        raise ConfigError(f"split fractions must satisfy 0 < size <= 1, 0 <= val-size and "
                          f"size + val-size <= 1; got size={train_size}, val-size={val_size}")
    n_val = max(1, round(val_size * n)) if val_size > 0 else 0
    n_test = max(1, round((1 - train_size - val_size) * n)) if train_size + val_size < 1 else 0
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ConfigError(f"{n} samples are too few for size={train_size}, val-size={val_size}")
    return n_train, n_val, n_test


def make_split(pairs: Sequence[Pair], train_size: float = 0.9, val_size: float = 0.0,
               seed: int = 0) -> list[Pair]:
    """Assign train/val/test by shuffling with `seed`; the result is sorted by image name."""
    n_train, n_val, _ = split_counts(len(pairs), train_size, val_size)
    order = sorted(pairs, key=lambda p: str(p.image))
    random.Random(seed).shuffle(order)
    names = ["train"] * n_train + ["val"] * n_val + ["test"] * (len(order) - n_train - n_val)
    return sorted((replace(p, split=s) for p, s in zip(order, names, strict=True)),
                  key=lambda p: str(p.image))


def default_split(pairs: Sequence[Pair], seed: int = 0) -> list[Pair]:
    """The split made when a dataset has none: seeded 80 / 10 / 10 train / val / test, or
    everything in train below 10 pairs."""
    sizes = (0.8, 0.1) if len(pairs) >= 10 else (1.0, 0.0)
    return make_split(pairs, *sizes, seed=seed)


def split_csv_text(pairs: Sequence[Pair], root: Path) -> str:
    """CSV text with columns image,mask,split (one `mask:<class>` column per class for
    class-folder pairs; a roi column when pairs have regions of interest), paths relative to
    `root` (POSIX style)."""
    names = next((p.class_names for p in pairs if p.class_masks), ())
    masks = [f"{CLASS_COLUMN}{n}" for n in names] if names else ["mask"]
    has_roi = any(p.roi for p in pairs)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["image", *masks, "split", *(["roi"] if has_roi else [])])

    def rel(path: Path | None) -> str:
        return path.relative_to(root).as_posix() if path else ""

    for p in pairs:
        if names:
            mask_cells = [rel(m) for m in p.class_masks] or [""] * len(names)
        else:
            mask_cells = [rel(p.mask)]
        writer.writerow([rel(p.image), *mask_cells, p.split or "",
                         *([rel(p.roi)] if has_roi else [])])
    return out.getvalue()


def write_split_csv(pairs: Sequence[Pair], root: Path, path: Path, overwrite: bool = False
                    ) -> Path:
    """Write the split CSV atomically; an existing file is kept unless `overwrite`."""
    if path.exists() and not overwrite:
        raise RunError("already exists; pass --overwrite to replace it", path)
    atomic_write_text(path, split_csv_text(pairs, root))
    return path


def split_dataset(root: Path | str, train_size: float = 0.9, val_size: float = 0.0,
                  seed: int = 0, csvfile: Path | str = "split.csv", overwrite: bool = False
                  ) -> tuple[Path, list[Pair]]:
    """Split a dataset folder's pairs at random and write the split CSV.

    Args:
        root: the dataset folder (paired or class-folder layout).
        train_size: fraction of pairs for training (0 < size <= 1).
        val_size: fraction for validation; the rest is the test split.
        seed: the shuffle's seed: the same seed gives the same split.
        csvfile: where the CSV goes, relative to `root` unless absolute.
        overwrite: replace an existing CSV.

    Returns:
        (the CSV path, the pairs with their splits), pairs sorted by image path.

    Raises:
        ConfigError: fractions out of range or too few pairs; DataError: layout problems
            (naming the file); RunError: the CSV exists and `overwrite` is False.

    Example:
        >>> path, pairs = split_dataset("data/nuclei", 0.8, 0.1, seed=1)  # doctest: +SKIP
        >>> sum(p.split == "test" for p in pairs)  # doctest: +SKIP
        12
    """
    from .layouts import find_folder_pairs

    root, target = Path(root), Path(csvfile)
    pairs = make_split(find_folder_pairs(root), train_size, val_size, seed)
    target = target if target.is_absolute() else root / target
    return write_split_csv(pairs, root, target, overwrite=overwrite), pairs


def assign_splits(pairs: Sequence[Pair], val_fraction: float, seed: int
                  ) -> tuple[list[Pair], list[Pair], list[Pair], bool]:
    """(train, val, test, made_new_split) from pairs.

    Pairs that carry splits keep them; when no val rows exist, `val_fraction` of train
    becomes val (seeded). Pairs without any split get a seeded 80/10/10 split (no test
    split below 10 pairs).
    """
    if all(p.split is None for p in pairs):
        pairs = default_split(pairs, seed)
        made = True
    else:
        made = False
        pairs = [p if p.split else replace(p, split="train") for p in pairs]
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    test = [p for p in pairs if p.split == "test"]
    if not val and val_fraction > 0 and len(train) > 1:
        n_val = max(1, round(val_fraction * len(train)))
        order = list(train)
        random.Random(seed).shuffle(order)
        moved = {id(p) for p in order[:n_val]}
        val = [replace(p, split="val") for p in train if id(p) in moved]
        train = [p for p in train if id(p) not in moved]
        made = True
    if not train:
        raise ConfigError("the split has no training rows")
    return train, val, test, made


class RunSplit(NamedTuple):
    """The split of a run (see `split_for_run`): train, val and test pairs (unlabelled test
    rows included), whether a split was drawn or val carved from train (`made`), the
    (logging level, line) pairs to log, and the record to write as `<run>/split.csv` (on
    resume the run's record as read, or grown by images added to train: writing it again
    gives the same file), or None when none was asked for."""

    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    made: bool
    lines: list[tuple[int, str]]
    record: SplitRecord | None


def split_for_run(pairs: Sequence[Pair], root: Path | str, *, csvfile: Path | None = None,
                  val_fraction: float = 0.1, seed: int = 0, resume_from: Path | None = None,
                  add_new: str | None = None, allow_duplicates: bool = False,
                  allow_copies: bool = False, record: bool = True) -> RunSplit:
    """The split a run trains, chooses checkpoints and tests on, checked before any work.

    A new run takes the splits `pairs` carry (a CSV split, split folders) or draws one
    (`assign_splits`). A resumed run whose folder holds its split record (`resume_from`,
    `<run>/split.csv`) keeps that split, always (`data.split_record.resume_split`: new
    images left out unless `add_new="train"`, removed ones dropped, changed ones named);
    without a record (a run from before records) the split is assigned as for a new run and
    said in a warning. Then `check_split` refuses an image in two splits, a repeated row
    (unless `allow_duplicates`) and a test image that is a byte copy of a train or val image
    (unless `allow_copies`).

    Args:
        pairs: the dataset's pairs now (`find_pairs`).
        root: the dataset folder.
        csvfile: the CSV split the pairs were read from (for line numbers in refusals).
        val_fraction, seed: as `assign_splits`.
        resume_from: the run's split record when resuming; None for a new run.
        add_new: on resume, "train" puts images added since the run started in train.
        allow_duplicates, allow_copies: as `check_split`.
        record: make the record of a new split (the files' sizes and digests: about
            0.3 s for dsb2018's 664 pairs); False for commands that write no run.

    Returns:
        RunSplit(train, val, test, made, lines, record).

    Raises:
        ConfigError: split fractions out of range, no training rows, or `add_new` other
            than None or "train" (or given without `resume_from`).
        DataError: the split fails a check (one line naming both rows and the flag that
            resolves it), every training image of a record is gone, or a file cannot be
            read.
    """
    root = Path(root)
    if add_new is not None and resume_from is None:
        raise ConfigError(f"--add-new {add_new} applies to --resume only: a new run draws or "
                          "reads its split from every image there is")
    lines: list[tuple[int, str]] = []
    made, new_record = False, None
    if resume_from is not None and resume_from.is_file():
        recorded = read_split_record(root, resume_from)
        kept, lines, grown = resume_split(recorded, pairs, add_new)
        new_record = grown or recorded  # a run resumed into another --out takes it along
        train, val, test = ([p for p in kept if p.split == s] for s in ("train", "val", "test"))
    else:
        if resume_from is not None:
            lines.append((logging.WARNING, f"{resume_from.parent}: no split record "
                          f"({resume_from.name}) of the run: its split is taken from the "
                          "dataset as it is now (a drawn split is drawn again with the run's "
                          "seed) and recorded from here on"))
        train, val, test, made = assign_splits(pairs, val_fraction, seed)
        if record:
            new_record = record_split(train + val + test, root)
    for line in check_split(train + val + test, root, csvfile,
                            allow_duplicates=allow_duplicates, allow_copies=allow_copies):
        lines.append((logging.INFO, line))
    if not train:
        raise ConfigError("the split has no training rows")
    return RunSplit(train, val, test, made, lines, new_record)
