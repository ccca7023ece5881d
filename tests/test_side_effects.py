"""Importing unetzoo changes no global state; huge images need an explicit option; progress
bars only on a terminal."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetzoo.data.io import MAX_PIXELS_VARIABLE, read_header, read_image
from unetzoo.errors import ConfigError, DataError
from unetzoo.progress import progress_bar


def test_importing_unetzoo_leaves_pillow_and_the_environment_alone() -> None:
    code = ("import os, PIL.Image as I; before = I.MAX_IMAGE_PIXELS; env = dict(os.environ); "
            "import unetzoo, unetzoo.cli, unetzoo.data.transforms as t; "
            "print(I.MAX_IMAGE_PIXELS == before, dict(os.environ) == env); "
            "t.train_transform(32, 'crop'); "  # albumentations imported without its variable
            "print('NO_ALBUMENTATIONS_UPDATE' in os.environ)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["True", "True", "False"], out.stderr


def test_huge_images_need_an_explicit_limit(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "1000")
    with pytest.raises(DataError, match=(
            r"big.png: is 40x30 \(1,200 pixels\), more than the 1,000 read by default \(a "
            r"guard against decompression bombs\); set UNETZOO_MAX_IMAGE_PIXELS=0 \(no limit\)"
            r" or a larger number to read it")):
        read_image(tmp_path / "big.png")
    assert read_header(tmp_path / "big.png").size == (30, 40)  # headers are not decoded
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "0")
    assert read_image(tmp_path / "big.png").shape == (30, 40, 1)
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "lots")
    with pytest.raises(ConfigError, match="UNETZOO_MAX_IMAGE_PIXELS='lots' must be a whole"):
        read_image(tmp_path / "big.png")


def test_a_pillow_decompression_bomb_is_read_only_when_allowed(tmp_path: Path,
                                                               monkeypatch) -> None:
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises beyond 2 x this
    with pytest.raises(DataError, match=r"bomb\.png: is"):
        read_image(tmp_path / "bomb.png")
    monkeypatch.setenv(MAX_PIXELS_VARIABLE, "0")
    assert read_image(tmp_path / "bomb.png").shape == (40, 40, 1)
    assert Image.MAX_IMAGE_PIXELS == 100  # lifted for that read only


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_and_one_line_in_a_log(monkeypatch, caplog) -> None:
    from tqdm import tqdm

    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert isinstance(progress_bar(range(3), "evaluate", "image"), tqdm)
    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    logging.getLogger("unetzoo").propagate = True
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        loop = progress_bar(range(3), "evaluate", "image", summary=True)
        assert not isinstance(loop, tqdm) and list(loop) == [0, 1, 2]
        loop.set_postfix(loss="0.1")  # what the trainer calls on a bar: harmless
        assert list(progress_bar(range(2), "epoch 1/2", "step")) == [0, 1]
    assert log_file.getvalue() == ""  # no bar, no carriage returns in the log
    assert {r.getMessage()[:21] for r in caplog.records} == {"evaluate: 3 images in"}
