"""A run records its split (every file's size and digest) and keeps it on resume; eval
names scored images that trained the checkpoint."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.builders import write_blob_pairs, write_class_folders
from tests.helpers import write_pairs
from unetzoo.data.digests import file_digest, files_digest, pack_digests, unpack_digests
from unetzoo.data.layouts import find_pairs, read_split_csv
from unetzoo.data.split import assign_splits, make_split, split_for_run
from unetzoo.data.split_record import (
    SplitRecord,
    compare_split,
    read_split_record,
    record_split,
    resume_split,
    training_overlap,
)
from unetzoo.errors import ConfigError, DataError


def b2(path: Path) -> str:
    """BLAKE2b-128 of a file, computed here independently (what `b2sum -l 128` prints)."""
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def names(pairs) -> list[str]:
    return [p.image.name for p in pairs]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "d", count=10, size=16)


def test_record_round_trip_is_a_split_csv(dataset: Path, tmp_path: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    path = record_split(pairs, dataset).write(tmp_path / "run" / "split.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "image,mask,split,image_bytes,image_blake2b,mask_bytes,mask_blake2b"
    image, mask = dataset / "images" / "img_000.png", dataset / "masks" / "img_000.png"
    first = next(p for p in pairs if p.image == image)
    assert lines[1] == (f"images/img_000.png,masks/img_000.png,{first.split},"
                        f"{image.stat().st_size},{b2(image)},{mask.stat().st_size},{b2(mask)}")
    assert read_split_csv(dataset, path) == pairs  # the project's split reader reads it
    again = read_split_record(dataset, path)
    assert again.rows == record_split(pairs, dataset).rows and again.has_digests
    assert again.counts() == {"train": 6, "val": 2, "test": 2}
    assert [r.line for r in again.rows] == list(range(2, 12))


def test_class_masks_and_roi_recorded_as_one_digest(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "c", count=2, size=16, splits=("train",))
    folder = root / "train"
    for name in ("train_000.png", "train_001.png"):
        Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder.parent / "roi.png")
        (folder / "roi").mkdir(exist_ok=True)
        shutil.copyfile(folder.parent / "roi.png", folder / "roi" / name)
    pairs = find_pairs(root)
    record = record_split(pairs, root)
    files = pairs[0].mask_files
    assert [f.parent.name for f in files] == ["left", "nucleus", "roi"]
    joined = hashlib.blake2b(b"".join(bytes.fromhex(b2(f)) for f in files), digest_size=16)
    assert (record.rows[0].mask_bytes, record.rows[0].mask_digest) == (
        sum(f.stat().st_size for f in files), joined.hexdigest())
    assert files_digest(files[:1]) == (files[0].stat().st_size, b2(files[0]))
    path = record.write(tmp_path / "split.csv")
    assert path.read_text().splitlines()[0] == (
        "image,mask:left,mask:nucleus,split,roi,image_bytes,image_blake2b,mask_bytes,"
        "mask_blake2b")
    assert [(p.image, p.class_masks, p.roi) for p in read_split_csv(root, path)] == \
        [(p.image, p.class_masks, p.roi) for p in pairs]
    assert read_split_record(root, path).rows == record.rows
    assert compare_split(read_split_record(root, path), pairs).unchanged


def test_compare_names_added_removed_changed_moved(dataset: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    record = record_split(pairs, dataset)
    split_of = {p.image.name: p.split for p in pairs}
    (dataset / "images" / "img_009.png").unlink()
    (dataset / "masks" / "img_009.png").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(dataset / "images" / "img_002.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(dataset / "masks" / "img_004.png")
    write_pairs(dataset, count=1, size=16, seed=3)  # img_000 rewritten: image and mask
    shutil.copyfile(dataset / "images" / "img_001.png", dataset / "images" / "new.png")
    shutil.copyfile(dataset / "masks" / "img_001.png", dataset / "masks" / "new.png")
    now = find_pairs(dataset)
    drift = compare_split(record, now)
    assert names(drift.added) == ["new.png"]
    assert [r.image for r in drift.removed] == ["images/img_009.png"]
    assert [(r.image, w) for r, w in drift.changed] == [
        ("images/img_000.png", "image and mask"), ("images/img_002.png", "image"),
        ("images/img_004.png", "mask")]
    assert drift.moved == []
    assert drift.describe() == (
        "the dataset differs from the run's split: 1 added (images/new.png); 1 removed "
        "(images/img_009.png); 3 changed (images/img_000.png: image and mask, "
        "images/img_002.png: image, images/img_004.png: mask)")
    moved = [p if p.image.name != "img_003.png" else
             type(p)(p.image, p.mask, "val" if split_of["img_003.png"] != "val" else "test")
             for p in now]
    assert [r.image for r, _ in compare_split(record, moved).moved] == ["images/img_003.png"]


def test_resume_keeps_the_recorded_split_and_says_what_changed(dataset: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    record = record_split(pairs, dataset)
    test = [p for p in pairs if p.split == "test"]
    gone, changed = test
    gone.image.unlink()
    assert gone.mask is not None
    gone.mask.unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(changed.image)
    used, lines, grown = resume_split(record, find_pairs(dataset))
    assert [(p.image, p.split) for p in used] == [(p.image, p.split) for p in pairs
                                                   if p is not gone]
    assert grown is None
    rel = lambda p: p.image.relative_to(dataset).as_posix()  # noqa: E731
    assert lines == [
        (logging.WARNING, f"1 pair of the run's split is gone from the dataset and dropped "
                          f"from their split: {rel(gone)} (test)"),
        (logging.WARNING, f"TEST DATA CHANGED: 1 test pair differs from what the run recorded: "
                          f"{rel(changed)} (image); test scores from now on do not compare "
                          "with the run's earlier ones"),
        (logging.INFO, "the run keeps its split (" + str(dataset) + "): train 6 / val 2 / "
                       "test 1 images; 1 removed, 1 changed since it started")]


def test_resume_refuses_bad_add_new_and_a_split_without_training_images(dataset: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    record = record_split(pairs, dataset)
    with pytest.raises(ConfigError, match="--add-new 'test': images added since a run "
                                          "started may join train only"):
        resume_split(record, pairs, add_new="test")
    for p in pairs:
        if p.split == "train":
            for file in (p.image, p.mask):
                assert file is not None
                file.unlink()
    with pytest.raises(DataError, match="none of the run's 6 training images is in the "
                                        "dataset any more"):
        resume_split(record, find_pairs(dataset))


def test_a_record_without_digests_matches_by_name(dataset: Path, tmp_path: Path) -> None:
    from unetzoo.data.split import write_split_csv

    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    path = write_split_csv(pairs, dataset, tmp_path / "split.csv")  # an older run's file
    record = read_split_record(dataset, path)
    assert not record.has_digests
    used, lines, _ = resume_split(record, find_pairs(dataset))
    assert [(p.image, p.split) for p in used] == [(p.image, p.split) for p in pairs]
    assert lines[0] == (logging.INFO, f"{path}: the run's split records no file digests "
                        "(written before they were recorded): files are matched by name only, "
                        "changed contents go unseen")


def test_case_37_resume_after_adding_pairs_keeps_the_split(tmp_path: Path) -> None:
    """shared/cases/37: 12 pairs without a split file; training draws the split and the run
    records it; 8 pairs are added (the case's `make.py 12 8`); `train --resume` drew the
    split again over 20 pairs and a former test image (s06) was trained on."""
    root = write_blob_pairs(tmp_path / "data", 0, 12)
    run = tmp_path / "run"
    start = split_for_run(find_pairs(root), root, val_fraction=0.1, seed=0)
    assert start.made and start.record is not None
    start.record.write(run / "split.csv")
    assert (names(start.val), names(start.test)) == (["s11.png"], ["s06.png"])
    assert names(start.train) == [f"s{i:02d}.png" for i in range(12) if i not in (6, 11)]

    write_blob_pairs(root, 12, 8)
    train, val, test, _ = assign_splits(find_pairs(root), 0.1, 0)  # as `train` did
    redrawn = {p.image.name: p.split for p in train + val + test}
    assert redrawn["s06.png"] == "train"  # the fault: the test image became a training one

    recorded = (run / "split.csv").read_bytes()
    resumed = split_for_run(find_pairs(root), root, val_fraction=0.1, seed=0,
                            resume_from=run / "split.csv")
    assert (resumed.train, resumed.val, resumed.test) == (start.train, start.val, start.test)
    assert not resumed.made and resumed.record is not None
    resumed.record.write(run / "split.csv")  # what `train --resume` writes: the same file
    assert (run / "split.csv").read_bytes() == recorded
    new = ", ".join(f"images/s{i:02d}.png" for i in range(12, 20))
    assert resumed.lines == [
        (logging.WARNING, f"8 images added to the dataset since the run started are left out "
                          f"(a run keeps its split; --add-new train trains on them): {new}"),
        (logging.INFO, f"the run keeps its split ({run / 'split.csv'}): train 10 / val 1 / "
                       "test 1 images; 8 added since it started")]

    joined = split_for_run(find_pairs(root), root, resume_from=run / "split.csv",
                           add_new="train")
    assert names(joined.train) == names(start.train) + [f"s{i:02d}.png" for i in range(12, 20)]
    assert (joined.val, joined.test) == (start.val, start.test)
    assert joined.lines[0] == (logging.INFO, "8 images added to the dataset since the run "
                               f"started join train (--add-new train): {new}")
    assert joined.record is not None and len(joined.record.rows) == 20
    assert joined.record.rows[:12] == read_split_record(root, run / "split.csv").rows


def test_resume_without_a_record_says_so(tmp_path: Path) -> None:
    root = write_blob_pairs(tmp_path / "data", 0, 12)
    with pytest.raises(ConfigError, match="--add-new train applies to --resume only"):
        split_for_run(find_pairs(root), root, add_new="train")
    split = split_for_run(find_pairs(root), root, resume_from=tmp_path / "run" / "split.csv")
    assert split.lines == [(logging.WARNING, f"{tmp_path / 'run'}: no split record (split.csv) "
                            "of the run: its split is taken from the dataset as it is now (a "
                            "drawn split is drawn again with the run's seed) and recorded from "
                            "here on")]
    assert split.record is not None and len(split.record.rows) == 12


def test_training_overlap_by_path_and_by_content(dataset: Path, tmp_path: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    record = record_split(pairs, dataset)
    test = [p for p in pairs if p.split == "test"]
    assert training_overlap(test, record) is None
    overlap = training_overlap(pairs, record)
    assert overlap is not None and overlap.startswith(
        "8 of the 10 images scored trained or validated this checkpoint, so their scores are "
        "not held-out scores: images/img_000.png (")
    other = write_pairs(tmp_path / "elsewhere", count=2, size=16, seed=7)
    train = next(p for p in pairs if p.split == "train")
    shutil.copyfile(train.image, other / "images" / "img_001.png")
    scored = find_pairs(other)
    assert training_overlap(scored, record) == (
        f"1 of the 2 images scored trained or validated this checkpoint, so their scores are "
        f"not held-out scores: {other / 'images' / 'img_001.png'} (a copy of "
        f"{train.image.relative_to(dataset).as_posix()}, train)")
    carried = unpack_digests(pack_digests(record.fit_digests(), width=8), width=8)
    assert len(carried) == 8 and file_digest(train.image)[:16] in carried
    assert training_overlap(scored, digests=carried, root=other) == (
        "1 of the 2 images scored trained or validated this checkpoint, so their scores are "
        "not held-out scores: images/img_001.png (a copy of a training image)")


def test_packed_digests_are_16_bytes_an_image() -> None:
    digests = [hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest() for i in range(1000)]
    blob = pack_digests(digests + digests[:10])
    assert len(blob) == 16_000 and unpack_digests(blob) == set(digests)
    assert len(pack_digests(digests, width=8)) == 8_000
    with pytest.raises(ValueError, match="not a whole number"):
        unpack_digests(blob[:-1])


def test_record_is_written_atomically_and_replaced(dataset: Path, tmp_path: Path) -> None:
    pairs = make_split(find_pairs(dataset), 0.6, 0.2, seed=1)
    path = tmp_path / "run" / "split.csv"
    path.parent.mkdir()
    path.write_text("old")
    SplitRecord(dataset, record_split(pairs, dataset).rows).write(path)
    assert read_split_csv(dataset, path) == pairs
    assert [p.name for p in path.parent.iterdir()] == ["split.csv"]  # no temporary left
