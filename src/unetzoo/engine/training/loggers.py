"""Training logs where people look: TensorBoard event files in the run folder (the default)
and an MLflow tracking store (`--mlflow URI`), both as trainer callbacks.

Each logs, per epoch, the training loss, the learning rate, the epoch time and the validation
metrics (the row of `metrics.csv`), and every `log_images_every` epochs a few validation
overlays (image | ground truth | prediction); at the end, the test metrics. MLflow also gets
the run's config as parameters and the best checkpoint as an artifact. Both run on rank 0
only and draw nothing from the random generators, so resumed runs stay exact.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ...config import LOGGERS
from ...errors import ConfigError
from ...viz import class_colors, comparison_panel
from ..inference.predictor import InferenceOptions, Predictor
from .trainer import Callback, Trainer, TrainResult

if TYPE_CHECKING:
    from ...config import TrainConfig
    from ..evaluate import EvaluationResult

log = logging.getLogger("unetzoo")

OVERLAYS = 4  # validation images shown
MAX_SIDE = 768  # overlays are shrunk to this longest side
MLFLOW_RUN_FILE = "mlflow_run_id.txt"


def scalars(row: dict[str, Any]) -> dict[str, float]:
    """The numbers of a `metrics.csv` row as logged: `train/loss`, `train/lr`,
    `train/seconds`, `val/dice`, ... (`epoch` is the step, not a value)."""
    names = {"train_loss": "train/loss", "lr": "train/lr", "seconds": "train/seconds",
             "skipped": "train/skipped_batches"}
    out = {}
    for key, value in row.items():
        if key == "epoch" or not isinstance(value, (int, float)):
            continue
        out[names.get(key, key.replace("val_", "val/", 1))] = float(value)
    return out


OBJECT_COLORS = 8


def _object_colors(labels: np.ndarray) -> np.ndarray:
    """Object ids (0 background; -1 ignored shows as background) as colours 1..OBJECT_COLORS
    taken in turn."""
    return np.where(labels > 0, (labels.astype(np.int64) - 1) % OBJECT_COLORS + 1, 0)


def validation_overlays(trainer: Trainer, count: int = OVERLAYS) -> dict[str, np.ndarray]:
    """image | ground truth | prediction (| errors, binary) panels of the first `count`
    validation images with the current weights, as RGB uint8, by image name."""
    data = trainer.data
    pairs = data.val[:count]
    if not pairs:
        return {}
    model = trainer.model
    was_training = model.training
    instance = data.info.task == "instance"
    predictor = Predictor(model, data.preprocessing, data.info.task,
                          InferenceOptions(trainer.runtime, batch_size=trainer.config.batch),
                          instance=trainer.decoding)
    colors = class_colors(OBJECT_COLORS + 1) if instance else \
        class_colors(max(data.info.num_classes, 2) + 1, data.info.class_colors)
    panels = {}
    try:
        dataset = data.dataset(pairs)
        dataset.keep_pixels = True
        for index in range(len(dataset)):
            sample = dataset[index]
            pred = np.asarray(predictor.labels(sample["image"]))
            truth = np.asarray(sample["labels" if instance else "mask"])
            if instance:  # objects in turns of a few colours (ids past them would not show)
                truth, pred = _object_colors(truth), _object_colors(pred)
            panel = comparison_panel(sample["pixels"].numpy(), truth, pred, colors,
                                     binary=data.info.task == "binary")
            scale = MAX_SIDE / max(panel.shape[:2])
            if scale < 1:
                size = (round(panel.shape[1] * scale), round(panel.shape[0] * scale))
                panel = np.asarray(Image.fromarray(panel).resize(size, Image.BILINEAR))
            panels[str(sample["name"])] = panel
    finally:
        model.train(was_training)
    return panels


def _due(config: TrainConfig, epoch: int) -> bool:
    every = config.log_images_every
    return bool(every) and (epoch % every == 0 or epoch == config.epoch)


class TensorBoardLogger(Callback):
    """Event files in `RUN/tensorboard/` (`tensorboard --logdir RUN`): scalars per epoch
    (step = epoch), validation overlays, the config as text, test metrics at the end."""

    def __init__(self, run_dir: Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer: Any = None

    def on_train_start(self, trainer: Trainer) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise ConfigError("tensorboard is not installed; pip install tensorboard, or "
                              "train with --logger none") from exc
        import yaml

        self.writer = SummaryWriter(str(self.log_dir))
        if trainer.epoch == 0:
            text = yaml.safe_dump(trainer.config.to_dict(), sort_keys=False)
            self.writer.add_text("config", "```\n" + text + "```", 0)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any],
                     validation: EvaluationResult | None) -> None:
        epoch = int(row["epoch"])
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, epoch)
        if validation is not None and _due(trainer.config, epoch):
            for name, panel in validation_overlays(trainer).items():
                self.writer.add_image(f"val_overlay/{name}", panel, epoch, dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if result.test is not None:
            glob = result.test.summary["global"]
            for name in ("dice", "iou", "mdice", "miou"):
                self.writer.add_scalar(f"test/{name}", glob[name], trainer.epoch)
        self.writer.close()


def mlflow_uri(uri: str) -> str:
    """A tracking URI for MLflow: a plain folder becomes `file:FOLDER` (MLflow's file store,
    allowed explicitly: MLflow 3 keeps it in maintenance mode and refuses it by default)."""
    if "://" not in uri and not uri.startswith("file:"):
        uri = f"file:{Path(uri).resolve()}"
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


class MLflowLogger(Callback):
    """The same to an MLflow tracking store: the config as parameters, metrics per epoch
    (step = epoch), overlays and the best checkpoint as artifacts, test metrics at the end.

    A resumed run logs into the same MLflow run (its id is kept in `RUN/mlflow_run_id.txt`).
    A local SQLite store keeps artifacts beside the database (`mlartifacts/`).
    """

    def __init__(self, uri: str, experiment: str, run_dir: Path) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise ConfigError("mlflow is not installed; pip install 'unetzoo[mlflow]'") from exc
        self.uri = mlflow_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.experiment = experiment
        self.run_dir = Path(run_dir)
        self.run_id = ""

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # not the current folder's ./mlruns
            location = (Path(self.uri[len("sqlite:///"):]).resolve().parent /
                        "mlartifacts").as_uri()
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def on_train_start(self, trainer: Trainer) -> None:
        from mlflow.entities import Param

        from ...fileio import atomic_write_text

        keep = self.run_dir / MLFLOW_RUN_FILE
        if keep.is_file() and trainer.epoch > 0:
            self.run_id = keep.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
            return
        run = self.client.create_run(self._experiment_id(), run_name=self.run_dir.name,
                                     tags={"unetzoo.run_dir": str(self.run_dir.resolve())})
        self.run_id = run.info.run_id
        atomic_write_text(keep, self.run_id + "\n")
        params = [Param(k, str(v)[:500]) for k, v in trainer.config.to_dict().items()
                  if v is not None]
        for start in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[start: start + 100])
        log.info(f"mlflow: run {self.run_id} in experiment {self.experiment!r} at {self.uri}")

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step)
                                                    for k, v in values.items()])

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any],
                     validation: EvaluationResult | None) -> None:
        epoch = int(row["epoch"])
        self._metrics(scalars(row), epoch)
        if validation is not None and _due(trainer.config, epoch):
            for name, panel in validation_overlays(trainer).items():
                self.client.log_image(self.run_id, panel,
                                      artifact_file=f"val_overlays/epoch{epoch:04d}_{name}.png")

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if result.test is not None:
            glob = result.test.summary["global"]
            self._metrics({f"test/{n}": glob[n] for n in ("dice", "iou", "mdice", "miou")},
                          trainer.epoch)
        if result.best_checkpoint.is_file():
            self.client.log_artifact(self.run_id, str(result.best_checkpoint), "models")
        self.client.set_terminated(self.run_id, "FINISHED")


def logging_callbacks(config: TrainConfig, run_dir: Path) -> list[Callback]:
    """The loggers a run's config asks for (`logger`, `mlflow`)."""
    callbacks: list[Callback] = []
    if config.logger == "tensorboard":
        callbacks.append(TensorBoardLogger(run_dir))
    if config.mlflow:
        callbacks.append(MLflowLogger(config.mlflow, config.mlflow_experiment, run_dir))
    return callbacks


__all__ = ["LOGGERS", "MLflowLogger", "TensorBoardLogger", "logging_callbacks", "scalars",
           "validation_overlays"]
