"""Model folders (config.json + model.safetensors + README.md), save_checkpoint of a bare
model, pretrained names and weights loaded where shapes match."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import unetzoo
from unetzoo.artefacts import pretrained
from unetzoo.artefacts.checkpoint import Checkpoint
from unetzoo.artefacts.folders import write_folder
from unetzoo.artefacts.initialise import load_matching
from unetzoo.artefacts.pretrained import PRETRAINED, PretrainedModel
from unetzoo.artefacts.references import (
    as_checkpoint,
    from_pretrained,
    load_checkpoint,
    save_pretrained,
)
from unetzoo.data.transforms import Preprocessing
from unetzoo.errors import CheckpointError, ConfigError, ModelError, RunError
from unetzoo.instances.matching import score_dataset


def tiny(num_classes: int = 1) -> torch.nn.Module:
    torch.manual_seed(0)
    return unetzoo.create_model("unet", 3, num_classes, preset="tiny").eval()


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def test_a_bare_model_saves_in_one_call_with_stated_defaults(tmp_path: Path) -> None:
    model = tiny(num_classes=3)
    path = unetzoo.save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_checkpoint(path)
    assert loaded.task == "multiclass"
    assert loaded.class_names == ("class0", "class1", "class2")
    assert loaded.preprocessing == Preprocessing(3, (0.0,) * 3, (1.0,) * 3, 256, "crop")
    x = torch.randn(1, 3, 21, 30)
    assert torch.equal(logits(loaded.build_model(), x), logits(model, x))
    unetzoo.save_checkpoint(tmp_path / "b.pt", tiny(), task="multilabel", class_names=["cell"])
    assert load_checkpoint(tmp_path / "b.pt").task == "multilabel"
    with pytest.raises(ConfigError, match="needs 1 class name"):
        unetzoo.save_checkpoint(tmp_path / "c.pt", tiny(), class_names=["a", "b"])
    with pytest.raises(ModelError, match="unetzoo_spec"):
        as_checkpoint(torch.nn.Conv2d(3, 1, 1))


def test_folder_round_trip_is_exact_in_float32_and_close_in_float16(tmp_path: Path) -> None:
    model = tiny()
    pre = Preprocessing(3, (0.2, 0.3, 0.4), (0.5, 0.6, 0.7), 64)
    folder = save_pretrained(model, tmp_path / "fp32", class_names=["nucleus"],
                             preprocessing=pre)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json",
                                                         "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model"] == model.unetzoo_spec and config["class_names"] == ["nucleus"]
    assert config["preprocessing"]["mean"] == [0.2, 0.3, 0.4]
    loaded = from_pretrained(folder)
    assert loaded.preprocessing == pre and loaded.task == "binary"
    x = torch.randn(2, 3, 37, 50)
    assert torch.equal(logits(loaded.build_model(), x), logits(model, x))
    half = from_pretrained(save_pretrained(model, tmp_path / "fp16", dtype="float16"))
    assert (logits(half.build_model(), x) - logits(model, x)).abs().max() < 2e-3
    size32 = (folder / "model.safetensors").stat().st_size
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < 0.6 * size32
    card = (folder / "README.md").read_text()
    assert "## Validation" in card and "`nucleus`" in card and "mean 0.2, 0.3, 0.4" in card


def test_folders_are_never_replaced_without_overwrite(tmp_path: Path) -> None:
    folder = save_pretrained(tiny(), tmp_path / "m")
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(RunError, match="overwrite"):
        save_pretrained(tiny(num_classes=2), folder)
    assert (folder / "model.safetensors").read_bytes() == before
    save_pretrained(tiny(num_classes=2), folder, overwrite=True)
    assert from_pretrained(folder).model_spec["num_classes"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left


def test_broken_folders_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json.*model\.safetensors\)$"):
        from_pretrained(tmp_path)
    (tmp_path / "models").mkdir()  # a run's models/ folder: its checkpoints are named
    for name in ("epoch_last.pt", "best.pt"):
        (tmp_path / "models" / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"nor a model folder; it holds best\.pt, "
                       r"epoch_last\.pt: pass one with --model, e.g. --model .*models/best\.pt"):
        from_pretrained(tmp_path / "models")
    folder = save_pretrained(tiny(), tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read the weights"):
        from_pretrained(folder)
    save_pretrained(tiny(num_classes=2), tmp_path / "two")
    config = json.loads((tmp_path / "two" / "config.json").read_text())
    config["model"]["kwargs"]["base_channels"] = 4
    (tmp_path / "two" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="do not fit"):
        from_pretrained(tmp_path / "two")


def test_checkpoint_users_take_folders(tmp_path: Path) -> None:
    folder = save_pretrained(tiny(), tmp_path / "m")
    assert load_checkpoint(folder).model_spec["name"] == "unet"
    with pytest.raises(CheckpointError, match="missing: model not found: pass a checkpoint"):
        load_checkpoint(tmp_path / "missing")


@pytest.fixture
def shipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pretrained entry `cells` backed by a tiny model folder."""
    folder = save_pretrained(tiny(), tmp_path / "weights" / "cells", class_names=["cell"])
    monkeypatch.setitem(PRETRAINED, "cells", PretrainedModel("cells", "test cells", folder))
    return folder


