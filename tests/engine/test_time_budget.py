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
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.cli import main
from unetzoo.errors import ConfigError


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
    # where a tiny run's schedule stands depends on the machine's speed: make it the end
    # of the decay (its floor), as a run that used its budget has it
    checkpoint = unetzoo.load_checkpoint(first.last_checkpoint)
    for schedule in checkpoint.train_state["scheduler"]["lr_lambdas"]:  # one per group
        schedule.update(total=before["step"], laid=0, warmup=0, start=1.0, progress=1.0,
                        pace=None, at=before["step"], value=0.0)
    for group in checkpoint.train_state["optimizer"]["param_groups"]:
        group["lr"] = 0.0
    save_checkpoint(first.last_checkpoint, checkpoint)
    # a larger budget: training goes on for what the new budget leaves
    resumed = unetzoo.train(resume=str(run), time_budget=0.2)
    after = unetzoo.load_checkpoint(resumed.last_checkpoint).train_state
    assert after["step"] > before["step"] and after["epoch"] > before["epoch"]
    # the decay is laid again over the budget twice as long: half way down the cosine
    assert f"the cosine schedule now spans 0.2 min: lr 5.00e-04 at step {before['step']} " \
        "(it was 0.00e+00 where the run stopped)" in (run / "train.log").read_text()
    assert resumed.history[before["epoch"]]["lr"] == pytest.approx(5e-4)  # not 0
    spent = sum(after["budget"][k] for k in ("training", "validation", "other"))
    assert 0.2 * 60 * 0.3 < spent < 0.2 * 60 + 30
    assert after["budget"]["steps"] == after["step"]


def _sixteen_bit(root: Path, count: int = 12) -> Path:
    """Microscopy-like 16-bit images, 64 x 64, whose plan differs from the defaults: patch
    64 (default 256) and percentile normalisation (default dataset)."""
    import numpy as np
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = rng.integers(100, 400, (64, 64)).astype(np.uint16)
        mask = np.zeros((64, 64), np.uint8)
        mask[10 + i: 20 + i, 30:40] = 255
        image[mask > 0] += 3000
        tifffile.imwrite(root / "images" / f"s{i}.tif", image)
        Image.fromarray(mask).save(root / "masks" / f"s{i}.png")
    return root


def _set_up(tmp_path: Path, processes: int = 1, **options):
    from unetzoo.config import build_config
    from unetzoo.engine.training.setup import set_up_run

    given = {"out": str(tmp_path / "run"), **options}
    return set_up_run(build_config(given), given, set(given), processes)


def test_a_planned_run_is_fingerprinted_planned_then_prepared_once(tmp_path: Path,
                                                                   monkeypatch):
    import unetzoo.engine.plan as planning
    import unetzoo.engine.training.setup as setup

    calls: list[tuple[str, dict]] = []
    fingerprint, finish = planning.fingerprint_dataset, setup.finish_data

    def spy_fingerprint(*args, **kwargs):
        calls.append(("fingerprint", {}))
        return fingerprint(*args, **kwargs)

    def spy_finish(scanned, **kwargs):
        calls.append(("prepare", kwargs))
        return finish(scanned, **kwargs)

    monkeypatch.setattr(planning, "fingerprint_dataset", spy_fingerprint)
    monkeypatch.setattr(setup, "finish_data", spy_finish)
    data = _sixteen_bit(tmp_path / "data")
    run, prepared = _set_up(tmp_path, dataset=str(data), time_budget=2, batch=4)
    config = run.config
    assert [name for name, _ in calls] == ["fingerprint", "prepare"]  # one direction
    settings = calls[1][1]  # prepared with the planned settings, not the defaults
    assert (settings["img_size"], settings["resize_mode"], settings["normalization"]) == \
        (64, "crop", "percentile") == (config.img_size, config.resize_mode, config.normalize)
    pre = prepared.preprocessing  # the one place the patch lives after set-up
    assert (pre.img_size, pre.resize_mode, pre.normalization) == (64, "crop", "percentile")
    assert config.batch == 4 and config.steps_per_epoch == 3  # 10 train images in 4s
    assert config.plan["dataset"]["bit_depth"] == 16 and not (tmp_path / "run").exists()
    # two processes (torchrun's world size) share each epoch's images
    run, _ = _set_up(tmp_path, 2, dataset=str(data), time_budget=2, batch=4)
    assert run.config.steps_per_epoch == 2  # 10 images in 2 x 4 per step


def _source(tmp_path: Path) -> Path:
    """A checkpoint to start from: a tiny U-Net, per-image normalisation, patch 32."""
    from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
    from unetzoo.data.transforms import Preprocessing
    from unetzoo.models import create_model

    model = create_model("unet", 3, 1, preset="tiny")
    checkpoint = Checkpoint(model.unetzoo_spec, "binary", ("foreground",),
                            Preprocessing(3, (0.3,) * 3, (0.2,) * 3, 32, "crop", "image"),
                            model.state_dict(), config={"epoch": 100})
    return save_checkpoint(tmp_path / "source.pt", checkpoint)


def test_init_under_a_budget_is_planned_keeping_architecture_and_normalisation(
        tmp_path: Path, caplog):
    data = write_pairs(tmp_path / "data", count=12, size=48)
    source = _source(tmp_path)
    kwargs = unetzoo.load_checkpoint(source).model_spec["kwargs"]
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        run, prepared = _set_up(tmp_path, dataset=str(data), init=str(source),
                                time_budget=2)
    config = run.config
    # the plan lays the run out over the budget: steps, epochs, patch, batch, schedule
    assert config.plan is not None and config.epoch == 100_000 and config.batch == 8
    assert config.steps_per_epoch == 2 and config.img_size == 48 and config.warmup == 1
    # the source's architecture and normalisation are kept, said in one line
    assert config.model == "unet" and config.model_args == kwargs and config.preset is None
    assert config.normalize == "image" and prepared.preprocessing.normalization == "image"
    assert prepared.preprocessing.mean == (0.3,) * 3 and prepared.preprocessing.img_size == 48
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("--init")]
    assert len(lines) == 1 and "unet with " in lines[0] and \
        "its normalisation is kept (image normalisation)" in lines[0]
    width = next(m for r in caplog.records if (m := r.getMessage()).startswith("  unet base"))
    assert width.endswith(f" - replaced by --init {source}'s architecture")
    # explicit flags still win
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        run, prepared = _set_up(tmp_path, dataset=str(data), init=str(source),
                                time_budget=2, normalize="dataset", batch=4)
    assert run.config.normalize == "dataset" and run.config.batch == 4
    assert prepared.preprocessing.normalization == "dataset"
    assert prepared.preprocessing.mean != (0.3,) * 3  # this dataset's statistics
    assert "your --normalize dataset" in caplog.text


def test_a_planned_run_killed_before_its_first_checkpoint_restarts(tmp_path: Path):
    """Its config.yaml holds the plan's patch and normalisation; `--resume auto` with the
    same command plans again instead of calling them different from the run's."""
    import yaml

    from unetzoo.config import build_config
    from unetzoo.engine.training.resume import plan_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(
        {"dataset": "data", "img_size": 48, "normalize": "image", "time_budget": 2}))
    given = {"dataset": "data", "out": str(run), "resume": "auto", "time_budget": 2}
    plan = plan_run(build_config(given), given)
    assert plan.reuse_folder and plan.checkpoint is None
    given["img_size"] = 64  # a patch given that differs from the run's: another run
    with pytest.raises(ConfigError, match="--img-size 64 differs from the run's 48"):
        plan_run(build_config(given), given)
