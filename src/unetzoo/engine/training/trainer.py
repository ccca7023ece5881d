"""The training loop: epochs of optimizer steps, validation, and the choice of the best
checkpoint.

One process or many (torchrun, see `engine.distributed`): rank 0 logs and writes; every rank
trains on its share of each global batch. The trainer saves and restores its own state
(`training_state`, `restore`: exact resume, mid-epoch included); setting a run up (data,
model, run folder) is `setup.py`; features outside the loop (loggers, reports) hook in as
`Callback`s, which the trainer calls at the start, after each epoch and at the end.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DataLoader

from ...artefacts.checkpoint import Checkpoint, save_checkpoint
from ...config import DEFAULT_REPRESENTATION, INSTANCE_MONITORS, TrainConfig
from ...data.cache import estimate_pixels
from ...data.digests import pack_digests
from ...data.prepare import TrainData
from ...data.transforms import train_transform
from ...errors import CheckpointError, RunError, TrainingError
from ...instances.targets import get_representation
from ...losses import InstanceLoss, build_loss
from ...progress import progress_bar
from ...runtime import Runtime
from ...schedules import BudgetSchedule, build_optimizer, lr_factor
from ...task import IGNORE_LABEL
from ..distributed import Distributed, ShardSampler
from ..evaluate import EvaluationResult, evaluate_sharded
from ..inference.instance import InstanceDecoding
from ..inference.predictor import InferenceOptions, Predictor
from .budget import TimeBudget
from .history import write_history
from .preemption import StopRequest, TrainingInterrupted, ignore_stop_signals_in_worker
from .resume import NO_TRAINING_STATE
from .step import OptimizerStep

__all__ = ["EpochProgress", "Trainer", "TrainingError", "TrainingInterrupted"]

log = logging.getLogger("unetzoo")


@dataclass
class EpochProgress:
    """Where training stands inside the current epoch; all zero at an epoch boundary."""

    samples: int = 0  # consumed by all processes together
    loss_sum: float = 0.0
    losses: int = 0
    skipped: int = 0
    seconds: float = 0.0
    lr: float | None = None


def _cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}



def run_loss(config: TrainConfig, task: str) -> nn.Module:
    """The loss a run trains with: `config.loss` for the task, or for the instance task the
    loss of its representation's channel table (`losses.InstanceLoss`)."""
    if task == "instance":
        return InstanceLoss(get_representation(config.representation or DEFAULT_REPRESENTATION))
    return build_loss(config.loss, task)  # type: ignore[arg-type]


def data_workers(requested: int) -> int:
    """Data-loading processes: `requested`, or for -1 one per two cores, at most 4."""
    return min(4, (os.cpu_count() or 2) // 2) if requested < 0 else requested


def ema_update(decay: float):
    """The moving-average update of `torch.optim.swa_utils.AveragedModel` with decay
    min(decay, (1 + n) / (10 + n)) after n updates, so that a short run's average is not
    stuck near the initial weights (the warm-up of TensorFlow's ExponentialMovingAverage)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        count = int(n)
        rate = min(decay, (1 + count) / (10 + count))
        floating = [(a, c) for a, c in zip(averaged, current, strict=True)
                    if a.is_floating_point()]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1 - rate)
        for a, c in zip(averaged, current, strict=True):
            if not a.is_floating_point():
                a.copy_(c)  # counters such as BatchNorm's num_batches_tracked

    return update


class Callback:
    """Base class; override the hooks you need. Every hook gets the trainer, whose `config`,
    `run_dir`, `model`, `data`, `history`, `epoch` and `step` describe the run."""

    rank_zero_only: bool = True

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step of this process's training (also after a resume)."""

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any],
                     validation: EvaluationResult | None) -> None:
        """After an epoch: `row` is its line of `metrics.csv`, `validation` the validation
        result when validation ran."""

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """After training and the test evaluation (`result.test`, when there was one)."""