def test_pretrained_names_load_and_initialise_models(shipped: Path, caplog) -> None:
    assert load_checkpoint("cells").class_names == ("cell",)
    assert "cells" in [m.name for m in pretrained.list_pretrained()]
    reference = from_pretrained(shipped).build_model()
    x = torch.randn(1, 3, 24, 24)
    same = unetzoo.create_model("unet", pretrained="cells")
    assert same.unetzoo_spec == reference.unetzoo_spec
    assert torch.equal(logits(same, x), logits(reference, x))
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        three = unetzoo.create_model("unet", num_classes=3, pretrained="cells")
    total = len(three.state_dict())
    assert (f"weights from cells: loaded {total - 2} of {total} tensors; 2 re-initialised "
            "(shape differs: head.weight, head.bias)") in caplog.text
    assert three.head.weight.shape[0] == 3
    assert torch.equal(three.state_dict()["encoder.0.0.0.weight"],
                       reference.state_dict()["encoder.0.0.0.weight"])
    with pytest.raises(ModelError, match="is a unet, not a attention_unet"):
        unetzoo.create_model("attention_unet", pretrained="cells")
    with pytest.raises(ModelError, match="unknown pretrained model 'none'"):
        unetzoo.create_model("unet", pretrained="none")


def test_load_matching_refuses_weights_that_fit_nowhere() -> None:
    other = unetzoo.create_model("unet", 3, 2, base_channels=5, depth=2)
    with pytest.raises(ModelError, match="no tensor"):
        load_matching(tiny(), other.state_dict(), "other")


def instance_checkpoint() -> Checkpoint:
    """A tiny instance model (the `distance` representation's 2 channels) whose test
    evaluation scored 3 images of objects: one matched, one missed, one merged pair."""
    true = np.zeros((3, 30, 30), np.int32)
    pred = np.zeros((3, 30, 30), np.int32)
    true[0, 2:10, 2:10], pred[0, 2:10, 2:10] = 1, 5          # matched
    true[1, 2:10, 2:10] = 1                                  # missed
    true[2, 2:10, 2:10], true[2, 2:10, 10:18] = 1, 2          # merged ...
    pred[2, 2:10, 2:19] = 3                                  # ... into one (IoU 0.47)
    objects = score_dataset(list(true), list(pred), names=["a", "b", "c"])
    pixels = {"dice": 0.8, "iou": 0.7, "precision": 0.9, "recall": 0.75}
    test = {"images": 3, "split": "test", "mean_over_images": pixels, "global": pixels,
            "instances": objects}
    instance = {"representation": "distance",
                "thresholds": {"foreground": 0.55, "seed": 0.35, "min_size": 4},
                "chosen": {"objective": "mean_ap", "mean_ap": 0.61, "ap50": 0.83,
                           "images": 5, "split": "validation"}}
    model = unetzoo.create_model("unet", 1, 2, preset="tiny")
    # as training writes it: one class name for the objects, whatever the channel count
    return replace(as_checkpoint(model, metrics={"test": test}), task="instance",
                   class_names=("nucleus",), instance=instance)


def test_an_instance_models_card_states_its_objects_and_how_to_get_labels(
        tmp_path: Path) -> None:
    checkpoint = instance_checkpoint()
    objects = checkpoint.metrics["test"]["instances"]
    folder = write_folder(checkpoint, tmp_path / "nuclei")
    card = (folder / "README.md").read_text()
    assert from_pretrained(folder).instance == checkpoint.instance
    mean, pooled = objects["mean_over_images"], objects["pooled"]
    ap50 = next(t["ap"] for t in mean["per_threshold"] if t["threshold"] == 0.5)
    ap50_pooled = next(t["ap"] for t in pooled["per_threshold"] if t["threshold"] == 0.5)
    assert (ap50, ap50_pooled) == (pytest.approx(1 / 3), pytest.approx(1 / 5))
    assert f"| AP@0.5 | {ap50:.4f} | {ap50_pooled:.4f} |" in card
    assert f"| mean AP 0.5:0.95 | {mean['mean_ap']:.4f} | {pooled['mean_ap']:.4f} |" in card
    assert f"| PQ | {mean['pq']:.4f} | {pooled['pq']:.4f} |" in card
    assert f"| AJI | {mean['aji']:.4f} | {pooled['aji']:.4f} |" in card
    assert "4 true objects, 2 predicted, 0 split, 1 merged, 3 missed, 1 extra." in card
    assert "match one-to-one when their IoU >= t" in card
    # how its outputs become objects, and the thresholds chosen on validation
    assert "Representation `distance`" in card and "`foreground` (sigmoid)" in card
    assert ("Thresholds: foreground 0.55, seed 0.35, min_size 4, chosen on 5 validation "
            "image(s) by mean AP (mean AP 0.6100, AP@0.5 0.8300).") in card
    assert "sigmoid per channel, threshold 0.5" not in card
    # how to get labels and object files
    assert "## Getting labels" in card and "16-bit label TIFF" in card
    for flag in ("--rois", "--geojson", "--table", "--masks"):
        assert f"`{flag}`" in card
    assert "(instance segmentation: one label per object)" in card.splitlines()[0]
    # a binary model's card says nothing of objects
    binary = (save_pretrained(tiny(), tmp_path / "binary") / "README.md").read_text()
    assert "## Objects" not in binary and "## Getting labels" not in binary
