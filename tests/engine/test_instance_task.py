"""The instance task end to end: train on label images, choose thresholds on validation,
score objects, predict labels and object files; objects on tile seams stay whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch import nn

from unetzoo.cli import main
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.instance import InstanceDecoding
from unetzoo.engine.inference.postprocess import PostProcessing
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.errors import ConfigError
from unetzoo.instances.labels import Thresholds
from unetzoo.instances.matching import image_scores
from unetzoo.instances.targets import encode, get_representation
from unetzoo.runtime import Runtime

TINY = ["--model-args", "base_channels=8", "depth=3", "--img-size", "64", "--batch", "4",
        "--workers", "0", "--logger", "none", "--no-report", "--no-progress",
        "--precision", "fp32", "--device", "cpu", "--cache", "off"]


def discs(shape: tuple[int, int], centres: list[tuple[int, int, int]]) -> np.ndarray:
    """Label image of discs (y, x, radius), ids 10, 20, ... (not consecutive); later discs
    take the pixels they share with earlier ones, so touching discs meet along a line."""
    labels = np.zeros(shape, np.uint16)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for k, (y, x, r) in enumerate(centres, start=1):
        labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 10 * k
    return labels


def write_dataset(root: Path, count: int = 16, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        centres = [(int(rng.integers(8, 56)), int(rng.integers(8, 56)), int(rng.integers(4, 8)))
                   for _ in range(6)]
        labels = discs((64, 64), centres)
        image = rng.normal(0.1, 0.03, (64, 64))
        image[labels > 0] = 0.7
        Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(
            root / "images" / f"im{i:02d}.png")
        Image.fromarray(labels).save(root / "masks" / f"im{i:02d}.png")
    return root


@pytest.mark.slow
def test_train_eval_predict_objects(tmp_path: Path, capsys) -> None:
    data = write_dataset(tmp_path / "data")
    run = tmp_path / "run"
    # distance: on these discs the tiny net learns it fastest (the default, hover, needs more)
    assert main(["train", "--dataset", str(data), "--task", "instance", "--epoch", "40",
                 "--representation", "distance", "--lr", "0.003", "--out", str(run),
                 *TINY]) == 0
    out = capsys.readouterr().out
    assert "objects: thresholds chosen on 2 validation image(s)" in out
    assert "loss distance: foreground bce+dice, distance mse," in out  # not the config's loss
    metrics = json.loads((run / "test" / "metrics.json").read_text())
    objects = metrics["instances"]
    assert objects["conventions"]["threshold_rule"] == ">="
    assert metrics["mean_over_images"]["ap50"] > 0.4  # a tiny net, 40 short epochs
    from unetzoo import load_checkpoint

    checkpoint = load_checkpoint(run)
    assert checkpoint.task == "instance" and checkpoint.instance["representation"] == "distance"
    assert checkpoint.instance["chosen"]["split"] == "validation"
    assert checkpoint.config["representation"] == "distance"
    # eval scores objects too; predict writes label TIFFs and object files
    assert main(["eval", "--model", str(run), "--dataset", str(data), "--no-report",
                 "--no-progress"]) == 0
    assert "AP@0.5" in capsys.readouterr().out
    rows = (run / "eval-test" / "per_image.csv").read_text().splitlines()
    assert "ap@0.5" in rows[0] and len(rows) == 3
    (tmp_path / "new").mkdir()
    for name in ("im00.png", "im01.png"):
        (tmp_path / "new" / name).write_bytes((data / "images" / name).read_bytes())
    assert main(["predict", "--model", str(run), "--input", str(tmp_path / "new"), "--out",
                 str(tmp_path / "pred"), "--rois", "--table", "--no-progress"]) == 0
    labels = tifffile.imread(tmp_path / "pred" / "im00.tif")
    assert labels.dtype == np.uint16 and labels.shape == (64, 64) and labels.max() >= 1
    table = (tmp_path / "pred" / "im00_objects.csv").read_text().splitlines()
    assert len(table) == 1 + len(np.unique(labels)) - 1
    assert (tmp_path / "pred" / "im00_rois.zip").is_file()


class Logits(nn.Module):
    """A 'network' whose input channels are the encoded targets: it returns their logits,
    so the predictor's outputs are exactly the targets (up to the blending of tiles)."""

    num_classes = 2
    in_channels = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x.clamp(1e-4, 1 - 1e-4))


