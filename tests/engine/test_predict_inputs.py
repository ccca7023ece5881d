"""Which files `unetzoo predict --input` reads, and how it says so when there are none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetzoo.engine.inference.predict import input_images
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


def test_channel_conversion_is_said_in_one_line(tmp_path: Path, caplog) -> None:
    # A 3-channel model on gray inputs replicated them without a word.
    from tests.test_checkpoint import make_checkpoint
    from unetzoo.artefacts.checkpoint import save_checkpoint
    from unetzoo.engine.inference.predict import predict_paths
    from unetzoo.engine.inference.predictor import InferenceOptions
    from unetzoo.runtime import Runtime

    model = save_checkpoint(tmp_path / "best.pt", make_checkpoint())  # 3 input channels
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "in" / "gray.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in" / "rgb.png")
    Image.fromarray(np.zeros((16, 16, 2), np.uint8), "LA").save(tmp_path / "in" / "la.png")
    options = InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False))
    with caplog.at_level("INFO", logger="unetzoo"):
        result = predict_paths(model, tmp_path / "in", tmp_path / "out", options=options,
                               progress=False)
    assert result.files == 3
    assert ("images: 1 gray, 1 gray+alpha, 1 RGB; 1 with a declared alpha channel: the alpha "
            "is dropped (transparency, not an input channel; to keep it, save it as a TIFF "
            "sample not declared alpha); 2 gray: replicated to 3 channels") in caplog.messages
