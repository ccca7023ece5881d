"""Training through the Python API: resume equals an uninterrupted run, deep supervision."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import unetzoo
import unetzoo.engine.training.trainer
from tests.helpers import write_pairs

COMMON = {"model": "unet", "preset": "tiny", "batch": 4, "img_size": 32, "workers": 0,
          "precision": "fp32", "device": "cpu", "progress": False, "lr": 0.01, "seed": 3,
          "test": False}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return unetzoo.load_checkpoint(path).state_dict


def test_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    # A constant schedule, so that a run planned for 2 epochs and extended to 3 follows
    # the same learning rates as a run planned for 3.
    data = write_pairs(tmp_path / "data", count=10, size=40)
    options = {**COMMON, "schedule": "constant"}
    straight = unetzoo.train(dataset=str(data), epoch=3, out=str(tmp_path / "a"), **options)
    unetzoo.train(dataset=str(data), epoch=2, out=str(tmp_path / "b"), **options)
    resumed = unetzoo.train(resume=str(tmp_path / "b"), epoch=3)
    a, b = weights(straight.last_checkpoint), weights(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in
                                                           resumed.history]


class HeadsAtStart(unetzoo.engine.training.trainer.Callback):
    """The output heads' weights before the first step."""

    def on_train_start(self, trainer) -> None:
        self.heads = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()
                      if k.startswith("heads.")}


def test_deep_supervision_model_trains_and_predicts(tmp_path: Path) -> None:
    from PIL import Image

    from unetzoo.engine.inference.predictor import InferenceOptions
    from unetzoo.runtime import Runtime

    data = write_pairs(tmp_path / "data", count=6, size=32)
    start = HeadsAtStart()
    result = unetzoo.train(dataset=str(data), epoch=1, out=str(tmp_path / "r"),
                           callbacks=[start], **{**COMMON, "model": "unetpp"})
    checkpoint = unetzoo.load_checkpoint(result.best_checkpoint)
    # trains: every output is in the loss, so every head moved (a head left out of the loss
    # gets no gradient and AdamW leaves it exactly as it was)
    # the tiny UNet++ (depth 3) has a head on X^{0,1} and on X^{0,2}: weight and bias each
    assert len(start.heads) == 2 * 2 and checkpoint.model_spec["kwargs"]["deep_supervision"]
    for key, before in start.heads.items():
        assert not torch.equal(checkpoint.state_dict[key], before), key
    # predicts: the masks are the main output's (the X^{0,2} head) above the threshold,
    # set at the median probability so that both classes are there to get right
    pre = checkpoint.preprocessing
    main, first = checkpoint.build_model(), checkpoint.build_model(prune_depth=1)
    paths = sorted((data / "images").glob("*.png"))
    probabilities = {}
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"), np.float32) / 255
        x = torch.from_numpy((pixels - np.float32(pre.mean)) / np.float32(pre.std))
        with torch.no_grad():
            probabilities[path.name] = [torch.sigmoid(model(x.permute(2, 0, 1)[None]))[0, 0]
                                        .numpy() for model in (main, first)]
    threshold = float(np.median([p for p, _ in probabilities.values()]))
    runtime = Runtime.resolve("cpu", "fp32", backend="torch")
    pred = unetzoo.predict(result.best_checkpoint, data / "images", tmp_path / "p",
                           InferenceOptions(runtime, threshold=threshold), progress=False)
    assert pred.images == 6
    differs = 0
    for name, (expected, shallow) in probabilities.items():
        written = np.asarray(Image.open(tmp_path / "p" / name)) == 255
        sure = np.abs(expected - threshold) > 1e-6  # pixels away from the threshold
        assert np.array_equal(written[sure], (expected > threshold)[sure]), name
        differs += int(((shallow > threshold) != (expected > threshold)).sum())
    assert differs > 0  # another head's masks would not pass


class Recorder(unetzoo.engine.training.trainer.Callback):
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def on_train_start(self, trainer) -> None:
        self.events.append(("start", trainer.epoch, trainer.step))

    def on_epoch_end(self, trainer, row, validation) -> None:
        self.events.append(("epoch", row["epoch"], trainer.step, validation is not None))

    def on_train_end(self, trainer, result) -> None:
        self.events.append(("end", len(result.history), result.test is not None))


def test_callbacks_are_called_at_start_after_each_epoch_and_at_the_end(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=10, size=32)
    recorder = Recorder()
    unetzoo.train(dataset=str(data), epoch=2, out=str(tmp_path / "r"), val_every=2,
                  callbacks=[recorder], **{**COMMON, "test": True})
    # 10 pairs: a seeded 8 / 1 / 1 split; batch 4 -> 2 steps per epoch
    assert recorder.events == [("start", 0, 0), ("epoch", 1, 2, False), ("epoch", 2, 4, True),
                               ("end", 2, True)]


def test_ema_weights_are_saved_and_resume_exactly(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=10, size=40)
    options = {**COMMON, "schedule": "constant", "ema": 0.9}
    straight = unetzoo.train(dataset=str(data), epoch=3, out=str(tmp_path / "a"), **options)
    unetzoo.train(dataset=str(data), epoch=2, out=str(tmp_path / "b"), **options)
    resumed = unetzoo.train(resume=str(tmp_path / "b"), epoch=3)
    a, b = (unetzoo.load_checkpoint(r.last_checkpoint) for r in (straight, resumed))
    for key in a.state_dict:  # the moving averages
        assert torch.equal(a.state_dict[key], b.state_dict[key]), key
    for key in a.train_state["model"]:  # the trained weights
        assert torch.equal(a.train_state["model"][key], b.train_state["model"][key]), key
    # the checkpoint's weights are the average, not the trained weights
    conv = next(k for k in a.state_dict if k.endswith("weight") and a.state_dict[k].ndim == 4)
    assert not torch.equal(a.state_dict[conv], a.train_state["model"][conv])
    assert a.train_state["ema_averaged"] == 3 * 2  # 10 train images: 2 steps per epoch


def test_a_resumed_extended_run_follows_the_schedule_of_its_new_length(tmp_path: Path,
                                                                       caplog) -> None:
    # issue 24: the first epoch of a resumed, extended run logged lr 0.00e+00 and ran at it
    # (the optimizer's lr was the old schedule's floor)
    import logging

    data = write_pairs(tmp_path / "data", count=10, size=40)  # 8 train: 2 steps per epoch
    options = {**COMMON, "schedule": "cosine", "warmup": 0}
    first = unetzoo.train(dataset=str(data), epoch=1, out=str(tmp_path / "b"), **options)
    state = unetzoo.load_checkpoint(first.last_checkpoint).train_state
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        resumed = unetzoo.train(resume=str(tmp_path / "b"), epoch=2)
    # a 2-epoch cosine at step 2 of 4: half of the peak lr 0.01
    assert resumed.history[1]["lr"] == pytest.approx(0.005)
    assert ("the cosine schedule now spans 2 epochs: lr 5.00e-03 at step 2 (it was 0.00e+00 "
            "where the run stopped)") in caplog.text
    # resumed without a change, the lr is the saved one (no line)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        unetzoo.train(resume=str(tmp_path / "b"), epoch=2)
    assert "schedule now spans" not in caplog.text
