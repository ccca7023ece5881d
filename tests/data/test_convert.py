"""Converters from public formats, on small fixtures in each format's exact file names."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.builders import (
    cityscapes_files,
    cvc_clinicdb_files,
    drive_zips,
    dsb2018_files,
    isic2018_files,
    kvasir_files,
    write_files,
    write_zip,
)
from unetzoo.data.classmap import load_class_map
from unetzoo.data.convert import convert_dataset
from unetzoo.data.convert.cityscapes import train_id_table
from unetzoo.data.layouts import find_pairs
from unetzoo.data.prepare import prepare_data
from unetzoo.errors import ConfigError, DataError, RunError


def rows(dest: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((dest / "split.csv").read_text().splitlines()))


def values(path: Path) -> set[int]:
    return {int(v) for v in np.unique(np.asarray(Image.open(path)))}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_dsb2018_merges_nuclei_and_writes_instances(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", dsb2018_files(count=3))
    before = tree_digest(src)
    pairs = convert_dataset("dsb2018", src, tmp_path / "out", instances=True)
    assert tree_digest(src) == before  # the source is never modified
    assert len(pairs) == 3 and all(p.image.suffix == ".png" for p in pairs)
    mask = np.asarray(Image.open(pairs[0].mask))
    assert set(np.unique(mask)) == {0, 255} and (mask == 255).sum() == 2 * 6 * 8
    labels = np.asarray(Image.open(tmp_path / "out" / "instances" / f"{pairs[0].name}.png"))
    assert set(np.unique(labels)) == {0, 1, 2}
    assert load_class_map(tmp_path / "out" / "classes.yaml").names == ("background", "nucleus")
    data = prepare_data(tmp_path / "out", "split.csv", img_size=16)
    assert data.info.task == "binary" and data.info.class_names == ("nucleus",)
    assert data.info.in_channels == 3  # RGBA: alpha dropped


def test_dsb2018_from_its_zip(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "stage1_train.zip", dsb2018_files(count=2))
    assert len(convert_dataset("dsb2018", archive, tmp_path / "out")) == 2


def test_drive_zips_keep_official_split_gif_colours_and_fov(tmp_path: Path) -> None:
    src = drive_zips(tmp_path / "DRIVE")
    pairs = convert_dataset("drive", src, tmp_path / "out")
    table = rows(tmp_path / "out")
    assert [(Path(r["image"]).name, r["split"]) for r in table] == [
        ("01_test.tif", "test"), ("02_test.tif", "test"), ("21_training.tif", "train"),
        ("22_training.tif", "train")]
    assert all(r["roi"].startswith("roi/") for r in table)
    vessels = np.asarray(Image.open(pairs[0].mask))
    assert 0 < (vessels == 255).mean() < 0.5  # the GIF's white (palette index 0) is vessel
    data = prepare_data(tmp_path / "out", "split.csv", img_size=16)
    target = data.dataset(data.test)[0]["mask"].numpy()
    fov = np.asarray(Image.open(pairs[0].roi)) > 0
    assert (target[~fov] == 255).all() and set(np.unique(target[fov])) <= {0, 1}


def test_drive_without_fov_and_without_test_manuals(tmp_path: Path) -> None:
    src = drive_zips(tmp_path / "DRIVE", test_manual=False)
    pairs = convert_dataset("drive", src, tmp_path / "out", fov=False)
    assert all(p.roi is None for p in pairs)
    assert [p.mask is None for p in pairs] == [True, True, False, False]
    assert "roi" not in rows(tmp_path / "out")[0]


def test_cvc_clinicdb_tiffs(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", cvc_clinicdb_files(count=12))
    pairs = convert_dataset("cvc-clinicdb", src, tmp_path / "out", seed=3)
    assert len(pairs) == 12 and pairs[0].image.suffix == ".tif"
    assert values(pairs[0].mask) == {0, 255}
    assert sorted({r["split"] for r in rows(tmp_path / "out")}) == ["test", "train", "val"]


def test_kvasir_jpeg_masks_are_thresholded(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", kvasir_files())
    pairs = convert_dataset("kvasir-seg", src, tmp_path / "out")
    assert len(pairs) == 3 and pairs[0].image.suffix == ".jpg" and pairs[0].mask.suffix == ".png"
    assert values(pairs[0].mask) == {0, 255}  # JPEG noise gone


def test_isic2018_folders_give_splits(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", isic2018_files())
    pairs = convert_dataset("isic2018", src, tmp_path / "out")
    assert [(p.name, p.split, p.mask is not None) for p in pairs] == [
        ("ISIC_0000000", "train", True), ("ISIC_0000001", "train", True),
        ("ISIC_0000002", "train", True), ("ISIC_0000003", "val", True),
        ("ISIC_0000004", "test", False)]


def test_cityscapes_label_ids_become_train_ids(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", cityscapes_files())
    pairs = convert_dataset("cityscapes", src, tmp_path / "out")
    assert [(p.name, p.split) for p in pairs] == [
        ("aachen_000000_000019_leftImg8bit", "train"),
        ("bochum_000000_000019_leftImg8bit", "train"),
        ("frankfurt_000000_000019_leftImg8bit", "val")]
    mask = np.asarray(Image.open(pairs[0].mask))
    # label ids 0, 7, 8, 11, 26, 33, 4, 9 -> unlabeled, road, sidewalk, building, car,
    # bicycle, static, parking
    assert mask[0, ::2].tolist() == [255, 0, 1, 2, 13, 18, 255, 255]
    cmap = load_class_map(tmp_path / "out" / "classes.yaml")
    assert len(cmap.names) == 19 and cmap.names[13] == "car" and cmap.colors[0] == (128, 64, 128)
    data = prepare_data(tmp_path / "out", "split.csv", img_size=8)
    assert data.info.task == "multiclass" and data.info.num_classes == 19
    assert data.info.class_colors[18] == (119, 11, 32)


def test_cityscapes_train_id_table_matches_the_official_labels() -> None:
    table = train_id_table()
    evaluated = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    assert {i: int(table[i]) for i in range(34) if table[i] != 255} == evaluated


def test_cityscapes_unknown_label_id_names_the_file(tmp_path: Path) -> None:
    files = cityscapes_files()
    name = "gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png"
    files[name] = _png(np.full((8, 16), 40))
    src = write_files(tmp_path / "src", files)
    with pytest.raises(DataError, match=re.escape("frankfurt_000000_000019_gtFine_labelIds.png")):
        convert_dataset("cityscapes", src, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def _png(array: np.ndarray) -> bytes:
    from tests.data.builders import encode

    return encode(array.astype(np.uint8), "PNG")


@pytest.mark.parametrize("member, message", [
    ("/etc/passwd", "absolute path"),
    ("training/../../evil.tif", "outside the archive"),
])
def test_zip_members_with_absolute_paths_or_dotdot_are_refused(tmp_path: Path, member: str,
                                                               message: str) -> None:
    archive = tmp_path / "DRIVE" / "training.zip"
    write_zip(archive, {"training/images/21_training.tif": b"x"})
    with zipfile.ZipFile(archive, "a") as handle:
        handle.writestr(zipfile.ZipInfo(member), b"x")
    with pytest.raises(DataError, match=message) as info:
        convert_dataset("drive", tmp_path / "DRIVE", tmp_path / "out")
    assert "training.zip" in str(info.value) and member in str(info.value)


def test_symlink_loop_in_source_is_reported(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", kvasir_files())
    os.symlink(src / "Kvasir-SEG", src / "Kvasir-SEG" / "again")
    with pytest.raises(DataError, match="symbolic link loop"):
        convert_dataset("kvasir-seg", src, tmp_path / "out")


def test_destination_rules(tmp_path: Path) -> None:
    src = write_files(tmp_path / "src", kvasir_files())
    dest = tmp_path / "out"
    (dest / "mine.txt").parent.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(RunError, match="--overwrite"):
        convert_dataset("kvasir-seg", src, dest)
    assert (dest / "mine.txt").read_text() == "keep"
    convert_dataset("kvasir-seg", src, dest, overwrite=True)
    assert not (dest / "mine.txt").exists() and (dest / "split.csv").is_file()
    with pytest.raises(RunError, match="outside the source"):
        convert_dataset("kvasir-seg", src, src / "converted")
    with pytest.raises(RunError, match="outside the source"):
        convert_dataset("kvasir-seg", src, tmp_path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_missing_mask_in_source_names_the_image(tmp_path: Path) -> None:
    files = kvasir_files()
    del files["Kvasir-SEG/masks/cju1qkwl35piu0993l0dewei2.jpg"]
    src = write_files(tmp_path / "src", files)
    with pytest.raises(DataError, match=re.escape("cju1qkwl35piu0993l0dewei2.jpg: image has no")):
        convert_dataset("kvasir-seg", src, tmp_path / "out")


def test_unknown_dataset_and_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown dataset"):
        convert_dataset("voc", tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="takes no option instances"):
        convert_dataset("kvasir-seg", tmp_path, tmp_path / "out", instances=True)


def test_converted_pairs_round_trip_through_the_csv(tmp_path: Path) -> None:
    src = drive_zips(tmp_path / "DRIVE")
    pairs = convert_dataset("drive", src, tmp_path / "out")
    assert find_pairs(tmp_path / "out", "split.csv") == pairs