class CallbackList:
    """The callbacks of one run, each called where it belongs (rank 0, or every rank)."""

    def __init__(self, callbacks: Iterable[Callback], is_main: bool) -> None:
        self.callbacks = [c for c in callbacks if is_main or not c.rank_zero_only]

    def on_train_start(self, trainer: Trainer) -> None:
        for callback in self.callbacks:
            callback.on_train_start(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any],
                     validation: EvaluationResult | None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(trainer, row, validation)

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        for callback in self.callbacks:
            callback.on_train_end(trainer, result)


@dataclass
class TrainResult:
    """Where a run's checkpoints are, its history, and the test evaluation.

    Attributes:
        run_dir: the run folder.
        best_checkpoint: `models/best.pt` (best validation score).
        last_checkpoint: `models/epoch_last.pt` (resumable).
        history: one dict per epoch, as in `metrics.csv`.
        best_score: the best value of the monitored metric (-inf when none was measured).
        test: the best checkpoint on the test split, when there is one and `config.test`.
    """

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict[str, Any]]
    best_score: float
    test: EvaluationResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def import_first_training_modules() -> None:
    """Import what a process's first training step imports on the way (PyTorch's compiler
    package, which the first optimizer loads, and the augmentations: about 3 s on 2 cores),
    so a time budget pays for training, not for the imports."""
    import albumentations  # noqa: F401
    import torch._dynamo  # noqa: F401


