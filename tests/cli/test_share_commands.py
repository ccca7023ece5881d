"""Sharing from the command line: export to a folder and a bioimage.io package, predict and
evaluate with a pretrained name, list the shipped models, fine-tune with --init."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.pretrained import PRETRAINED, PretrainedModel
from unetzoo.cli import main

FAST = ["--no-progress", "--precision", "fp32", "--device", "cpu"]


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A trained tiny run registered as the pretrained model `cells`, and its dataset."""
    data = write_pairs(tmp_path / "data", count=10, size=40)
    result = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), model="unet",
                           preset="tiny", epoch=1, batch=4, img_size=32, workers=0,
                           precision="fp32", device="cpu", progress=False, logger="none")
    folder = tmp_path / "weights" / "cells"
    assert run("export", "--model", result.best_checkpoint, "--format", "folder", "--out",
               folder, "--dtype", "float16", "--author", "A. Person", "--license", "MIT") == 0
    monkeypatch.setitem(PRETRAINED, "cells", PretrainedModel("cells", "test cells", folder))
    return folder, data


def test_a_pretrained_name_predicts_evaluates_and_is_listed(shipped, tmp_path: Path,
                                                            capsys, monkeypatch) -> None:
    folder, data = shipped
    config = json.loads((folder / "config.json").read_text())
    assert config["weights"]["dtype"] == "float16" and "test" in config["metrics"]
    assert "Licence: MIT" in (folder / "README.md").read_text()
    capsys.readouterr()
    assert run("models", "--pretrained") == 0
    listing = capsys.readouterr().out
    dice = config["metrics"]["test"]["mean_over_images"]["dice"]
    assert "cells" in listing and f"{dice:.4f}" in listing and "test cells" in listing
    assert run("predict", "--model", "cells", "--input", data / "images", "--output",
               tmp_path / "masks", *FAST) == 0
    masks = sorted((tmp_path / "masks").iterdir())
    assert len(masks) == 10 and set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 255}
    monkeypatch.chdir(tmp_path)
    assert run("eval", "--model", "cells", "--dataset", data, *FAST) == 0
    assert (tmp_path / "eval-cells-all" / "metrics.json").is_file()  # no splits: all images


def test_bioimageio_export_needs_authors_and_a_licence(shipped, tmp_path: Path,
                                                       capsys) -> None:
    folder, _ = shipped
    assert run("export", "--model", folder, "--format", "bioimageio", "--out",
               tmp_path / "m.zip", "--license", "MIT") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--author" in err
    assert run("export", "--model", folder, "--format", "bioimageio", "--out",
               tmp_path / "m.zip", "--author", "A. Person") == 2
    assert "--license" in capsys.readouterr().err
    assert not (tmp_path / "m.zip").exists()


def test_train_init_from_a_pretrained_name(shipped, tmp_path: Path, capsys) -> None:
    _, data = shipped
    assert run("train", "--dataset", data, "--init", "cells", "--epoch", "1", "--batch", "4",
               "--img-size", "32", "--workers", "0", "--logger", "none", "--no-test",
               "--out", tmp_path / "tuned", *FAST) == 0
    out = capsys.readouterr().out
    assert "--init cells: unet with base_channels=8, depth=3" in out
    assert "weights from cells: loaded" in out
    assert run("train", "--dataset", data, "--init", "missing", "--out", tmp_path / "x",
               *FAST) == 2
    assert "missing: model not found: pass a checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
