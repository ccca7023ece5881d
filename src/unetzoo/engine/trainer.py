"""Training: data set-up, the step loop, validation, checkpoints, exact resume, history.

One process or many (torchrun, see `distributed`): rank 0 checks, logs and writes; every
rank trains on its share of each global batch. `models/epoch_last.pt` holds everything to
continue exactly where training stood, mid-epoch included: weights, optimizer, schedule,
scaler, RNG states, history and the position in the epoch (whose sample order and
augmentation are pure functions of the seed, the epoch and the sample index).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..config import TrainConfig, build_config
from ..data.dataset import DatasetInfo
from ..data.prepare import TrainData, prepare_data
from ..data.split import write_split_csv
from ..data.transforms import train_transform
from ..errors import CheckpointError, ConfigError, RunError, UnetzooError
from ..fileio import atomic_write_text
from ..losses import build_loss, deep_supervision_loss
from ..models import count_parameters, create_model
from ..viz import save_curves
from .distributed import Distributed, ShardSampler, evaluate_sharded, missing_files
from .evaluate import EvaluationResult, format_summary
from .infer import InferenceOptions, Predictor
from .preemption import StopRequest, TrainingInterrupted, ignore_stop_signals_in_worker
from .run_folder import NO_TRAINING_STATE, RunPlan, check_run_dir, plan_run, prepare_run_dir
from .runtime import Runtime
from .schedules import build_optimizer, lr_factor

__all__ = ["TrainResult", "Trainer", "TrainingError", "TrainingInterrupted", "train"]

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


@dataclass
class EpochProgress:
    """Where training stands inside the current epoch; all zero at an epoch boundary."""

    samples: int = 0  # consumed by all processes together
    loss_sum: float = 0.0
    losses: int = 0
    skipped: int = 0
    seconds: float = 0.0
    lr: float | None = None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _workers(requested: int) -> int:
    return min(4, (os.cpu_count() or 2) // 2) if requested < 0 else requested


class Trainer:
    """Fits a model: one object per run (per process), driven by `fit()`."""

    def __init__(self, config: TrainConfig, data: TrainData, model: nn.Module, run_dir: Path,
                 runtime: Runtime, context: Distributed | None = None) -> None:
        self.config = config
        self.data = data
        self.run_dir = run_dir
        self.runtime = runtime
        self.context = context or Distributed()
        model = runtime.prepare_model(model)
        if config.sync_bn and self.context.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp: nn.Module = model
        if self.context.enabled:
            devices = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=devices)
        self.forward = torch.compile(self.ddp) if config.compile else self.ddp
        self.loss = build_loss(config.loss, data.info.task)
        self.weights = config.ds_weights or getattr(model, "output_weights", None)
        self.train_set = data.dataset(
            data.train, train_transform(config.img_size, config.resize_mode,  # type: ignore[arg-type]
                                        config.augment), seed=config.seed)
        self.global_batch = config.batch * self.context.world_size
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, len(self.train_set) // self.global_batch)
        self.optimizer = build_optimizer(config.optimizer, model, config.lr,
                                         config.weight_decay, config.momentum)
        factor = lr_factor(config.schedule, config.epoch * self.steps_per_epoch,
                           config.warmup * self.steps_per_epoch, self.steps_per_epoch,
                           config.step_size, config.gamma, config.poly_power)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.scaler = torch.amp.GradScaler(runtime.device.type,
                                           enabled=runtime.precision == "fp16")
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.progress = EpochProgress()
        self.best_score = -math.inf
        self.history: list[dict[str, Any]] = []
        self.stop = StopRequest(announce=self.context.is_main)
        self._saved_step = -1

    @property
    def last_path(self) -> Path:
        return self.run_dir / "models" / "epoch_last.pt"

    # -- data -------------------------------------------------------------------------
    def _loader(self, epoch: int, first_step: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        sampler = ShardSampler(len(self.train_set), self.config.batch, self.steps_per_epoch,
                               self.config.seed, epoch, self.context.rank,
                               self.context.world_size, start=first_step)
        workers = _workers(self.config.workers)
        # Its own generator: creating the loader must not draw from the global RNG.
        seeds = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        return DataLoader(self.train_set, batch_size=self.config.batch, sampler=sampler,
                          num_workers=workers, drop_last=True, generator=seeds,
                          worker_init_fn=ignore_stop_signals_in_worker if workers else None,
                          pin_memory=self.runtime.device.type == "cuda")

    # -- one epoch --------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> None:
        """Train the rest of `epoch` from where `self.progress` stands."""
        self.ddp.train()
        progress = self.progress
        first = math.ceil(progress.samples / self.global_batch)
        bar = tqdm(self._loader(epoch, first), initial=first, total=self.steps_per_epoch,
                   leave=False, desc=f"epoch {epoch}/{self.config.epoch}", unit="step",
                   disable=not (self.config.progress and self.context.is_main))
        base, started = progress.seconds, time.perf_counter()
        for index, batch in enumerate(bar, start=first):
            stop = self.train_step(batch, epoch, index)
            progress.seconds = base + time.perf_counter() - started
            if progress.losses:
                bar.set_postfix(loss=f"{progress.loss_sum / progress.losses:.4f}")
            if stop:
                self._interrupt(f"epoch {epoch} step {self.step}")
            every = self.config.checkpoint_every
            if every and self.step % every == 0 and self.step != self._saved_step and \
                    index + 1 < self.steps_per_epoch:
                self._save_last(self.history[-1] if self.history else {})

    def train_step(self, batch: dict[str, Any], epoch: int, index: int) -> bool:
        """One optimizer step on this rank's share of a global batch. The ranks agree on
        the batch's loss, on whether it is finite everywhere, and on whether a stop was
        asked for; returns that last answer."""
        images = self.runtime.prepare_input(batch["image"])
        target = batch["mask"].to(self.runtime.device, non_blocking=True)
        with self.runtime.autocast():
            outputs = self.forward(images)
        loss = deep_supervision_loss(self.loss, outputs, target, self.weights)
        value = float(loss.detach())
        finite = math.isfinite(value)
        total, bad, stop = self.context.reduce_sum(
            [value if finite else 0.0, 0.0 if finite else 1.0, float(self.stop.signum > 0)],
            self.runtime.device)
        self.progress.samples += self.global_batch
        if bad:
            self._non_finite(batch, epoch, index, None if finite else value)
            return bool(stop)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        self.progress.loss_sum += total / self.context.world_size
        self.progress.losses += 1
        return bool(stop)

    def _non_finite(self, batch: dict[str, Any], epoch: int, index: int,
                    value: float | None) -> None:
        """Stop with a message naming the step and batch, or (nan_policy skip) skip it."""
        reports = self.context.gather(None if value is None else (value, batch["name"][:4]))
        rank, (loss, names) = next((r, v) for r, v in enumerate(reports) if v is not None)
        where = (f"epoch {epoch}, step {self.step + 1} (batch {index + 1}/"
                 f"{self.steps_per_epoch}: {', '.join(names)}"
                 f"{f' on rank {rank}' if self.context.enabled else ''})")
        if self.config.nan_policy == "stop":
            raise TrainingError(f"loss is {loss} at {where}; the last good checkpoint is kept "
                                f"in {self.run_dir / 'models'}. Lower --lr, try --precision "
                                "fp32, or resume with --nan-policy skip")
        self.progress.skipped += 1
        log.warning(f"skipped: loss is {loss} at {where} ({self.progress.skipped} skipped "
                    "in this epoch)")

    def validate(self) -> EvaluationResult | None:
        if not self.data.val:
            return None
        predictor = Predictor(self.model, self.data.preprocessing, self.data.info.task,
                              InferenceOptions(self.runtime, batch_size=self.config.batch))
        result = evaluate_sharded(self.context, predictor, self.data, self.data.val,
                                  self.data.info.class_names,
                                  workers=_workers(self.config.workers),
                                  progress=self.config.progress)
        self.ddp.train()
        return result

    # -- checkpoints ------------------------------------------------------------------
    def checkpoint(self, with_state: bool, metrics: dict[str, Any]) -> Checkpoint:
        state = None
        if with_state:
            state = {
                "epoch": self.epoch, "step": self.step, "best_score": self.best_score,
                "progress": asdict(self.progress), "global_batch": self.global_batch,
                "world_size": self.context.world_size,
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
        """Continue from `checkpoint`'s weights, optimizer, schedule, position, history and
        RNG states."""
        state = checkpoint.train_state
        if not state:
            raise CheckpointError(NO_TRAINING_STATE)
        self.model.load_state_dict(checkpoint.state_dict)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self._saved_step = self.step
        self.progress = EpochProgress(**state.get("progress", {}))
        if self.progress.samples and state.get("global_batch") != self.global_batch:
            log.warning(f"the global batch changed from {state.get('global_batch')} to "
                        f"{self.global_batch}: epoch {self.epoch + 1} goes on from the next "
                        "whole batch, not exactly where it stopped")
        self.best_score, self.history = state["best_score"], list(state["history"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(state["rng"]["python"])
        np_state = np.random.get_state()
        np.random.set_state((np_state[0], state["rng"]["numpy"].numpy().astype(np.uint32),
                             *np_state[2:]))

    def _save(self, path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
        """Rank 0 builds the checkpoint and writes it; a failed write (e.g. a full disk)
        keeps the previous file."""
        if not self.context.is_main:
            return
        try:
            save_checkpoint(path, self.checkpoint(with_state, metrics))
        except OSError as exc:
            raise RunError(f"cannot write the checkpoint ({exc.strerror or exc}); the "
                           "previous one is kept", path) from exc

    def _save_last(self, metrics: dict[str, Any]) -> None:
        self._save(self.last_path, True, metrics)
        self._saved_step = self.step

    def _interrupt(self, where: str) -> None:
        """Save where training stands (if not saved yet) and stop on the signal."""
        if self.progress.samples:  # mid-epoch (an epoch's end is saved already)
            self._save_last(self.history[-1] if self.history else {})
        message = f"interrupted at {where}; resume with: unetzoo train --resume {self.run_dir}"
        log.info(message)
        raise TrainingInterrupted(message, self.stop.signum or signal.SIGTERM)

    def _score(self, result: EvaluationResult | None, train_loss: float) -> float | None:
        if self.config.monitor == "loss":
            return -train_loss
        return None if result is None else result.summary["global"][self.config.monitor]

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> TrainResult:
        best = self.run_dir / "models" / "best.pt"
        with self.stop:
            while self.epoch < self.config.epoch:
                self._epoch(self.epoch + 1, best)
                if self.context.reduce_sum([float(self.stop.signum > 0)],
                                           self.runtime.device)[0]:
                    self._interrupt(f"the end of epoch {self.epoch} (step {self.step})")
        if self.context.is_main and not best.exists():
            # no validation ever ran: the last weights are the best known
            self._save(best, False, self.history[-1])
        return TrainResult(self.run_dir, best, self.last_path, self.history, self.best_score)

    def _epoch(self, epoch: int, best: Path) -> None:
        if self.progress.lr is None:
            self.progress.lr = self.optimizer.param_groups[0]["lr"]
        self.train_epoch(epoch)
        progress = self.progress
        if not progress.losses:
            raise TrainingError(f"every batch of epoch {epoch} had a non-finite loss; the last "
                                f"good checkpoint is kept in {self.run_dir / 'models'}")
        start = time.perf_counter()
        result = self.validate() if epoch % self.config.val_every == 0 or \
            epoch == self.config.epoch else None
        train_loss = progress.loss_sum / progress.losses
        row: dict[str, Any] = {"epoch": epoch, "lr": progress.lr, "train_loss": train_loss,
                               "seconds": progress.seconds + time.perf_counter() - start}
        if self.config.nan_policy == "skip":
            row["skipped"] = progress.skipped
        if result is not None:
            glob, mean = result.summary["global"], result.summary["mean_over_images"]
            row.update(val_dice=glob["dice"], val_iou=glob["iou"], val_mdice=glob["mdice"],
                       val_dice_per_image=mean["dice"], val_iou_per_image=mean["iou"])
        self.epoch, self.progress = epoch, EpochProgress()
        self.history.append(row)
        score = self._score(result, train_loss)
        improved = score is not None and score > self.best_score
        if improved:
            self.best_score = score  # type: ignore[assignment]
            self._save(best, False, row)
        self._save_last(row)
        if self.context.is_main:
            self._write_history()
        log.info(_epoch_line(row, self.config, improved))

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
    if row.get("skipped"):
        text += f"  skipped {row['skipped']}"
    text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    return text + ("  * best" if improved else "")


def train(config: TrainConfig | None = None, *, given: dict[str, Any] | None = None,
          **options: Any) -> TrainResult:
    """Train from a config (or keyword options), print progress, and return where the
    checkpoints are. With `resume`, the run continues with its saved config; options
    given explicitly (`given`, or keyword options) override it, e.g. a larger `epoch`.

    Everything that can be checked is checked before the run folder is touched: the run
    folder's state, every image and mask, the model and its options. Under torchrun the
    processes train together (see `unetzoo.engine.distributed`); rank 0 checks and writes.
    """
    if config is None:
        config = build_config(options)
        given = {**(given or {}), **options}
    context = Distributed.start()
    level = log.level
    if not context.is_main:
        log.setLevel(logging.ERROR)
    try:
        return _train(config, given or {}, context)
    finally:
        log.setLevel(level)
        context.stop()


def _train(config: TrainConfig, given: dict[str, Any], context: Distributed) -> TrainResult:
    def plan_and_scan() -> tuple[RunPlan, TrainData]:
        plan = plan_run(config, given)
        cfg = plan.config
        check_run_dir(plan.run_dir, resume=plan.reuse_folder, overwrite=cfg.overwrite)
        checkpoint = plan.checkpoint
        data = prepare_data(cfg.dataset, cfg.csvfile, task=cfg.task,
                            num_classes=cfg.num_classes, class_names=cfg.class_names,
                            class_map=cfg.class_map, ignore_index=cfg.ignore_index,
                            full_check=cfg.full_check,
                            val_fraction=cfg.val_fraction, seed=cfg.seed,
                            img_size=cfg.img_size, resize_mode=cfg.resize_mode,
                            preprocessing=checkpoint.preprocessing if checkpoint else None)
        return plan, data

    plan, data = context.shared(plan_and_scan)
    config, run_dir = plan.config, plan.run_dir

    def set_up_here() -> tuple[Runtime, nn.Module]:
        runtime = Runtime.resolve(context.device(config.device), config.precision,
                                  config.channels_last, config.threads)
        if config.sync_bn and context.enabled and runtime.device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs "
                              "only); on CPUs use a per-sample norm, e.g. --model-args "
                              "norm=group")
        _seed_everything(config.seed)
        model = _build_model(config, data.info, plan.checkpoint)
        if context.is_main:
            prepare_run_dir(run_dir, resume=plan.reuse_folder, overwrite=config.overwrite,
                            needed_bytes=count_parameters(model) * 4 * 8)
        else:
            missing_files(data)
        return runtime, model

    runtime, model = context.agreed(set_up_here)
    handler = None
    if context.is_main:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    try:
        return _run(config, run_dir, runtime, data, model, plan.checkpoint, context)
    finally:
        if handler is not None:
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
         model: nn.Module, checkpoint: Checkpoint | None, context: Distributed) -> TrainResult:
    info = data.info
    if context.is_main:
        if data.new_split:
            write_split_csv(data.train + data.val + data.test, data.root,
                            run_dir / "split.csv", overwrite=True)
        atomic_write_text(run_dir / "config.yaml",
                          yaml.safe_dump(config.to_dict(), sort_keys=False))
    trainer = Trainer(config, data, model, run_dir, runtime, context)
    if checkpoint is not None:
        trainer.restore(checkpoint)
    params = count_parameters(model)
    processes = f" x {context.world_size} processes" if context.enabled else ""
    log.info(f"unetzoo train: {config.model} ({params / 1e6:.2f} M parameters) on {data.root}")
    log.info(f"  {info.task}, {len(info.class_names)} class(es), {info.in_channels} channel(s); "
             f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)} images")
    log.info(f"  patch {config.img_size} ({config.resize_mode}), batch {config.batch}"
             f"{processes}, {trainer.steps_per_epoch} steps/epoch, {config.epoch} epochs, "
             f"loss {config.loss}, {config.optimizer} lr {config.lr:g} ({config.schedule})")
    log.info(f"  runtime: {runtime.describe()}")
    log.info(f"  run folder: {run_dir}{_resume_note(trainer) if checkpoint else ''}")
    result = trainer.fit()
    if data.test and config.test:
        best = context.shared(lambda: load_checkpoint(result.best_checkpoint))
        predictor = Predictor.from_checkpoint(best, InferenceOptions(runtime,
                                                                    batch_size=config.batch))
        result.test = evaluate_sharded(context, predictor, data, data.test, info.class_names,
                                       workers=_workers(config.workers),
                                       progress=config.progress)
        if context.is_main:
            result.test.write(run_dir / "test")
        log.info(format_summary(result.test, f"test split, best checkpoint "
                                             f"({result.best_checkpoint.name}):"))
    log.info(f"run folder: {run_dir}")
    return result


def _resume_note(trainer: Trainer) -> str:
    done = math.ceil(trainer.progress.samples / trainer.global_batch)
    if not done:
        return f" (resuming after epoch {trainer.epoch})"
    return (f" (resuming in epoch {trainer.epoch + 1} after step {trainer.step}, "
            f"{done}/{trainer.steps_per_epoch} of its batches done)")
