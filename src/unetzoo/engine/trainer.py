"""Training: data set-up, the epoch loop, validation, checkpoints, resume, history."""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, RandomSampler
from tqdm import tqdm

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..config import TrainConfig, build_config
from ..data.dataset import DatasetInfo
from ..data.prepare import TrainData, prepare_data
from ..data.split import write_split_csv
from ..data.transforms import train_transform
from ..errors import CheckpointError, UnetzooError
from ..fileio import atomic_write_text
from ..losses import build_loss, deep_supervision_loss
from ..models import count_parameters, create_model
from ..viz import save_curves
from .evaluate import EvaluationResult, evaluate, format_summary
from .infer import InferenceOptions, Predictor
from .run_folder import check_run_dir, default_run_dir, prepare_run_dir
from .runtime import Runtime
from .schedules import build_optimizer, lr_factor

log = logging.getLogger("unetzoo")


class TrainingError(UnetzooError):
    """Training cannot go on (e.g. a non-finite loss)."""


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    best_score: float
    test: EvaluationResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _workers(requested: int) -> int:
    return min(4, (os.cpu_count() or 2) // 2) if requested < 0 else requested


class Trainer:
    """Fits a model: one object per run, driven by `fit()`."""

    def __init__(self, config: TrainConfig, data: TrainData, model: nn.Module, run_dir: Path,
                 runtime: Runtime) -> None:
        self.config = config
        self.data = data
        self.run_dir = run_dir
        self.runtime = runtime
        self.model = runtime.prepare_model(model)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.loss = build_loss(config.loss, data.info.task)
        self.weights = config.ds_weights or getattr(model, "output_weights", None)
        self.train_set = data.dataset(
            data.train, train_transform(config.img_size, config.resize_mode,  # type: ignore[arg-type]
                                        config.augment), seed=config.seed)
        samples = len(self.train_set)
        self.steps_per_epoch = config.steps_per_epoch or max(1, samples // config.batch)
        self.optimizer = build_optimizer(config.optimizer, self.model, config.lr,
                                         config.weight_decay, config.momentum)
        factor = lr_factor(config.schedule, config.epoch * self.steps_per_epoch,
                           config.warmup * self.steps_per_epoch, self.steps_per_epoch,
                           config.step_size, config.gamma, config.poly_power)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler(runtime.device.type,
                                           enabled=runtime.precision == "fp16")
        self.epoch = 0
        self.step = 0
        self.best_score = -math.inf
        self.history: list[dict[str, Any]] = []

    # -- data -------------------------------------------------------------------------
    def _loader(self, epoch: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        count = self.steps_per_epoch * self.config.batch
        sampler = RandomSampler(self.train_set, num_samples=count, generator=generator)
        return DataLoader(self.train_set, batch_size=self.config.batch, sampler=sampler,
                          num_workers=_workers(self.config.workers), drop_last=True,
                          pin_memory=self.runtime.device.type == "cuda",
                          persistent_workers=False)

    # -- one epoch --------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> float:
        self.model.train()
        total, count = 0.0, 0
        bar = tqdm(self._loader(epoch), total=self.steps_per_epoch, leave=False,
                   desc=f"epoch {epoch}/{self.config.epoch}", unit="step",
                   disable=not self.config.progress)
        for batch_index, batch in enumerate(bar):
            loss = self.train_step(batch, epoch, batch_index)
            total += loss
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        return total / max(count, 1)

    def train_step(self, batch: dict[str, Any], epoch: int, batch_index: int) -> float:
        images = self.runtime.prepare_input(batch["image"])
        target = batch["mask"].to(self.runtime.device, non_blocking=True)
        with self.runtime.autocast():
            outputs = self.forward(images)
        loss = deep_supervision_loss(self.loss, outputs, target, self.weights)
        if not torch.isfinite(loss):
            names = ", ".join(batch["name"][:4])
            raise TrainingError(f"loss is {loss.item()} at epoch {epoch}, step {self.step + 1} "
                                f"(batch {batch_index + 1}: {names}); the last good checkpoint "
                                f"is kept in {self.run_dir / 'models'}. Lower --lr or try "
                                "--precision fp32")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    def validate(self) -> EvaluationResult | None:
        if not self.data.val:
            return None
        predictor = Predictor(self.model, self.data.preprocessing, self.data.info.task,
                              InferenceOptions(self.runtime, batch_size=self.config.batch))
        result = evaluate(predictor, self.data.dataset(self.data.val),
                          self.data.info.class_names, workers=_workers(self.config.workers),
                          progress=self.config.progress)
        self.model.train()
        return result

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self, with_state: bool, metrics: dict[str, Any]) -> Checkpoint:
        state = None
        if with_state:
            state = {
                "epoch": self.epoch, "step": self.step, "best_score": self.best_score,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "history": self.history,
                "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))},
            }
        return Checkpoint(
            model_spec=self.model.unetzoo_spec, task=self.data.info.task,
            class_names=self.data.info.class_names, preprocessing=self.data.preprocessing,
            state_dict={k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            config=self.config.to_dict(), metrics=metrics, train_state=state,
            class_colors=self.data.info.class_colors)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from `checkpoint`'s weights, optimizer, schedule, history and RNG."""
        state = checkpoint.train_state
        if not state:
            raise CheckpointError("holds no training state (best.pt is for inference; resume "
                                  "from models/epoch_last.pt)")
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_score, self.history = state["best_score"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], state["rng"]["numpy"].numpy().astype(np.uint32),
                             *np_state[2:]))

    def _score(self, result: EvaluationResult | None, train_loss: float) -> float | None:
        if self.config.monitor == "loss":
            return -train_loss
        return None if result is None else result.summary["global"][self.config.monitor]

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> TrainResult:
        models = self.run_dir / "models"
        last, best = models / "epoch_last.pt", models / "best.pt"
        while self.epoch < self.config.epoch:
            epoch = self.epoch + 1
            start = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            train_loss = self.train_epoch(epoch)
            result = self.validate() if epoch % self.config.val_every == 0 or \
                epoch == self.config.epoch else None
            self.epoch = epoch
            row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_loss": train_loss,
                                   "seconds": time.perf_counter() - start}
            if result is not None:
                glob, mean = result.summary["global"], result.summary["mean_over_images"]
                row.update(val_dice=glob["dice"], val_iou=glob["iou"], val_mdice=glob["mdice"],
                           val_dice_per_image=mean["dice"], val_iou_per_image=mean["iou"])
            self.history.append(row)
            score = self._score(result, train_loss)
            improved = score is not None and score > self.best_score
            if improved:
                self.best_score = score  # type: ignore[assignment]
                save_checkpoint(best, self.checkpoint(False, row))
            save_checkpoint(last, self.checkpoint(True, row))
            self._write_history()
            log.info(_epoch_line(row, self.config, improved))
        if not best.exists():  # no validation ever ran: the last weights are the best known
            save_checkpoint(best, self.checkpoint(False, self.history[-1]))
        return TrainResult(self.run_dir, best, last, self.history, self.best_score)

    def _write_history(self) -> None:
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for row in self.history:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                             for k, v in row.items()})
        atomic_write_text(self.run_dir / "metrics.csv", out.getvalue())
        save_curves(self.run_dir / "curves.png", self.history)