def test_objects_on_tile_seams_are_neither_cut_nor_counted_twice() -> None:
    """Objects placed across the seams of 32-pixel tiles (overlap 0.25) of a 100 x 100 image:
    the outputs are blended over the whole image first, then decoded once."""
    labels = discs((100, 100), [(24, 24, 7), (24, 48, 6), (48, 24, 6), (48, 48, 9),
                                (72, 72, 8), (72, 50, 6), (30, 80, 5), (90, 20, 6)])
    rep = get_representation("distance")
    targets = encode(labels, rep).targets  # 2 x H x W: foreground, distance
    image = np.ascontiguousarray(targets.transpose(1, 2, 0), dtype=np.float32)
    pre = Preprocessing(2, (0.0, 0.0), (1.0, 1.0), img_size=32)
    options = InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False),
                               overlap=0.25)
    decoding = InstanceDecoding(rep, Thresholds(foreground=0.5, seed=0.5))
    predictor = Predictor(Logits(), pre, "instance", options, instance=decoding)
    predicted = predictor.labels(image)
    assert predicted.dtype == np.int32
    scores = image_scores(labels, predicted)
    assert scores["n_pred"] == 8 and scores["splits"] == 0 and scores["merges"] == 0
    assert scores["per_threshold"][-1]["ap"] == 1.0  # IoU >= 0.95 for every object


def test_min_size_replaces_the_chosen_one_and_fill_holes_is_refused(caplog) -> None:
    """`--min-size` of an instance model sets its smallest object (said in one line) instead
    of being ignored; `--fill-holes`, a rule of masks, is refused."""
    import logging

    labels = discs((64, 64), [(16, 16, 9), (44, 44, 3)])  # about 250 and 29 pixels
    rep = get_representation("distance")
    image = np.ascontiguousarray(encode(labels, rep).targets.transpose(1, 2, 0),
                                 dtype=np.float32)
    pre = Preprocessing(2, (0.0, 0.0), (1.0, 1.0), img_size=64)
    runtime = Runtime.resolve("cpu", "fp32", channels_last=False)
    decoding = InstanceDecoding(rep, Thresholds(0.5, 0.5, min_size=0))
    both = Predictor(Logits(), pre, "instance", InferenceOptions(runtime),
                     instance=decoding).labels(image)
    assert both.max() == 2
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        large = Predictor(Logits(), pre, "instance", InferenceOptions(
            runtime, postprocess=PostProcessing(min_size=100)), instance=decoding).labels(image)
    assert large.max() == 1 and (large > 0).sum() > 200
    assert "--min-size 100 replaces the 0 pixels chosen on validation" in caplog.text
    # --threshold is an instance model's foreground threshold: objects of foreground
    # probability 0.8 are kept at the default, none above 0.9
    dimmer = image.copy()
    dimmer[..., 0] *= 0.8
    assert Predictor(Logits(), pre, "instance", InferenceOptions(runtime),
                     instance=decoding).labels(dimmer).max() == 2
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        none = Predictor(Logits(), pre, "instance", InferenceOptions(runtime, threshold=0.9),
                         instance=decoding).labels(dimmer)
    assert none.max() == 0
    assert "--threshold 0.9 replaces the foreground threshold 0.5" in caplog.text
    with pytest.raises(ConfigError, match="drop --fill-holes"):
        Predictor(Logits(), pre, "instance", InferenceOptions(
            runtime, postprocess=PostProcessing(fill_holes=True)), instance=decoding)


class HoverOfLabels(nn.Module):
    """A 'network' that is exactly equivariant: it reads a label image (ids / 10) and
    returns its HoVer-Net targets (foreground as logits, offsets as they are)."""

    num_classes = 3
    in_channels = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [torch.from_numpy(encode((b[0] * 10).round().numpy().astype(np.int32),
                                       "hover").targets) for b in x]
        out = torch.stack(out)
        out[:, 0] = torch.logit(out[:, 0].clamp(1e-4, 1 - 1e-4))
        return out


