"""Training options the README promises, checked for their exact effect: learning-rate
schedules with warm-up, --val-every, --grad-clip, resuming after a change of global batch."""

from __future__ import annotations

import logging
import math
import signal
from pathlib import Path

import pytest
import torch

import unetzoo
from tests.helpers import write_pairs
from unetzoo.engine.training import trainer as trainer_module
from unetzoo.engine.training.preemption import TrainingInterrupted
from unetzoo.engine.training.trainer import TrainResult

COMMON = {"model": "unet", "preset": "tiny", "img_size": 32, "workers": 0, "precision": "fp32",
          "device": "cpu", "progress": False, "seed": 5, "test": False, "augment": "none"}
LR = 0.01


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """12 training and 2 validation images of 40 x 40."""
    root = write_pairs(tmp_path_factory.mktemp("options") / "data", count=14, size=40)
    rows = ["image,mask,split"] + [f"images/img_{i:03d}.png,masks/img_{i:03d}.png,"
                                   f"{'val' if i >= 12 else 'train'}" for i in range(14)]
    (root / "split.csv").write_text("\n".join(rows) + "\n")
    return root


def train(data: Path, out: Path, **options) -> TrainResult:
    return unetzoo.train(dataset=str(data), csvfile="split.csv", out=str(out),
                         **{**COMMON, **options})


# The learning rate each epoch starts with, for 4 epochs of 2 steps and 1 warm-up epoch
# (2 steps: factors 1/2 then 1): cosine over the 6 steps after warm-up, step decay by 0.5
# every epoch (counted from step 0), poly with power 2, constant.
EXPECTED = {
    "cosine": [0.5, 1.0, 0.5 * (1 + math.cos(math.pi / 3)), 0.5 * (1 + math.cos(2 * math.pi / 3))],
    "step": [0.5, 0.5, 0.25, 0.125],
    "poly": [0.5, 1.0, (2 / 3) ** 2, (1 / 3) ** 2],
    "constant": [0.5, 1.0, 1.0, 1.0],
}


@pytest.mark.parametrize("schedule", sorted(EXPECTED))
def test_schedule_and_warmup_give_the_exact_learning_rates(data: Path, tmp_path: Path,
                                                            schedule: str) -> None:
    result = train(data, tmp_path / "run", epoch=4, steps_per_epoch=2, batch=2, lr=LR,
                   warmup=1, schedule=schedule, step_size=1, gamma=0.5, poly_power=2.0,
                   val_every=4)
    got = [row["lr"] for row in result.history]
    assert got == pytest.approx([LR * f for f in EXPECTED[schedule]], rel=1e-9)


def test_val_every_validates_every_nth_epoch_and_the_last(data: Path, tmp_path: Path) -> None:
    result = train(data, tmp_path / "run", epoch=5, steps_per_epoch=1, batch=2, val_every=2)
    validated = [row["epoch"] for row in result.history if "val_dice" in row]
    assert validated == [2, 4, 5]


def test_grad_clip_bounds_the_update_norm_exactly(data: Path, tmp_path: Path) -> None:
    # Plain SGD, one step from the same weights on the same batch: the update is lr times the
    # clipped gradient, so clipping at c and at 2c give updates u and 2u; their difference
    # is u, of norm lr * c.
    clip = 1e-3
    options = {"epoch": 1, "steps_per_epoch": 1, "batch": 2, "optimizer": "sgd",
               "momentum": 0.0, "weight_decay": 0.0, "lr": 1.0, "schedule": "constant",
               "val_every": 1}
    runs = [train(data, tmp_path / f"c{k}", grad_clip=k * clip, **options) for k in (1, 2)]
    names = [n for n, _ in unetzoo.create_model("unet", preset="tiny").named_parameters()]
    a, b = (unetzoo.load_checkpoint(r.last_checkpoint).state_dict for r in runs)
    difference = torch.cat([(b[n] - a[n]).flatten() for n in names])
    assert float(difference.norm()) == pytest.approx(clip, rel=1e-4)


def test_resume_after_a_change_of_global_batch(data: Path, tmp_path: Path, monkeypatch,
                                               caplog) -> None:
    run = tmp_path / "run"
    original = trainer_module.Trainer.train_step

    def stop_after_step_3(self, batch, epoch, index):
        if self.step == 2:
            self.stop.signum = signal.SIGTERM  # as a scheduler's preemption signal would
        return original(self, batch, epoch, index)

    monkeypatch.setattr(trainer_module.Trainer, "train_step", stop_after_step_3)
    with pytest.raises(TrainingInterrupted):
        train(data, run, epoch=2, batch=2, lr=LR, val_every=2)  # 6 steps per epoch
    monkeypatch.setattr(trainer_module.Trainer, "train_step", original)
    state = unetzoo.load_checkpoint(run / "models" / "epoch_last.pt").train_state
    assert (state["step"], state["progress"]["samples"], state["global_batch"]) == (3, 6, 2)

    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        resumed = unetzoo.train(resume=str(run), batch=4)
    assert "the global batch changed from 2 to 4" in caplog.text
    # epoch 1 goes on from whole batch ceil(6 / 4) = 2 of 3, then epoch 2 has 12 / 4 = 3
    final = unetzoo.load_checkpoint(resumed.last_checkpoint).train_state
    assert final["step"] == 3 + 1 + 3 and final["global_batch"] == 4
    assert [row["epoch"] for row in resumed.history] == [1, 2]


@pytest.mark.slow  # torch.compile's first call: about 40 s of CPU time for the tiny U-Net
def test_compile_trains_like_eager(data: Path, tmp_path: Path) -> None:
    # SGD: updates proportional to the gradients (Adam would magnify rounding near zero)
    options = {"epoch": 1, "steps_per_epoch": 2, "batch": 2, "lr": 0.1, "schedule": "constant",
               "optimizer": "sgd", "momentum": 0.0}
    eager = train(data, tmp_path / "eager", **options)
    compiled = train(data, tmp_path / "compiled", compile=True, **options)
    # the same steps, up to the rounding of fused kernels
    assert compiled.history[0]["train_loss"] == pytest.approx(eager.history[0]["train_loss"],
                                                              rel=5e-4)
    a, b = (unetzoo.load_checkpoint(r.last_checkpoint).state_dict for r in (eager, compiled))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-2, atol=5e-3, msg=key)
