"""Finding pairs in folders and CSV splits, and every way that can go wrong."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetzoo.data.layouts import find_pairs
from unetzoo.errors import DataError


def png(path: Path, value: int = 0, size: tuple[int, int] = (4, 4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


def test_pairs_match_by_stem_and_common_mask_suffixes(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "images" / "ISIC_001.png")
    png(tmp_path / "masks" / "a.png")
    png(tmp_path / "masks" / "ISIC_001_segmentation.png")
    pairs = find_pairs(tmp_path)
    assert [(p.image.name, p.mask.name) for p in pairs] == [
        ("ISIC_001.png", "ISIC_001_segmentation.png"), ("a.png", "a.png")]


def test_missing_mask_and_orphan_mask(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "images" / "b.png")
    png(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match=re.escape("b.png: image has no mask")):
        find_pairs(tmp_path)
    png(tmp_path / "masks" / "b.png")
    png(tmp_path / "masks" / "c.png")
    with pytest.raises(DataError, match=re.escape("c.png: mask has no image")):
        find_pairs(tmp_path)


def test_duplicate_stems_are_refused(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "images" / "a.tif")
    with pytest.raises(DataError, match="share the stem 'a'"):
        find_pairs(tmp_path)


def test_empty_and_missing_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no images folder"):
        find_pairs(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match="no images"):
        find_pairs(tmp_path)
    with pytest.raises(DataError, match="not found"):
        find_pairs(tmp_path / "nope")


def test_csv_paths_written_on_windows_are_found(tmp_path: Path) -> None:
    # images\a.png from a CSV made on Windows was "not found" on Linux and macOS.
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "masks" / "a.png")
    (tmp_path / "split.csv").write_text("image,mask,split\r\n"
                                        "images\\a.png,masks\\a.png,train\r\n")
    (pair,) = find_pairs(tmp_path, "split.csv")
    assert pair.image == tmp_path / "images" / "a.png"
    assert pair.mask == tmp_path / "masks" / "a.png"
    (tmp_path / "bad.csv").write_text("image,mask,split\nimages\\b.png,masks\\a.png,train\n")
    with pytest.raises(DataError, match=r"row 2: file 'images\\\\b.png' not found"):
        find_pairs(tmp_path, "bad.csv")


def test_nested_image_folders_are_named_with_the_csv_flag(tmp_path: Path) -> None:
    # images/<case>/x.png was read as "class folders" with no images and no hint.
    for sub in ("caseA", "caseB/deep"):
        png(tmp_path / "images" / sub / "a.png")
        png(tmp_path / "masks" / sub / "a.png")
    with pytest.raises(DataError) as err:
        find_pairs(tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'images'}: no images (")  # the formats read
    assert message.endswith(
        ") found; it holds folders (caseA, caseB), which are not searched: list the pairs in "
        "a CSV split (--csvfile, columns image,mask,split, paths relative to the dataset)")


def test_non_image_files_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "masks" / "a.png")
    (tmp_path / "images" / "notes.txt").write_text("hello")
    (tmp_path / "images" / ".DS_Store").write_bytes(b"x")
    logging.getLogger("unetzoo").propagate = True
    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        assert len(find_pairs(tmp_path)) == 1
    assert "notes.txt" in caplog.text and ".DS_Store" not in caplog.text


def test_symlink_loop_is_reported(tmp_path: Path) -> None:
    png(tmp_path / "masks" / "a.png")
    png(tmp_path / "images" / "a.png")
    os.symlink(tmp_path / "images" / "loop.png", tmp_path / "images" / "loop.png")
    with pytest.raises(DataError, match=re.escape("loop.png")):
        find_pairs(tmp_path)


def test_csv_split_rows(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "masks" / "a.png")
    png(tmp_path / "images" / "b.png")
    (tmp_path / "split.csv").write_text(
        "image,mask,split\nimages/a.png,masks/a.png,train\nimages/b.png,,Test\n")
    pairs = find_pairs(tmp_path, "split.csv")
    assert [(p.name, p.split, p.mask is None) for p in pairs] == [("a", "train", False),
                                                                ("b", "test", True)]


@pytest.mark.parametrize("row, message", [
    ("images/zzz.png,masks/a.png,train", "row 2: file 'images/zzz.png' not found"),
    ("../outside.png,masks/a.png,train", "points outside the dataset folder"),
    ("images/a.png,masks/a.png,holdout", "unknown split 'holdout'"),
])
def test_csv_errors_name_row_and_file(tmp_path: Path, row: str, message: str) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "masks" / "a.png")
    png(tmp_path.parent / "outside.png")
    (tmp_path / "split.csv").write_text(f"image,mask,split\n{row}\n")
    with pytest.raises(DataError, match=message) as info:
        find_pairs(tmp_path, "split.csv")
    assert "split.csv" in str(info.value)


def test_symlinked_folders_and_files_inside_the_dataset_are_followed(tmp_path: Path) -> None:
    store, root = tmp_path / "store", tmp_path / "data"
    png(store / "images" / "a.png", 1)
    png(store / "masks" / "a.png", 2)
    png(store / "elsewhere" / "b.png", 3)
    png(root / "masks" / "b.png", 4)
    (root / "images").symlink_to(store / "images")  # a linked folder
    (store / "images" / "b.png").symlink_to(store / "elsewhere" / "b.png")  # a linked file
    (root / "masks" / "a.png").symlink_to(store / "masks" / "a.png")
    folders = find_pairs(root)
    assert [(p.image, p.mask) for p in folders] == [
        (root / "images" / "a.png", root / "masks" / "a.png"),
        (root / "images" / "b.png", root / "masks" / "b.png")]
    (root / "split.csv").write_text("image,mask,split\nimages/a.png,masks/a.png,train\n"
                                    "images/b.png,images/../masks/b.png,val\n")
    rows = find_pairs(root, "split.csv")
    # `..` collapsed as written: the dataset's masks/b.png, not the link target's sibling
    assert [(p.image, p.mask) for p in rows] == [(p.image, p.mask) for p in folders]
    assert [np.asarray(Image.open(p.image)).max() for p in rows] == [1, 3]
    # the dataset folder itself a link, a row with its real (absolute) path
    (tmp_path / "link").symlink_to(root)
    (root / "abs.csv").write_text(f"image,mask,split\n{root / 'images' / 'a.png'},masks/a.png,"
                                  "train\n")
    assert [p.image for p in find_pairs(tmp_path / "link", "abs.csv")] == [
        root / "images" / "a.png"]
    for escape in ("images/../../store/elsewhere/b.png", str(store / "elsewhere" / "b.png")):
        (root / "split.csv").write_text(f"image,mask,split\n{escape},masks/b.png,train\n")
        with pytest.raises(DataError, match=f"row 2: '{re.escape(escape)}' points outside the "
                                            "dataset folder"):
            find_pairs(root, "split.csv")


def test_csv_without_header(tmp_path: Path) -> None:
    (tmp_path / "split.csv").write_text("images/a.png,masks/a.png,train\n")
    with pytest.raises(DataError, match="expected a header"):
        find_pairs(tmp_path, "split.csv")


def test_class_folders_and_split_folders(tmp_path: Path) -> None:
    from tests.data.builders import write_class_folders

    root = write_class_folders(tmp_path / "d", count=2, size=16, test_images=1)
    pairs = find_pairs(root)
    assert [(p.split, p.labelled) for p in pairs] == [("train", True)] * 2 + \
        [("val", True)] * 2 + [("test", False)]
    assert pairs[0].class_names == ("left", "nucleus")
    assert [m.parent.name for m in pairs[0].class_masks] == ["left", "nucleus"]
    (root / "val" / "left" / "val_003.png").unlink()
    with pytest.raises(DataError, match=re.escape("val_003.png: image has no mask in")):
        find_pairs(root)


def test_split_folders_with_paired_layout_and_roi(tmp_path: Path) -> None:
    for split in ("train", "valid"):
        png(tmp_path / split / "images" / f"{split}.png")
        png(tmp_path / split / "masks" / f"{split}_mask.png")
        png(tmp_path / split / "roi" / f"{split}.png", 255)
    pairs = find_pairs(tmp_path)
    assert [(p.name, p.split, p.roi.parent.name) for p in pairs] == [
        ("train", "train", "roi"), ("valid", "val", "roi")]


def test_split_folders_must_agree_on_classes(tmp_path: Path) -> None:
    png(tmp_path / "train" / "images" / "a.png")
    png(tmp_path / "train" / "tumor" / "a.png")
    png(tmp_path / "val" / "images" / "b.png")
    png(tmp_path / "val" / "stroma" / "b.png")
    with pytest.raises(DataError, match="differ from the other splits'"):
        find_pairs(tmp_path)


def test_csv_with_class_columns_and_roi_round_trips(tmp_path: Path) -> None:
    from tests.data.builders import write_class_folders
    from unetzoo.data.split import write_split_csv

    root = write_class_folders(tmp_path / "d", count=2, size=16)
    pairs = find_pairs(root)
    pairs = [type(p)(p.image, None, p.split, p.class_masks, p.class_names, p.class_masks[0])
             for p in pairs]
    write_split_csv(pairs, root, root / "split.csv")
    header = (root / "split.csv").read_text().splitlines()[0]
    assert header == "image,mask:left,mask:nucleus,split,roi"
    assert find_pairs(root, "split.csv") == pairs


def test_problems_are_collected_instead_of_raised(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "images" / "a.jpg")
    png(tmp_path / "images" / "b.png")
    png(tmp_path / "images" / "c.png")
    png(tmp_path / "masks" / "c.png")
    png(tmp_path / "masks" / "z.png")
    problems: list[DataError] = []
    pairs = find_pairs(tmp_path, problems=problems)
    assert [p.name for p in pairs] == ["c"]
    text = "\n".join(str(p) for p in problems)
    assert "share the stem 'a'" in text and "z.png: mask has no image" in text
    assert "b.png: image has no mask" in text
