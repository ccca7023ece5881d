"""A model applied to images unlike its training images says so (issue 24): trained on 12-bit
microscopy stored in 16-bit files, given 8-bit exports of the same scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.data.builders import blob_pair
from unetzoo.cli import main
from unetzoo.data.input_stats import InputStatistics

TINY = ["--model-args", "base_channels=4", "depth=2", "--img-size", "32", "--batch", "2",
        "--workers", "0", "--logger", "none", "--no-report", "--no-progress",
        "--precision", "fp32", "--device", "cpu", "--cache", "off", "--no-test"]


def scenes(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grey scenes with one blob each, as 12-bit values (0..4095), and their masks."""
    out = []
    for i in range(count):
        gray, mask = blob_pair(np.random.default_rng(seed + i))
        out.append(((gray.astype(np.float64) / 255 * 4095).astype(np.uint16), mask))
    return out


def test_distance_is_zero_for_the_training_images_and_large_for_8_bit_exports() -> None:
    twelve = [(s / 65535)[..., None].astype(np.float32) for s, _ in scenes(12)]
    from unetzoo.data.input_stats import image_quantiles
    stats = InputStatistics.from_quantiles([image_quantiles(i) for i in twelve], "stored",
                                           ["uint16"])
    assert max(stats.distance(i) for i in twelve) < 1.5
    exports = [(np.round(s / 4095 * 255) / 255)[..., None] for s, _ in scenes(4, seed=50)]
    assert min(stats.distance(e) for e in exports) > 20
    assert InputStatistics.from_dict(stats.to_dict()) == stats


@pytest.mark.slow
def test_predict_and_eval_name_images_far_from_the_training_images(tmp_path: Path,
                                                                    capsys) -> None:
    data = tmp_path / "data"
    for i, (image, mask) in enumerate(scenes(10)):
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(data / "images" / f"s{i:02d}.tif", image)  # 12 bits in 16
        Image.fromarray(mask * 255).save(data / "masks" / f"s{i:02d}.png")
    assert main(["train", "--dataset", str(data), "--epoch", "1", "--out",
                 str(tmp_path / "run"), *TINY]) == 0
    same = tmp_path / "same"
    exports = tmp_path / "exported" / "images"
    same.mkdir()
    exports.mkdir(parents=True)
    (tmp_path / "exported" / "masks").mkdir()
    for i, (image, mask) in enumerate(scenes(3, seed=100)):
        tifffile.imwrite(same / f"n{i}.tif", image)
        Image.fromarray(np.round(image / 4095 * 255).astype(np.uint8)).save(
            exports / f"n{i}.png")
        Image.fromarray(mask * 255).save(tmp_path / "exported" / "masks" / f"n{i}.png")
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(same),
                 "--out", str(tmp_path / "p1"), "--no-progress"]) == 0
    assert "lie far from the images this model was trained on" not in capsys.readouterr().out
    assert main(["predict", "--model", str(tmp_path / "run"), "--input", str(exports),
                 "--out", str(tmp_path / "p2"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 of 3 image(s) lie far from the images this model was trained on" in out
    assert "(stored as uint8)" in out and "it was trained on uint16 images" in out
    assert "retrain with --normalize percentile" in out
    assert main(["eval", "--model", str(tmp_path / "run"), "--dataset",
                 str(tmp_path / "exported"), "--out", str(tmp_path / "ev"), "--no-report",
                 "--no-progress"]) == 0
    assert "3 of 3 image(s) lie far from the images this model was trained on" in \
        capsys.readouterr().out