def _epoch_line(row: dict[str, Any], config: TrainConfig, improved: bool) -> str:
    width = len(str(config.epoch))
    text = f"epoch {row['epoch']:>{width}}/{config.epoch}  loss {row['train_loss']:.4f}"
    if "val_dice" in row:
        text += (f"  val dice {row['val_dice']:.4f} iou {row['val_iou']:.4f} "
                 f"(per image {row['val_dice_per_image']:.4f})")
    text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    return text + ("  * best" if improved else "")


def _resume_checkpoint(resume: str) -> tuple[Path, Checkpoint]:
    path = Path(resume)
    if path.is_dir():
        path = path / "models" / "epoch_last.pt"
    checkpoint = load_checkpoint(path)
    return path.parent.parent, checkpoint


def train(config: TrainConfig | None = None, *, given: dict[str, Any] | None = None,
          **options: Any) -> TrainResult:
    """Train from a config (or keyword options), print progress, and return where the
    checkpoints are. With `resume`, the run continues with its saved config; options
    given explicitly (`given`, or keyword options) override it, e.g. a larger `epoch`.

    Everything that can be checked is checked before the run folder is touched: the run
    folder's state, every image and mask, the model and its options.
    """
    if config is None:
        config = build_config(options)
        given = {**(given or {}), **options}
    checkpoint = None
    if config.resume:
        run_dir, checkpoint = _resume_checkpoint(config.resume)
        overrides = {k: v for k, v in (given or {}).items() if k != "resume"}
        config = build_config({**checkpoint.config, **overrides, "resume": config.resume})
    else:
        run_dir = Path(config.out) if config.out else default_run_dir(config.model)
    runtime = Runtime.resolve(config.device, config.precision, config.channels_last,
                              config.threads)
    check_run_dir(run_dir, resume=checkpoint is not None, overwrite=config.overwrite)
    _seed_everything(config.seed)
    data = prepare_data(config.dataset, config.csvfile, task=config.task,
                        num_classes=config.num_classes, class_names=config.class_names,
                        class_map=config.class_map, ignore_index=config.ignore_index,
                        full_check=config.full_check,
                        val_fraction=config.val_fraction, seed=config.seed,
                        img_size=config.img_size, resize_mode=config.resize_mode,
                        preprocessing=checkpoint.preprocessing if checkpoint else None)
    model = _build_model(config, data.info, checkpoint)
    prepare_run_dir(run_dir, resume=checkpoint is not None, overwrite=config.overwrite,
                    needed_bytes=count_parameters(model) * 4 * 6)
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    try:
        return _run(config, run_dir, runtime, data, model, checkpoint)
    finally:
        log.removeHandler(handler)
        handler.close()


