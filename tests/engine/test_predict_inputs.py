"""Which files `unetzoo predict --input` reads, and how it says so when there are none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetzoo.engine.predict import input_images
from unetzoo.errors import DataError


def test_folder_of_subfolders_names_them(tmp_path: Path) -> None:
    # images/<case>/x.png gave a bare "no image files in folder".
    for sub in ("caseB", "caseA", ".hidden"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "in" / sub / "x.png")
    with pytest.raises(DataError) as err:
        input_images(tmp_path / "in")
    assert str(err.value) == (f"{tmp_path / 'in'}: no image files in folder; it holds folders "
                              "(caseA, caseB), which are not searched: give one of them as "
                              "--input")
    assert input_images(tmp_path / "in" / "caseA") == [tmp_path / "in" / "caseA" / "x.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no image files in folder$"):
        input_images(tmp_path / "empty")
