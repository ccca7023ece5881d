"""Checks of a train / val / test split before any work: an image is in one split only, a
row is not repeated unless asked, and no test image is a byte copy of a training or
validation image.

The same checks apply to a CSV split, split folders (train/ val/ test/) and a split the
project draws; a refusal is one line naming both rows (CSV line numbers, file names) and
what resolves it. Byte copies are found by size first (os.stat), hashing only the files
whose size a file of the other side shares (BLAKE2b-128, see `data.digests`).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from .digests import file_digest
from .layouts import Pair

FIT_SPLITS = ("train", "val")  # the images a model learns from or is chosen by
MORE = 3  # how many further cases a line names after the first


def shown(path: Path, root: Path | None) -> str:
    """`path` relative to `root` (POSIX style) when inside it, else as given."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            try:
                return path.resolve().relative_to(root.resolve()).as_posix()
            except (ValueError, OSError):
                pass
    return str(path)


def _where(pair: Pair, root: Path | None) -> str:
    """`line 5 (images/a.png, train)` for a CSV row, `images/a.png (train)` otherwise."""
    split = pair.split or "no split"
    if pair.row is not None:
        return f"line {pair.row} ({shown(pair.image, root)}, {split})"
    return f"{shown(pair.image, root)} ({split})"


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a file: equal for two names of one file (a symbolic or hard
    link, another spelling of the path); None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _stats(pairs: Sequence[Pair]) -> list[os.stat_result]:
    stats = []
    for pair in pairs:
        try:
            stats.append(os.stat(pair.image))
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc})", pair.image) from exc
    return stats


def _more(count: int) -> str:
    return f" (and {count} more such pair{'s' if count != 1 else ''})" if count else ""


def check_split(pairs: Sequence[Pair], root: Path | None = None, source: Path | None = None,
                *, allow_duplicates: bool = False, allow_copies: bool = False) -> list[str]:
    """Refuse a split that would score a model on what it learnt from, before any work.

    Checks, in this order: (1) the same image (the same file: same path, another spelling
    of it, a symbolic or hard link; by device and inode) in two splits; (2) the
    same image twice in one split (a repeated row); (3) a test image whose bytes equal a
    train or val image's (a copy under another name; only files of a size both sides share
    are hashed).

    Args:
        pairs: the pairs with their final splits (after the split is drawn or read).
        root: the dataset folder: file names are shown relative to it.
        source: the CSV split the pairs were read from (its line numbers are in
            `Pair.row`); None for folder layouts and drawn splits.
        allow_duplicates: keep repeated rows inside one split (a sample seen twice as
            often); said in a returned line.
        allow_copies: keep test images that are byte copies of train/val images; said in a
            returned line.

    Returns:
        Lines to log (what was allowed), empty when the split is clean.

    Raises:
        DataError: one line naming the CSV (or the dataset folder), both rows (line numbers
            and file names), how many more such pairs there are, and the flag or edit that
            resolves it.

    Example:
        >>> check_split(read_split_csv(root, root / "split.csv"), root,
        ...             root / "split.csv")  # doctest: +SKIP
        DataError: data/split.csv: line 3 (images/a.png, train) and line 9 (images/a.png,
        test) name the same image in two splits ...
    """
    where = source if source is not None else root
    stats = _stats(pairs)
    by_file: dict[tuple[int, int], list[Pair]] = defaultdict(list)
    for pair, st in zip(pairs, stats, strict=True):
        by_file[st.st_dev, st.st_ino].append(pair)
    crossed: list[tuple[Pair, Pair]] = []
    repeated: list[tuple[Pair, Pair]] = []
    for group in by_file.values():
        for i, later in enumerate(group[1:], start=1):
            same = next((p for p in group[:i] if p.split == later.split), None)
            if same is not None:
                repeated.append((same, later))
            else:
                crossed.append((group[0], later))
    if crossed:
        a, b = crossed[0]
        same = "name the same image" if a.row is not None and b.row is not None else \
            "are the same file"
        raise DataError(f"{_where(a, root)} and {_where(b, root)} {same} in two splits: "
                        f"an image belongs to one split; "
                        f"{'delete one of the two rows' if source else 'remove one of them'}"
                        f"{_more(len(crossed) - 1)}", where)
    lines: list[str] = []
    if repeated:
        a, b = repeated[0]
        if not allow_duplicates:
            split = a.split or "no split"
            both = f"lines {a.row} and {b.row} both put {shown(a.image, root)} in {split}" \
                if a.row and b.row else \
                f"{shown(a.image, root)} and {shown(b.image, root)} are one file, both in {split}"
            raise DataError(f"{both}: "
                            f"{'delete one row' if source else 'remove one'}, or pass "
                            "--allow-duplicates to keep both (the image then counts twice)"
                            f"{_more(len(repeated) - 1)}", where)
        lines.append(f"{len(repeated)} row(s) repeat an image of their split, kept "
                     f"(--allow-duplicates): e.g. {shown(a.image, root)} in "
                     f"{a.split or 'no split'}")
    copies = byte_copies(pairs, stats)
    if copies:
        a, b = copies[0]
        digest = file_digest(a.image)
        if not allow_copies:
            raise DataError(f"{_where(a, root)} and {_where(b, root)} are byte-identical "
                            f"images (blake2b {digest[:12]}): the test would score an image "
                            "the model learnt from; remove one, or pass --allow-copies to "
                            f"keep both{_more(len(copies) - 1)}", where)
        lines.append(f"{len(copies)} test image(s) are byte copies of train/val images, kept "
                     f"(--allow-copies): e.g. {_where(b, root)} = {_where(a, root)}")
    return lines


def byte_copies(pairs: Sequence[Pair], stats: Sequence[os.stat_result] | None = None
                ) -> list[tuple[Pair, Pair]]:
    """(train or val pair, test pair) whose image files hold the same bytes under two
    different names, in the order of `pairs`' test rows. Only files of a size both sides
    share are hashed.

    Args:
        pairs: the pairs with their splits.
        stats: `os.stat` of each pair's image, when already known.

    Raises:
        DataError: a file cannot be read (naming it).
    """
    stats = stats if stats is not None else _stats(pairs)
    fit: dict[tuple[int, int], tuple[Pair, int]] = {}
    held: dict[tuple[int, int], tuple[Pair, int]] = {}
    for pair, st in zip(pairs, stats, strict=True):
        side = fit if pair.split in FIT_SPLITS else held if pair.split == "test" else None
        if side is not None:
            side.setdefault((st.st_dev, st.st_ino), (pair, st.st_size))
    held = {k: v for k, v in held.items() if k not in fit}  # one file in both: refused before
    fit_sizes: dict[int, list[Pair]] = defaultdict(list)
    for pair, size in fit.values():
        fit_sizes[size].append(pair)
    found: list[tuple[Pair, Pair]] = []
    for pair, size in held.values():
        same_size = fit_sizes.get(size)
        if not same_size:
            continue
        digest = file_digest(pair.image)
        match = next((o for o in same_size if file_digest(o.image) == digest), None)
        if match is not None:
            found.append((match, pair))
    return found
