"""--time-budget end to end on a tiny set: ends because of the budget, on time, with a
checkpoint, the plan recorded; resume continues with what is left. Not timed tests: the
bounds are generous, the assertions are about why and what."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

import unetzoo
from tests.helpers import write_pairs
from unetzoo.cli import main


@pytest.fixture(autouse=True)
def _info_logs():
    """train.log gets INFO lines (the CLI sets this level; the API leaves it to the user)."""
    logger = logging.getLogger("unetzoo")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


TINY = {"model": "unet", "preset": "tiny", "workers": 0, "precision": "fp32", "device": "cpu",
        "progress": False, "threads": 1}


def test_a_budget_ends_on_time_with_a_checkpoint_and_the_plan(tmp_path: Path):
    data = write_pairs(tmp_path / "data", count=12, size=48)
    started = time.monotonic()
    result = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), time_budget=0.15,
                           batch=4, **TINY)
    wall = time.monotonic() - started
    log = (tmp_path / "run" / "train.log").read_text()
    assert "stopped by the budget" in log and "validation" in log
    assert wall < 0.15 * 60 + 60  # the budget, then one step, the test split, writing
    best = unetzoo.load_checkpoint(result.best_checkpoint)
    state = unetzoo.load_checkpoint(result.last_checkpoint).train_state
    assert state["budget"]["steps"] == state["step"] > 0
    assert 0.15 * 60 * 0.3 < sum(state["budget"][k] for k in ("training", "validation",
                                                              "other")) < 0.15 * 60 + 30
    # options given explicitly were kept, the others planned, and the plan recorded
    assert best.config["batch"] == 4 and best.config["preset"] == "tiny"
    assert best.config["img_size"] == 48 and best.config["test_tta"] == "flip"
    assert best.config["plan"]["dataset"]["count"] == 10
    assert result.test is not None


def test_resume_continues_with_the_budget_that_is_left(tmp_path: Path):
    data = write_pairs(tmp_path / "data", count=12, size=48)
    run = tmp_path / "run"
    first = unetzoo.train(dataset=str(data), out=str(run), time_budget=0.1, test=False,
                          **TINY)
    before = unetzoo.load_checkpoint(first.last_checkpoint).train_state
    # the same budget: nothing is left
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    again = unetzoo.load_checkpoint(first.last_checkpoint).train_state
    assert again["step"] == before["step"]
    assert "the time budget is spent" in (run / "train.log").read_text()
    # a larger budget: training goes on for what the new budget leaves
    resumed = unetzoo.train(resume=str(run), time_budget=0.2)
    after = unetzoo.load_checkpoint(resumed.last_checkpoint).train_state
    assert after["step"] > before["step"] and after["epoch"] > before["epoch"]
    spent = sum(after["budget"][k] for k in ("training", "validation", "other"))
    assert 0.2 * 60 * 0.3 < spent < 0.2 * 60 + 30
    assert after["budget"]["steps"] == after["step"]
