"""TensorBoard (default) and MLflow logs read back, and `--init` fine-tuning."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.pretrained import PRETRAINED, PretrainedModel

COMMON = {"model": "unet", "preset": "tiny", "batch": 4, "img_size": 32, "workers": 0,
          "precision": "fp32", "device": "cpu", "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("logs") / "data", count=10, size=40)


def test_tensorboard_event_files_hold_the_runs_numbers(data: Path, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=2,
                           log_images_every=2, **COMMON)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in result.history],
                                                    rel=1e-6)
    assert [e.value for e in events.Scalars("val/dice")] == pytest.approx(
        [r["val_dice"] for r in result.history], rel=1e-6)
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx(
        [r["lr"] for r in result.history], rel=1e-6)
    assert events.Scalars("test/dice")[0].value == pytest.approx(
        result.test.summary["global"]["dice"], rel=1e-6)
    overlays = [t for t in events.Tags()["images"] if t.startswith("val_overlay/")]
    assert len(overlays) == 1  # the one validation image, at epoch 2 only
    assert [e.step for e in events.Images(overlays[0])] == [2]
    unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, overwrite=True,
                  test=False, **COMMON)  # a new run in the folder: the old events go
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1]


def test_logger_none_writes_no_event_files(data: Path, tmp_path: Path) -> None:
    unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, logger="none",
                  test=False, **COMMON)
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_mlflow_store_gets_config_metrics_overlays_and_the_best_checkpoint(
        data: Path, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    from unetzoo.engine.training.loggers import mlflow_uri

    store = tmp_path / "mlruns"
    run_dir = tmp_path / "run"
    first = unetzoo.train(dataset=str(data), out=str(run_dir), epoch=1, mlflow=str(store),
                          logger="none", log_images_every=1, **COMMON)
    resumed = unetzoo.train(resume=str(run_dir), epoch=2)
    client = MlflowClient(tracking_uri=mlflow_uri(str(store)))
    experiment = client.get_experiment_by_name("unetzoo")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resumed run logged into the same MLflow run
    run = runs[0]
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["lr"] == "0.001" and run.data.params["preset"] == "tiny"
    history = client.get_metric_history(run.info.run_id, "val/dice")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx(
        [r["val_dice"] for r in resumed.history], rel=1e-6)
    assert first.history[0]["val_dice"] == pytest.approx(history[0].value, rel=1e-6)
    assert run.data.metrics["test/dice"] == pytest.approx(
        resumed.test.summary["global"]["dice"], rel=1e-6)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "models")}
    assert artifacts == {"models/best.pt"}
    local = client.download_artifacts(run.info.run_id, "models/best.pt", str(tmp_path))
    assert torch.equal(unetzoo.load_checkpoint(local).state_dict["head.weight"],
                       unetzoo.load_checkpoint(resumed.best_checkpoint).state_dict["head.weight"])
    overlays = [a.path for a in client.list_artifacts(run.info.run_id, "val_overlays")]
    assert len(overlays) == 2 and overlays[0].endswith(".png")


def test_init_loads_matching_weights_and_says_what_it_loaded(
        data: Path, tmp_path: Path, caplog, monkeypatch) -> None:
    source = unetzoo.train(dataset=str(data), out=str(tmp_path / "a"), epoch=1,
                           logger="none", test=False, **COMMON)
    folder = unetzoo.save_pretrained(source.best_checkpoint, tmp_path / "weights" / "cells")
    monkeypatch.setitem(PRETRAINED, "cells", PretrainedModel("cells", "test", folder))
    three = write_pairs(tmp_path / "three", count=10, size=40, multiclass=True)
    options = {k: v for k, v in COMMON.items() if k not in ("model", "preset")}
    with caplog.at_level(logging.INFO, logger="unetzoo"):
        tuned = unetzoo.train(dataset=str(three), out=str(tmp_path / "b"), epoch=1,
                              init="cells", lr=1e-12, weight_decay=0.0, logger="none",
                              test=False, **options)
    assert "--init cells: unet with base_channels=8, depth=3" in caplog.text
    assert "its normalisation is kept" in caplog.text
    theirs = unetzoo.load_checkpoint(source.best_checkpoint)
    ours = unetzoo.load_checkpoint(tuned.best_checkpoint)
    total = len(ours.state_dict)
    assert (f"weights from cells: loaded {total - 2} of {total} tensors; 2 re-initialised "
            "(shape differs: head.weight, head.bias)") in caplog.text
    assert ours.model_spec["num_classes"] == 3 and ours.task == "multiclass"
    assert ours.preprocessing.mean == theirs.preprocessing.mean
    first = "encoder.0.0.0.weight"  # lr 1e-12: still the source's weights
    assert torch.allclose(ours.state_dict[first], theirs.state_dict[first], atol=1e-9)


def test_tensorboard_overlays_show_the_original_pixels_of_per_image_normalised_runs(
        data: Path, tmp_path: Path) -> None:
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, log_images_every=1,
                  test=False, normalize="image", **COMMON)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = [t for t in events.Tags()["images"] if t.startswith("val_overlay/")]
    assert tags
    for tag in tags:
        name = tag.split("/", 1)[1]
        original = np.asarray(Image.open(data / "images" / f"{name}.png").convert("RGB"))
        panel = np.asarray(Image.open(io.BytesIO(events.Images(tag)[0].encoded_image_string)))
        height, width = original.shape[:2]
        np.testing.assert_array_equal(panel[14: 14 + height, :width, :3], original)


def test_an_instance_run_logs_its_objects_with_the_default_logger(tmp_path: Path) -> None:
    """Validation overlays of an instance run: its objects, predicted with the run's
    representation (the default TensorBoard logger once stopped such a run at epoch 1)."""
    import io

    import numpy as np
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.engine.test_instance_task import write_dataset

    data = write_dataset(tmp_path / "data", count=8)
    unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, log_images_every=1,
                  test=False, task="instance", **COMMON)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    tags = [t for t in events.Tags()["images"] if t.startswith("val_overlay/")]
    assert tags
    name = tags[0].split("/", 1)[1]
    panel = np.asarray(Image.open(io.BytesIO(events.Images(tags[0])[0].encoded_image_string)))
    labels = np.asarray(Image.open(data / "masks" / f"{name}.png"))
    truth = panel[14: 14 + 64, 64 + 4: 2 * 64 + 4, :3].astype(int)
    image = panel[14: 14 + 64, :64, :3].astype(int)
    tinted = np.abs(truth - image).sum(-1) > 0  # the ground-truth panel tints each object
    assert (tinted == (labels > 0)).mean() > 0.99
