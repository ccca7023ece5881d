"""A split is checked before any work: an image in one split only, no repeated row unless
asked, no test image that is a byte copy of a train or val image."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

import unetzoo.data.split_check as split_check
from tests.helpers import write_pairs
from unetzoo.data.layouts import find_pairs, read_split_csv
from unetzoo.data.split import split_for_run
from unetzoo.data.split_check import byte_copies, check_split
from unetzoo.errors import DataError


def write_csv(root: Path, rows: list[str], name: str = "split.csv") -> Path:
    (root / name).write_text("image,mask,split\n" + "\n".join(rows) + "\n")
    return root / name


def row(i: int, split: str, image: str | None = None) -> str:
    return f"{image or f'images/img_{i:03d}.png'},masks/img_{i:03d}.png,{split}"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "d", count=6, size=16)


def test_clean_split_passes_and_line_numbers_are_the_files(root: Path) -> None:
    csv = write_csv(root, [row(0, "train"), row(1, "train"), "", row(2, "val"), row(3, "test")])
    pairs = read_split_csv(root, csv)
    assert [p.row for p in pairs] == [2, 3, 5, 6]  # the blank line 4 counted
    assert check_split(pairs, root, csv) == []


def test_same_image_in_two_splits_names_both_lines(root: Path) -> None:
    csv = write_csv(root, [row(0, "train"), row(1, "train"), row(2, "val"), row(1, "test"),
                           row(3, "test"), row(3, "val")])
    with pytest.raises(DataError) as error:
        check_split(read_split_csv(root, csv), root, csv, allow_duplicates=True,
                    allow_copies=True)
    assert str(error.value) == (
        f"{csv}: line 3 (images/img_001.png, train) and line 5 (images/img_001.png, test) "
        "name the same image in two splits: an image belongs to one split; delete one of the "
        "two rows (and 1 more such pair)")
    assert "\n" not in str(error.value)


def test_a_spelling_of_the_same_file_is_the_same_image(root: Path) -> None:
    csv = write_csv(root, [row(0, "train"), row(1, "train"),
                           row(0, "test", "images/../images/img_000.png")])
    with pytest.raises(DataError, match=r"line 2 \(images/img_000.png, train\) and line 4 "):
        check_split(read_split_csv(root, csv), root, csv)


def test_repeated_row_refused_unless_allowed(root: Path) -> None:
    csv = write_csv(root, [row(0, "train"), row(1, "train"), row(0, "train"), row(2, "test")])
    pairs = read_split_csv(root, csv)
    with pytest.raises(DataError) as error:
        check_split(pairs, root, csv)
    assert str(error.value) == (
        f"{csv}: lines 2 and 4 both put images/img_000.png in train: delete one row, or pass "
        "--allow-duplicates to keep both (the image then counts twice)")
    assert check_split(pairs, root, csv, allow_duplicates=True) == [
        "1 row(s) repeat an image of their split, kept (--allow-duplicates): e.g. "
        "images/img_000.png in train"]


def test_byte_copy_in_test_refused_hashing_only_sizes_both_sides_share(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copyfile(root / "images" / "img_001.png", root / "images" / "copy.png")
    csv = write_csv(root, [row(0, "train"), row(1, "train"), row(2, "val"), row(3, "test"),
                           row(4, "test", "images/copy.png")])
    pairs = read_split_csv(root, csv)
    hashed: list[str] = []

    def counting(path: Path) -> str:
        hashed.append(Path(path).name)
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()

    monkeypatch.setattr(split_check, "file_digest", counting)
    size = os.path.getsize(root / "images" / "img_001.png")
    sharing = {p.image.name for p in pairs if os.path.getsize(p.image) == size}
    with pytest.raises(DataError) as error:
        check_split(pairs, root, csv)
    digest = hashlib.blake2b((root / "images" / "copy.png").read_bytes(),
                             digest_size=16).hexdigest()
    assert str(error.value) == (
        f"{csv}: line 3 (images/img_001.png, train) and line 6 (images/copy.png, test) are "
        f"byte-identical images (blake2b {digest[:12]}): the test would score an image the "
        "model learnt from; remove one, or pass --allow-copies to keep both")
    assert set(hashed) <= sharing  # files of a size no other side has are never read
    assert check_split(pairs, root, csv, allow_copies=True) == [
        "1 test image(s) are byte copies of train/val images, kept (--allow-copies): e.g. "
        "line 6 (images/copy.png, test) = line 3 (images/img_001.png, train)"]


def test_copies_inside_one_side_are_not_leaks(root: Path) -> None:
    shutil.copyfile(root / "images" / "img_001.png", root / "images" / "copy.png")
    csv = write_csv(root, [row(0, "train"), row(1, "train"), row(4, "val", "images/copy.png"),
                           row(3, "test")])
    assert byte_copies(read_split_csv(root, csv)) == []


def test_split_folders_same_file_and_copy(tmp_path: Path) -> None:
    root = tmp_path / "s"
    write_pairs(root / "train", count=3, size=16)
    write_pairs(root / "test", count=2, size=16, seed=1)
    (root / "test" / "images" / "img_001.png").unlink()
    (root / "test" / "images" / "img_001.png").symlink_to(root / "train" / "images" /
                                                          "img_002.png")
    with pytest.raises(DataError) as error:
        check_split(find_pairs(root), root)
    assert str(error.value) == (
        f"{root}: train/images/img_002.png (train) and test/images/img_001.png (test) are "
        "the same file in two splits: an image belongs to one split; remove one of them")
    (root / "test" / "images" / "img_001.png").unlink()
    shutil.copyfile(root / "train" / "images" / "img_002.png",
                    root / "test" / "images" / "img_001.png")
    with pytest.raises(DataError, match=r"train/images/img_002.png \(train\) and "
                                        r"test/images/img_001.png \(test\) are byte-identical"):
        check_split(find_pairs(root), root)


def test_a_drawn_split_is_checked_too(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=1, size=16)
    for i in range(1, 12):  # twelve copies of one image: any drawn test image is a copy
        shutil.copyfile(root / "images" / "img_000.png", root / "images" / f"img_{i:03d}.png")
        shutil.copyfile(root / "masks" / "img_000.png", root / "masks" / f"img_{i:03d}.png")
    with pytest.raises(DataError, match=r"\(test\) are byte-identical images .* pass "
                                        r"--allow-copies to keep both$"):
        split_for_run(find_pairs(root), root, record=False)
    split = split_for_run(find_pairs(root), root, record=False, allow_copies=True)
    assert (len(split.train), len(split.val), len(split.test), split.made) == (10, 1, 1, True)
    assert [m for _, m in split.lines] == [
        "1 test image(s) are byte copies of train/val images, kept (--allow-copies): e.g. "
        f"{split.test[0].image.relative_to(root).as_posix()} (test) = "
        f"{split.train[0].image.relative_to(root).as_posix()} (train)"]


def test_two_names_of_one_file_in_one_split(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=3, size=16)
    (root / "images" / "link.png").symlink_to(root / "images" / "img_000.png")
    shutil.copyfile(root / "masks" / "img_000.png", root / "masks" / "link.png")
    with pytest.raises(DataError) as error:
        check_split(find_pairs(root), root)  # no split: all pairs in one ("no split")
    assert str(error.value) == (
        f"{root}: images/img_000.png and images/link.png are one file, both in no split: "
        "remove one, or pass --allow-duplicates to keep both (the image then counts twice)")
