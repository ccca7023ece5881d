"""Never losing work: a process killed (SIGKILL) at any step or in the middle of a save and
resumed ends with the same weights as an uninterrupted run; SIGINT and SIGTERM stop
cleanly after the current step; non-finite losses stop or are skipped; --resume auto."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

import unetzoo
from tests.engine.processes import finish, start, start_and_kill, wait_for
from tests.helpers import write_pairs
from unetzoo.engine.training import step as step_module
from unetzoo.errors import TrainingError

# 8 train images, batch 2: 4 steps per epoch, 12 in all; epoch_last every 3 steps and at
# each epoch's end (steps 3, 4, 6, 8, 9, 12).
OPTIONS = {"model": "unet", "preset": "tiny", "batch": 2, "img_size": 32, "epoch": 3,
           "lr": 0.01, "seed": 5, "precision": "fp32", "device": "cpu", "threads": 1,
           "progress": False, "test": False, "checkpoint_every": 3}


def flags(options: dict) -> list[str]:
    out = []
    for key, value in options.items():
        name = "--" + key.replace("_", "-")
        out += ([name] if value else [f"--no-{name[2:]}"]) if isinstance(value, bool) \
            else [name, str(value)]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor], list[float]]:
    """The dataset and an uninterrupted run's final weights and losses (no workers)."""
    root = tmp_path_factory.mktemp("reference")
    data = write_pairs(root / "data", count=10, size=40)
    result = unetzoo.train(dataset=str(data), out=str(root / "run"), workers=0, **OPTIONS)
    return data, weights(result.last_checkpoint), losses(result.history)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return unetzoo.load_checkpoint(path).state_dict


def losses(history: list[dict]) -> list[float]:
    return [row["train_loss"] for row in history]


def state(path: Path) -> dict:
    return unetzoo.load_checkpoint(path).train_state


def assert_same_run(result, reference) -> None:
    _, expected, expected_losses = reference
    got = weights(result.last_checkpoint)
    assert got.keys() == expected.keys()
    for key in got:
        assert torch.equal(got[key], expected[key]), key  # bit-identical
    assert losses(result.history) == expected_losses


def test_sigkill_at_any_step_then_resume_equals_an_uninterrupted_run(tmp_path, reference):
    data, _, _ = reference
    run, marker = tmp_path / "run", tmp_path / "paused"
    # killed after step 7 (epoch 2, batch 3 of 4), data loaded by 2 worker processes
    start_and_kill(["train", "--dataset", data, "--out", run, "--workers", 2, *flags(OPTIONS)],
                   marker, pause_step=7)
    last = state(run / "models" / "epoch_last.pt")
    assert (last["epoch"], last["step"], last["progress"]["samples"]) == (1, 6, 4)
    result = unetzoo.train(resume="auto", out=str(run), workers=0)
    assert_same_run(result, reference)


def test_kill_during_a_save_keeps_the_previous_checkpoint(tmp_path, reference):
    data, _, _ = reference
    run, marker = tmp_path / "run", tmp_path / "paused"
    # the third write of epoch_last.pt (step 6) is killed half-way
    start_and_kill(["train", "--dataset", data, "--out", run, "--workers", 0, *flags(OPTIONS)],
                   marker, pause_save=3)
    models = run / "models"
    partial = list(models.glob(".epoch_last.pt.*.tmp"))
    assert len(partial) == 1 and partial[0].stat().st_size > 0
    assert state(models / "epoch_last.pt")["step"] == 4  # the previous one, intact
    result = unetzoo.train(resume="auto", out=str(run))
    assert not list(models.glob(".*.tmp"))  # the partial file was cleaned up, never read
    assert_same_run(result, reference)


@pytest.mark.parametrize("signum, workers", [(signal.SIGTERM, 0), (signal.SIGINT, 1)])
def test_signal_finishes_the_step_saves_and_exits_cleanly(tmp_path, reference, signum,
                                                          workers):
    data, _, _ = reference
    run, marker = tmp_path / "run", tmp_path / "paused"
    process = start(["train", "--dataset", data, "--out", run, "--workers", workers,
                     *flags(OPTIONS)], pause_step=5, marker=marker)
    wait_for(marker, process)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)  # Ctrl-C reaches the data-loading workers too
    else:
        os.kill(process.pid, signum)  # preemption: a scheduler or torchrun signals the trainer
    code, out, err = finish(process)
    assert code == 128 + signum, err
    assert f"interrupted at epoch 2 step 6; resume with: unetzoo train --resume {run}" in out
    assert "Traceback" not in err
    assert state(run / "models" / "epoch_last.pt")["step"] == 6
    result = unetzoo.train(resume=str(run))
    assert_same_run(result, reference)


def nan_at_call(monkeypatch, call: int) -> None:
    original = step_module.deep_supervision_loss
    calls = []

    def loss(*args, **kwargs):
        calls.append(1)
        value = original(*args, **kwargs)
        return value * float("nan") if len(calls) == call else value

    monkeypatch.setattr(step_module, "deep_supervision_loss", loss)


def test_non_finite_loss_stops_naming_step_and_batch(tmp_path, reference, monkeypatch):
    data, _, _ = reference
    nan_at_call(monkeypatch, 6)
    options = {**OPTIONS, "checkpoint_every": 1}
    with pytest.raises(TrainingError, match=r"loss is nan at epoch 2, step 6 \(batch 2/4: "
                                            r"img_\d+, img_\d+\); the last good checkpoint"):
        unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), workers=0, **options)
    assert state(tmp_path / "run" / "models" / "epoch_last.pt")["step"] == 5


def test_non_finite_loss_can_be_skipped_and_counted(tmp_path, reference, monkeypatch):
    data, _, _ = reference
    nan_at_call(monkeypatch, 2)
    result = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), workers=0,
                           nan_policy="skip", **OPTIONS)
    assert [row["skipped"] for row in result.history] == [1, 0, 0]
    assert state(result.last_checkpoint)["step"] == 11  # one optimizer step fewer
    assert "skipped" in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