def _build_model(config: TrainConfig, info: DatasetInfo, checkpoint: Checkpoint | None
                 ) -> nn.Module:
    if checkpoint is not None:
        spec = checkpoint.model_spec
        return create_model(spec["name"], spec["in_channels"], spec["num_classes"],
                            **spec["kwargs"])
    return create_model(config.model, info.in_channels,
                        1 if info.task == "binary" else info.num_classes,
                        preset=config.preset, **config.model_args)


def _run(config: TrainConfig, run_dir: Path, runtime: Runtime, data: TrainData,
         model: nn.Module, checkpoint: Checkpoint | None) -> TrainResult:
    info = data.info
    if data.new_split:
        write_split_csv(data.train + data.val + data.test, data.root, run_dir / "split.csv",
                        overwrite=True)
    atomic_write_text(run_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer = Trainer(config, data, model, run_dir, runtime)
    if checkpoint is not None:
        trainer.restore(checkpoint)
    params = count_parameters(model)
    log.info(f"unetzoo train: {config.model} ({params / 1e6:.2f} M parameters) on {data.root}")
    log.info(f"  {info.task}, {len(info.class_names)} class(es), {info.in_channels} channel(s); "
             f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)} images")
    log.info(f"  patch {config.img_size} ({config.resize_mode}), batch {config.batch}, "
             f"{trainer.steps_per_epoch} steps/epoch, {config.epoch} epochs, loss "
             f"{config.loss}, {config.optimizer} lr {config.lr:g} ({config.schedule})")
    log.info(f"  runtime: {runtime.describe()}")
    log.info(f"  run folder: {run_dir}" + (f" (resuming after epoch {trainer.epoch})"
                                           if checkpoint else ""))
    result = trainer.fit()
    if data.test and config.test:
        best = load_checkpoint(result.best_checkpoint)
        predictor = Predictor.from_checkpoint(best, InferenceOptions(runtime,
                                                                    batch_size=config.batch))
        result.test = evaluate(predictor, data.dataset(data.test), info.class_names,
                               workers=_workers(config.workers), progress=config.progress)
        result.test.write(run_dir / "test")
        log.info(format_summary(result.test, f"test split, best checkpoint "
                                             f"({result.best_checkpoint.name}):"))
    log.info(f"run folder: {run_dir}")
    return result
