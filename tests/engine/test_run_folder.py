"""Run folders: never two runs in one folder, problems reported before training starts,
and the newest valid checkpoint found for --resume."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import unetzoo
from tests.helpers import write_pairs
from tests.test_checkpoint import make_checkpoint
from unetzoo.artefacts import runs as run_folder
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.artefacts.runs import newest_checkpoint, prepare_run_dir
from unetzoo.errors import CheckpointError, ConfigError, RunError

OPTIONS = {"model": "unet", "preset": "tiny", "batch": 4, "img_size": 32, "epoch": 1,
           "workers": 0, "precision": "fp32", "device": "cpu", "progress": False,
           "test": False}


def resumable(path: Path, epoch: int, step: int, samples: int = 0) -> Path:
    checkpoint = make_checkpoint()
    checkpoint.train_state = {"epoch": epoch, "step": step, "progress": {"samples": samples}}
    return save_checkpoint(path, checkpoint)


def test_newest_valid_checkpoint_is_chosen(tmp_path: Path) -> None:
    models = tmp_path / "models"
    resumable(models / "epoch_last.pt", epoch=2, step=8)
    resumable(models / "old.pt", epoch=2, step=6)
    resumable(models / "mid.pt", epoch=2, step=9, samples=4)  # mid-epoch 3: furthest
    best = make_checkpoint()
    best.train_state = None  # weights for inference only
    save_checkpoint(models / "best.pt", best)
    (models / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    (models / ".epoch_last.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    path, checkpoint = newest_checkpoint(tmp_path)
    assert path.name == "mid.pt" and checkpoint.train_state["step"] == 9


def test_a_broken_newest_file_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    models = tmp_path / "models"
    resumable(models / "epoch_last.pt", epoch=1, step=4)
    shutil.copy(models / "epoch_last.pt", models / "backup.pt")
    data = (models / "epoch_last.pt").read_bytes()
    (models / "epoch_last.pt").write_bytes(data[: len(data) // 2])  # e.g. a bad copy
    path, _ = newest_checkpoint(tmp_path)
    assert path.name == "backup.pt"


def test_nothing_to_resume(tmp_path: Path) -> None:
    assert newest_checkpoint(tmp_path) is None
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "epoch_last.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no readable checkpoint"):
        newest_checkpoint(tmp_path)


def test_resume_keeps_the_folder_and_removes_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    (tmp_path / "models" / ".epoch_last.pt.abc.tmp").write_bytes(b"partial")
    prepare_run_dir(tmp_path, resume=True, overwrite=False)
    assert (tmp_path / "metrics.csv").is_file()
    assert not list((tmp_path / "models").iterdir())


def test_full_disk_is_reported_before_anything_is_written(tmp_path, monkeypatch) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)
    usage = shutil.disk_usage(tmp_path)._replace(free=1024)
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(RunError, match="only 0 MiB free"):
        unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), **OPTIONS)
    assert not (tmp_path / "run").exists()


def test_unwritable_location_is_reported_before_training(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(RunError, match="not a writable folder"):
        unetzoo.train(dataset=str(data), out=str(tmp_path / "file" / "run"), **OPTIONS)


def test_resume_auto_starts_continues_and_never_mixes_runs(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)
    run = str(tmp_path / "run")
    first = unetzoo.train(dataset=str(data), out=run, resume="auto", **OPTIONS)
    assert len(first.history) == 1  # nothing to resume: a new run
    again = unetzoo.train(dataset=str(data), out=run, resume="auto", **{**OPTIONS, "epoch": 2})
    assert [row["epoch"] for row in again.history] == [1, 2]
    with pytest.raises(ConfigError, match="--model 'unetpp' differs from the run's 'unet'"):
        unetzoo.train(dataset=str(data), out=run, resume="auto",
                      **{**OPTIONS, "model": "unetpp"})
    with pytest.raises(RunError, match="holds another run's outputs"):
        unetzoo.train(dataset=str(data), out=run, **OPTIONS)
    # a run killed before its first checkpoint restarts; another run's folder is refused
    shutil.rmtree(tmp_path / "run" / "models")
    with pytest.raises(ConfigError, match="differs from the run's"):
        unetzoo.train(dataset=str(data), out=run, resume="auto",
                      **{**OPTIONS, "img_size": 16})
    assert len(unetzoo.train(dataset=str(data), out=run, resume="auto", **OPTIONS).history) == 1


def test_resume_auto_needs_a_run_folder() -> None:
    with pytest.raises(ConfigError, match="--resume auto needs --out"):
        unetzoo.train(dataset="data", resume="auto")
