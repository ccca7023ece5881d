"""The demo reaches its Dice target on the embedded dataset (reduced: 96 images of 64 x 64
instead of 240 of 128 x 128, 10 epochs), through the command line."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import unetzoo.demo as demo
from unetzoo.cli import main


@pytest.mark.slow  # about 20 s of CPU time
def test_demo_reaches_its_dice_target_in_reduced_form(tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    monkeypatch.setattr(demo, "generate_dataset",
                        functools.partial(demo.generate_dataset, count=96, size=64))
    monkeypatch.setitem(demo.DEMO_SETTINGS, "img_size", 64)
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--epoch", "10", "--precision", "fp32",
                 "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    dice = json.loads((out / "test" / "metrics.json").read_text())["mean_over_images"]["dice"]
    assert dice >= demo.DICE_TARGET, dice
    assert f"test Dice (mean over images) {dice:.4f}: reached the target" in printed
    assert len(list((out / "test" / "overlays").iterdir())) == 14  # the 15% test split
    assert (out / "models" / "best.pt").is_file() and (out / "curves.png").is_file()
