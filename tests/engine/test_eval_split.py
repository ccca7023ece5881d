"""A checkpoint evaluated on the split-less dataset it was trained on scores the images its
run set apart for testing, not its own training images."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest

import unetzoo
from tests.helpers import write_pairs
from unetzoo.engine.evaluate import evaluate_checkpoint
from unetzoo.errors import DataError


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    data = write_pairs(tmp_path_factory.mktemp("evalsplit") / "data", count=12, size=32)
    cwd = os.getcwd()
    os.chdir(data.parent)  # the dataset as a user types it: relative to where train runs
    try:
        result = unetzoo.train(dataset="data", out=str(data.parent / "run"), model="unet",
                               preset="tiny", epoch=1, batch=4, img_size=32, progress=False,
                               threads=1)
    finally:
        os.chdir(cwd)
    return result.run_dir


def _rows(run: Path) -> dict[str, str]:
    with open(run / "split.csv", newline="") as f:
        return {row["image"]: row["split"] for row in csv.DictReader(f)}


def test_the_runs_test_split_is_evaluated_and_said(run: Path, caplog):
    dataset = run.parent / "data"
    tested = sorted(name for name, split in _rows(run).items() if split == "test")
    assert 0 < len(tested) < 12  # the seeded 80/10/10 split the run saved
    with caplog.at_level("INFO", logger="unetzoo"):
        result = evaluate_checkpoint(run, dataset, progress=False)
    assert result.extra["split"] == "test" and result.summary["images"] == len(tested)
    assert sorted(row["image"] for row in result.per_image) == \
        sorted(Path(name).stem for name in tested)
    assert "the test split the run made" in caplog.text
    assert evaluate_checkpoint(run, dataset, split="all", progress=False).summary["images"] \
        == 12


def test_another_dataset_folder_is_evaluated_whole(run: Path, tmp_path: Path):
    other = shutil.copytree(run.parent / "data", tmp_path / "external")  # same file names
    result = evaluate_checkpoint(run, other, progress=False)
    assert result.extra["split"] == "all" and result.summary["images"] == 12


def test_a_run_that_kept_no_test_images_is_refused(run: Path, tmp_path: Path):
    copy = shutil.copytree(run, tmp_path / "run")
    text = (copy / "split.csv").read_text().replace(",test", ",val")
    (copy / "split.csv").write_text(text)
    with pytest.raises(DataError, match="none set apart for testing; pass --split all"):
        evaluate_checkpoint(copy, run.parent / "data", progress=False)


def test_a_run_trained_on_a_relative_path_is_found_from_elsewhere(run: Path, tmp_path: Path,
                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)  # "data" in the run's config names nothing here
    result = evaluate_checkpoint(run / "models" / "best.pt", run.parent / "data",
                                 progress=False)
    tested = [name for name, split in _rows(run).items() if split == "test"]
    assert result.extra["split"] == "test" and result.summary["images"] == len(tested)


def test_a_checkpoint_away_from_its_run_warns_it_scores_training_images(
        run: Path, tmp_path: Path, monkeypatch, caplog):
    moved = shutil.copy(run / "models" / "best.pt", tmp_path / "best.pt")  # no split.csv near
    monkeypatch.chdir(run.parent)
    with caplog.at_level("WARNING", logger="unetzoo"):
        result = evaluate_checkpoint(moved, "data", progress=False)
    assert result.extra["split"] == "all" and result.summary["images"] == 12
    assert "its training images among them; pass --csvfile with RUN/split.csv" in caplog.text
