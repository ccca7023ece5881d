"""`inspect_dataset`: facts about a dataset and every problem in it, without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.builders import png, write_class_folders
from tests.helpers import write_pairs
from unetzoo.data.inspect import inspect_dataset


def test_clean_dataset_facts(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=4, size=16, multiclass=True)
    found = inspect_dataset(root, progress=False)
    assert not found.problems and found.task == "multiclass"
    text = found.format()
    assert "pairs: 4 (unsplit 4)" in text and "4 .png RGB 8-bit" in text
    assert "masks: 4 .png 8-bit" in text and "problems: none found" in text
    assert found.pixels is not None and found.pixels.sum() == 4 * 16 * 16


def test_every_problem_is_listed(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=6, size=16)
    (root / "images" / "img_000.png").write_bytes(b"")  # zero bytes
    (root / "masks" / "img_001.png").unlink()  # missing mask
    png(root / "masks" / "img_002.png", np.zeros((8, 16), np.uint8))  # size mismatch
    png(root / "masks" / "stray.png", np.zeros((16, 16), np.uint8))  # mask without image
    data = (root / "images" / "img_003.png").read_bytes()
    (root / "images" / "img_003.png").write_bytes(data[: len(data) // 2])  # truncated
    (root / "images" / "notes.txt").write_text("x")  # skipped with a warning, no problem
    found = inspect_dataset(root, progress=False)
    text = "\n".join(str(p) for p in found.problems)
    for expected in ("img_000.png: file is empty", "img_001.png: image has no mask",
                     "img_002.png: mask is 16x8", "stray.png: mask has no image",
                     "img_003.png: cannot read image"):
        assert expected in text
    assert len(found.problems) == 5
    assert found.task == "binary" and found.read == 2


def test_multilabel_frequencies_per_label(tmp_path: Path) -> None:
    root = write_class_folders(tmp_path / "d", count=2, size=16, overlap=True)
    found = inspect_dataset(root, progress=False)
    assert found.task == "multilabel" and found.class_names == ("left", "nucleus")
    left, nucleus = found.pixels
    assert 0 < left < nucleus


def test_values_outside_the_class_map_are_problems(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=2, size=8)
    (root / "classes.yaml").write_text("classes:\n- {name: bg, index: 0}\n"
                                       "- {name: fg, index: 255}\nignore_index: []\n")
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(root / "masks" / "img_001.png")
    found = inspect_dataset(root, progress=False)
    assert [p.path.name for p in found.problems] == ["img_001.png"]
    assert "not in the class map" in str(found.problems[0])