@pytest.mark.parametrize("tta", ["flip", "flip-rot90"])
def test_test_time_augmentation_maps_offsets_back(tta: str) -> None:
    """A flip negates HoVer-Net's horizontal offsets and a transpose swaps the two maps: with
    each symmetry undone on the vectors too, the averaged outputs are the image's own."""
    labels = discs((40, 40), [(12, 10, 6), (14, 24, 7), (30, 14, 5), (28, 30, 8)]) // 10
    image = (labels / 10).astype(np.float32)[..., None]
    pre = Preprocessing(1, (0.0,), (1.0,), img_size=64)
    runtime = Runtime.resolve("cpu", "fp32", channels_last=False)
    decoding = InstanceDecoding(get_representation("hover"), Thresholds(0.5, 0.5))
    plain = Predictor(HoverOfLabels(), pre, "instance", InferenceOptions(runtime),
                      instance=decoding).probabilities(image)
    averaged = Predictor(HoverOfLabels(), pre, "instance", InferenceOptions(runtime, tta=tta),
                         instance=decoding).probabilities(image)
    expected = encode(labels, "hover").targets
    np.testing.assert_allclose(plain, expected, atol=1e-3)
    np.testing.assert_allclose(averaged, expected, atol=1e-3)


def instance_checkpoint():
    """An untrained tiny instance model (distance representation) with thresholds, as a
    checkpoint: enough to check that files and packages give the checkpoint's labels."""
    from unetzoo import create_model
    from unetzoo.artefacts.checkpoint import Checkpoint

    torch.manual_seed(3)
    model = create_model("unet", 1, 2, preset="tiny")
    state = model.state_dict()
    head = [k for k in state if k.endswith(".bias") and state[k].shape == (2,)][-1]
    state[head] = torch.tensor([2.0, 0.0])  # mostly foreground, seeds where the map says
    return Checkpoint(model.unetzoo_spec, "instance", ("nucleus",),
                      Preprocessing(1, (0.2,), (0.2,), img_size=32), state,
                      instance={"representation": "distance",
                                "thresholds": {"foreground": 0.5, "seed": 0.5, "min_size": 0},
                                "chosen": None})


def test_packages_and_graphs_of_an_instance_model_give_its_labels(tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.core")
    from unetzoo.artefacts.checkpoint import save_checkpoint
    from unetzoo.engine.export.bioimageio import export_bioimageio
    from unetzoo.engine.export.exporter import export_checkpoint

    path = save_checkpoint(tmp_path / "best.pt", instance_checkpoint())
    export_bioimageio(path, tmp_path / "m.zip", authors=["A. Person"], license="MIT",
                      test=False)  # (bioimageio.core's own test passes: slow, not run here)
    export_checkpoint(path, "onnx", tmp_path / "m.onnx")
    image = (np.random.default_rng(0).random((40, 48)) * 255).astype(np.uint8)
    options = InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False,
                                               backend="torch"))
    expected = Predictor.open(path, options).labels(image)
    assert expected.dtype == np.int32 and expected.max() > 0
    for other in (tmp_path / "m.zip", tmp_path / "m.onnx"):
        got = Predictor.open(other, InferenceOptions(Runtime.resolve(
            "cpu", "fp32", channels_last=False, backend="auto"))).labels(image)
        assert np.mean(got == expected) > 0.995, other


def test_init_from_an_instance_model_takes_the_instance_task_for_label_images(
        tmp_path: Path, capsys) -> None:
    """No --task, label images, --init an instance model: the run is an instance run with the
    source's representation (said in one line; the source's head loads whole). These label
    images hold the same ids 10..60 in every image, which alone read as 7 classes."""
    import re

    from unetzoo import load_checkpoint
    from unetzoo.artefacts.checkpoint import save_checkpoint

    data = write_dataset(tmp_path / "data", count=8)
    source = save_checkpoint(tmp_path / "source.pt", instance_checkpoint())  # distance
    options = [o for o in TINY if o not in ("--model-args", "base_channels=8", "depth=3")]
    assert main(["train", "--dataset", str(data), "--init", str(source), "--epoch", "1",
                 "--out", str(tmp_path / "run"), *options]) == 0
    said = "".join(capsys.readouterr())
    assert "is an instance model (distance) and the masks read as instance label images" \
        in said
    assert re.search(r"loaded (\d+) of \1 tensors", said)  # the head too
    best = load_checkpoint(tmp_path / "run" / "models" / "best.pt")
    assert best.task == "instance" and best.instance["representation"] == "distance"
