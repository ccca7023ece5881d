"""Reproducible train / val / test splits written as CSV (image,mask,split; relative paths)."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError, RunError
from ..fileio import atomic_write_text
from .layouts import CLASS_COLUMN, Pair


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