class Trainer:
    """Fits a model: one object per run (per process), driven by `fit()`.

    Args:
        config: the run's options.
        data: the splits, the dataset scan and the preprocessing.
        model: the network (moved to the runtime's device and memory format here).
        run_dir: where checkpoints, history and logs go (rank 0 writes).
        runtime: device, precision and memory format.
        context: the distributed context (one process when omitted).
        callbacks: features called at the start, after each epoch and at the end.

    With `config.time_budget` a `TimeBudget` decides the number of steps (the schedule is
    laid over it), when validation runs and when training stops; with `config.ema` an
    exponential moving average of the weights is validated and saved.
    """

    def __init__(self, config: TrainConfig, data: TrainData, model: nn.Module, run_dir: Path,
                 runtime: Runtime, context: Distributed | None = None,
                 callbacks: list[Callback] | None = None) -> None:
        self.config = config
        self.data = data
        self.run_dir = run_dir
        self.runtime = runtime
        self.context = context or Distributed()
        self.callbacks = CallbackList(callbacks or [], self.context.is_main)
        # the budget's clock starts before the sample cache is filled: that counts too; a
        # process's one-time imports do not (seconds of a short fine-tuning budget)
        if config.time_budget:
            import_first_training_modules()
        self.budget = TimeBudget(config.time_budget) if config.time_budget else None
        self.budget_done = False
        model = runtime.prepare_model(model)
        if config.sync_bn and self.context.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        self.ddp: nn.Module = model
        if self.context.enabled:
            devices = [runtime.device.index] if runtime.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=devices)
        forward = torch.compile(self.ddp) if config.compile else self.ddp
        # the patch and resize mode are the preprocessing's, which checkpoints carry
        patch = data.preprocessing.img_size
        self.train_set = data.dataset(
            data.train, train_transform(patch, data.preprocessing.resize_mode, config.augment,
                                        fg_oversample=config.fg_oversample,
                                        **({"ignore_index": IGNORE_LABEL, "labels": True}
                                           if data.info.task == "instance" else {})),
            seed=config.seed)
        self.global_batch = config.batch * self.context.world_size
        self.steps_per_epoch = config.steps_per_epoch or max(
            1, len(self.train_set) // self.global_batch)
        self.optimizer = build_optimizer(config.optimizer, model, config.lr,
                                         config.weight_decay, config.momentum)
        self.budget_schedule: BudgetSchedule | None = None
        if self.budget is not None:
            self.budget.steps_per_epoch = self.steps_per_epoch
            factor = self.budget_schedule = BudgetSchedule(
                config.schedule, config.warmup * self.steps_per_epoch, self.steps_per_epoch,
                config.step_size, config.gamma, config.poly_power)
            # what one validation runs, per process, against one training step
            self.val_pixels = estimate_pixels(data.val) // self.context.world_size
            self.step_pixels = config.batch * patch**2
        else:
            factor = lr_factor(config.schedule, config.epoch * self.steps_per_epoch,
                               config.warmup * self.steps_per_epoch, self.steps_per_epoch,
                               config.step_size, config.gamma, config.poly_power)
        self.ema = AveragedModel(model, multi_avg_fn=ema_update(config.ema),
                                 use_buffers=True) if config.ema else None
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)
        self.step_fn = OptimizerStep(forward, model, run_loss(config, data.info.task),
                                     self.optimizer, runtime,
                                     config.ds_weights or getattr(model, "output_weights", None),
                                     config.grad_clip)
        self.val_loss = run_loss(config, data.info.task)
        # an instance model decodes objects with default thresholds until they are chosen
        # on the validation images after training (setup.choose_instance_thresholds)
        self.decoding = InstanceDecoding(get_representation(
            config.representation or DEFAULT_REPRESENTATION)) \
            if data.info.task == "instance" else None
        # auto: Dice; for objects the validation loss, since their scores depend on the
        # thresholds, which are chosen only after training
        self.monitor = ("loss" if data.info.task == "instance" else "dice") \
            if config.monitor == "auto" else config.monitor
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.progress = EpochProgress()
        self.best_score = -math.inf
        self.history: list[dict[str, Any]] = []
        self.stop = StopRequest(announce=self.context.is_main)
        self.saved_step = -1
        record = data.record
        self._fit_digests = torch.frombuffer(bytearray(pack_digests(sorted(
            record.fit_digests()))), dtype=torch.uint8) if record is not None and \
            record.has_digests else None

    @property
    def inference_model(self) -> nn.Module:
        """The weights to validate and save: the moving average with `ema`, else the model."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def last_path(self) -> Path:
        return self.run_dir / "models" / "epoch_last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "models" / "best.pt"

    # -- data -------------------------------------------------------------------------
    def _loader(self, epoch: int, first_step: int) -> DataLoader:
        self.train_set.set_epoch(epoch)
        sampler = ShardSampler(len(self.train_set), self.config.batch, self.steps_per_epoch,
                               self.config.seed, epoch, self.context.rank,
                               self.context.world_size, start=first_step)
        workers = data_workers(self.config.workers)
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
        bar = progress_bar(self._loader(epoch, first), f"epoch {epoch}/{self.config.epoch}",
                           "step", initial=first, total=self.steps_per_epoch,
                           enabled=self.config.progress and self.context.is_main)
        base, started = progress.seconds, time.perf_counter()
        last = started
        for index, batch in enumerate(bar, start=first):
            stop = self.train_step(batch, epoch, index)
            now = time.perf_counter()
            progress.seconds = base + now - started
            if self.budget is not None:  # the first step of an epoch starts the workers
                self.budget.observe_step(now - last, steady=index > first)
            if progress.losses:
                bar.set_postfix(loss=f"{progress.loss_sum / progress.losses:.4f}")
            if stop:
                self._interrupt(f"epoch {epoch} step {self.step}")
            every = self.config.checkpoint_every
            if every and self.step % every == 0 and self.step != self.saved_step and \
                    index + 1 < self.steps_per_epoch:
                self._save_last(self.history[-1] if self.history else {})
            last = time.perf_counter()  # a checkpoint's writing is not a step's time
            if self.budget is not None:
                self.budget.observe_overhead(last - now)
            if self.budget_done:
                break

    def train_step(self, batch: dict[str, Any], epoch: int, index: int) -> bool:
        """One optimizer step on this rank's share of a global batch. The ranks agree on
        the batch's loss, on whether it is finite everywhere, and on whether a stop was
        asked for; returns that last answer. With a time budget they also agree on whether
        it is spent (after this step) and on rank 0's estimate of the run's length."""
        loss = self.step_fn.loss(batch["image"], batch["mask"])
        value = float(loss.detach())
        finite = math.isfinite(value)
        spent, length = self._budget_votes()
        total, bad, stop, spent, length = self.context.reduce_sum(
            [value if finite else 0.0, 0.0 if finite else 1.0, float(self.stop.signum > 0),
             spent, length], self.runtime.device)
        if self.budget_schedule is not None and length:
            self.budget_schedule.set_total(int(length))
        self.budget_done = self.budget_done or spent > 0
        self.progress.samples += self.global_batch
        if bad:
            self._non_finite(batch, epoch, index, None if finite else value)
            return bool(stop)
        self.step_fn.update(loss)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.scheduler.step()
        self.step += 1
        self.progress.loss_sum += total / self.context.world_size
        self.progress.losses += 1
        return bool(stop)

    def _budget_votes(self) -> tuple[float, float]:
        """(1 if the budget is spent after this step else 0, the run's length in steps on
        rank 0 else 0): summed over the ranks, every rank takes the same decisions."""
        if self.budget is None:
            return 0.0, 0.0
        reserve = self._validation_estimate()
        length = self.budget.total_steps(self.step + 1, reserve) \
            if self.context.is_main and self.budget.measured else 0
        return float(self.budget.exhausted(reserve)), float(length)

    def _validation_estimate(self) -> float:
        if self.budget is None or not self.data.val:
            return 0.0
        return self.budget.validation_estimate(self.val_pixels, self.step_pixels)

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
        """Metrics and loss (the training loss on whole images) of the current weights on
        the validation split (None without one)."""
        if not self.data.val:
            return None
        predictor = Predictor(self.inference_model, self.data.preprocessing,
                              self.data.info.task,
                              InferenceOptions(self.runtime, batch_size=self.config.batch),
                              instance=self.decoding)
        result = evaluate_sharded(self.context, predictor, self.data, self.data.val,
                                  self.data.info.class_names,
                                  workers=data_workers(self.config.workers),
                                  progress=self.config.progress, loss=self.val_loss)
        self.ddp.train()
        return result

    # -- the training state: checkpoints and exact resume -------------------------------
    def training_state(self) -> dict[str, Any]:
        """The state `restore` needs to continue this trainer exactly (plain values and tensors,
        loadable with `weights_only=True`)."""
        return {
            "epoch": self.epoch, "step": self.step, "best_score": self.best_score,
            "progress": asdict(self.progress), "global_batch": self.global_batch,
            "world_size": self.context.world_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.step_fn.scaler.state_dict(),
            "history": self.history,
            **({"budget": self.budget.state()} if self.budget is not None else {}),
            **({"model": _cpu(self.model), "ema_averaged": int(self.ema.n_averaged)}
               if self.ema is not None else {}),
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))},
        }

    def build_checkpoint(self, with_state: bool, metrics: dict[str, Any]) -> Checkpoint:
        """The checkpoint of the trainer's model now: weights, model spec, task, classes,
        preprocessing, config and `metrics`, plus the training state when `with_state`. The
        weights are those to use (the moving average with `ema`; the trained weights are then
        in the training state)."""
        info = self.data.info
        return Checkpoint(
            model_spec=self.model.unetzoo_spec, task=info.task, class_names=info.class_names,
            preprocessing=self.data.preprocessing,
            state_dict=_cpu(self.inference_model),
            config=self.config.to_dict(), metrics=metrics,
            train_state=self.training_state() if with_state else None,
            class_colors=info.class_colors, mask_reading=self.data.reading.to_dict(),
            fit_digests=self._fit_digests,
            input_stats=self.data.input_stats.to_dict() if self.data.input_stats else None,
            instance=self.decoding.to_dict() if self.decoding is not None else None)

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from `checkpoint`'s weights, optimizer, schedule, position,
        history and RNG states.

        Raises:
            CheckpointError: the checkpoint holds no training state (e.g. `best.pt`).
        """
        state = checkpoint.train_state
        if not state:
            raise CheckpointError(NO_TRAINING_STATE)
        self.model.load_state_dict(state.get("model", checkpoint.state_dict))
        if self.ema is not None:
            self.ema.module.load_state_dict(checkpoint.state_dict)
            self.ema.n_averaged.fill_(state.get("ema_averaged", 0))
        if self.budget is not None:
            self.budget = TimeBudget.from_state(self.config.time_budget,  # type: ignore[arg-type]
                                                state.get("budget"),
                                                steps_per_epoch=self.steps_per_epoch)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self._continue_schedule(state)
        self.step_fn.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.saved_step = self.step
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

    def _continue_schedule(self, state: dict[str, Any]) -> None:
        """Set the learning rate of the step a resumed run continues at from the schedule
        of its config now. The optimizer's saved lr is the one the old schedule gave: for a
        run extended past its end (`--epoch` raised) that was the schedule's floor, 0 for a
        cosine, and the first resumed epoch ran at it. An extended run follows the
        schedule of a run planned that long (more epochs; under a larger `--time-budget`
        the rest of the decay is stretched, `BudgetSchedule.stretch`), said in one line;
        a run resumed as planned keeps its lr exactly."""
        if self.budget_schedule is not None and self.budget is not None:
            before = (state.get("budget") or {}).get("minutes")
            if before and self.budget.seconds / 60 > before:
                self.budget_schedule.stretch(self.budget.seconds / 60 / before)
        step = self.scheduler.last_epoch
        old = self.optimizer.param_groups[0]["lr"]
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas, strict=True):
            group["lr"] = base * factor(step)
        new = self.optimizer.param_groups[0]["lr"]
        if not math.isclose(old, new, rel_tol=1e-6, abs_tol=1e-15):
            length = f"{self.budget.seconds / 60:g} min" if self.budget is not None else \
                f"{self.config.epoch} epochs"
            log.info(f"the {self.config.schedule} schedule now spans {length}: lr {new:.2e} "
                     f"at step {step} (it was {old:.2e} where the run stopped)")

    def save(self, path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
        """Rank 0 builds the checkpoint and writes it atomically; a failed write (e.g. a full
        disk) keeps the previous file.

        Raises:
            RunError: the file cannot be written.
        """
        if not self.context.is_main:
            return
        try:
            save_checkpoint(path, self.build_checkpoint(with_state, metrics))
        except OSError as exc:
            raise RunError(f"cannot write the checkpoint ({exc.strerror or exc}); the "
                           "previous one is kept", path) from exc

    # -- checkpoints ------------------------------------------------------------------
    def _save_last(self, metrics: dict[str, Any]) -> None:
        self.save(self.last_path, True, metrics)
        self.saved_step = self.step

    def _interrupt(self, where: str) -> None:
        """Save where training stands (if not saved yet) and stop on the signal."""
        if self.progress.samples:  # mid-epoch (an epoch's end is saved already)
            self._save_last(self.history[-1] if self.history else {})
        message = f"interrupted at {where}; resume with: unetzoo train --resume {self.run_dir}"
        log.info(message)
        raise TrainingInterrupted(message, self.stop.signum or signal.SIGTERM)

    def _score(self, result: EvaluationResult | None) -> float | None:
        """The monitored validation value (higher is better: the loss is negated); None
        when validation did not run."""
        if result is None:
            return None
        if self.monitor == "loss":
            return None if result.loss is None else -result.loss
        if self.monitor in INSTANCE_MONITORS:  # the DSB way: a score per image, then the mean
            return result.summary["mean_over_images"][self.monitor]
        return result.summary["global"][self.monitor]

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> None:
        """Train until `config.epoch` epochs are done; `best.pt` and `epoch_last.pt` are
        written as training goes.

        Raises:
            TrainingError: a non-finite loss with `nan_policy` stop.
            TrainingInterrupted: SIGINT / SIGTERM (after saving where training stands).
        """
        self.callbacks.on_train_start(self)
        # the rule that stopped the last session: no room for one more step (at the
        # earlier sessions' step time) and the last validation
        if self.budget is not None and self.budget.exhausted(self._validation_estimate()):
            log.info("the time budget is spent: nothing left to train")
            self.budget_done = True
        with self.stop:
            while self.epoch < self.config.epoch and not self.budget_done:
                self._epoch(self.epoch + 1)
                if self.context.reduce_sum([float(self.stop.signum > 0)],
                                           self.runtime.device)[0]:
                    self._interrupt(f"the end of epoch {self.epoch} (step {self.step})")
        if not self.history:  # a budget spent before the first step: nothing was trained
            spent = f" ({self.budget.elapsed:.0f} s of setting up)" if self.budget else ""
            raise TrainingError(f"the time budget of {self.config.time_budget:g} min was spent "
                                f"before the first training step{spent}: nothing was trained; "
                                "give a larger --time-budget")
        if self.context.is_main and not self.best_path.exists():
            # no validation ever ran: the last weights are the best known
            self.save(self.best_path, False, self.history[-1])
        if self.budget is not None:
            log.info(self.budget.summary(self.step / self.steps_per_epoch, self.budget_done))

    def _want_validation(self, epoch: int) -> bool:
        """Validate after `epoch`? Every `val_every` epochs and after the last; under a
        time budget only while validation stays within its share (rank 0 decides)."""
        final = epoch == self.config.epoch or self.budget_done
        if not (epoch % self.config.val_every == 0 or final):
            return False
        if self.budget is None or not self.data.val:
            return True
        wanted = self.budget.should_validate(self._validation_estimate(), final)
        vote = float(wanted) if self.context.is_main else 0.0
        return self.context.reduce_sum([vote], self.runtime.device)[0] > 0

    def _epoch(self, epoch: int) -> None:
        if self.progress.lr is None:
            self.progress.lr = self.optimizer.param_groups[0]["lr"]
        self.train_epoch(epoch)
        trained = time.perf_counter()
        progress = self.progress
        if not progress.losses:
            raise TrainingError(f"every batch of epoch {epoch} had a non-finite loss; the last "
                                f"good checkpoint is kept in {self.run_dir / 'models'}")
        start = time.perf_counter()
        result = self.validate() if self._want_validation(epoch) else None
        validated = time.perf_counter() - start if result is not None else 0.0
        if result is not None and self.budget is not None:
            self.budget.observe_validation(validated)
        train_loss = progress.loss_sum / progress.losses
        row: dict[str, Any] = {"epoch": epoch, "lr": progress.lr, "train_loss": train_loss,
                               "seconds": progress.seconds + time.perf_counter() - start}
        if self.budget is not None:
            row["steps"] = self.step
            row["elapsed_min"] = self.budget.elapsed / 60
        if self.config.nan_policy == "skip":
            row["skipped"] = progress.skipped
        if result is not None:
            glob, mean = result.summary["global"], result.summary["mean_over_images"]
            row.update(val_loss=result.loss, val_dice=glob["dice"], val_iou=glob["iou"],
                       val_mdice=glob["mdice"], val_dice_per_image=mean["dice"],
                       val_iou_per_image=mean["iou"])
            if "map" in mean:  # objects: the DSB way, per image then the mean
                row.update(val_map=mean["map"], val_ap50=mean["ap50"])
        self.epoch, self.progress = epoch, EpochProgress()
        self.history.append(row)
        score = self._score(result)
        improved = score is not None and score > self.best_score
        if improved:
            self.best_score = score  # type: ignore[assignment]
            self.save(self.best_path, False, row)
        self._save_last(row)
        if self.context.is_main:
            write_history(self.run_dir, self.history)
        log.info(epoch_line(row, self.config, improved))
        self.callbacks.on_epoch_end(self, row, result)
        if self.budget is not None:  # the epoch's end, less its validation
            self.budget.observe_overhead(max(0.0, time.perf_counter() - trained - validated))
            self.budget.end_epoch()


def epoch_line(row: dict[str, Any], config: TrainConfig, improved: bool) -> str:
    """The console line of one epoch."""
    if config.time_budget:
        text = (f"epoch {row['epoch']:>3} ({row['elapsed_min']:.1f}/{config.time_budget:g} "
                f"min, step {row['steps']})  loss {row['train_loss']:.4f}")
    else:
        width = len(str(config.epoch))
        text = f"epoch {row['epoch']:>{width}}/{config.epoch}  loss {row['train_loss']:.4f}"
    if "val_dice" in row:
        text += (f"  val dice {row['val_dice']:.4f} iou {row['val_iou']:.4f} "
                 f"(per image {row['val_dice_per_image']:.4f}) loss {row['val_loss']:.4f}")
    if "val_map" in row:
        text += f"  objects AP@0.5 {row['val_ap50']:.4f} mAP {row['val_map']:.4f}"
    if row.get("skipped"):
        text += f"  skipped {row['skipped']}"
    text += f"  lr {row['lr']:.2e}  {row['seconds']:.1f}s"
    return text + ("  * best" if improved else "")
