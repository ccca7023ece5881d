"""What the trainer writes and reads back: checkpoints (with the full training state in
`models/epoch_last.pt`), exact resume, and the history (`metrics.csv`, `curves.png`).

The training state holds everything to continue exactly where training stood, mid-epoch
included: weights, optimizer, schedule, scaler, RNG states, history and the position in the
epoch (whose sample order and augmentation are pure functions of the seed, the epoch and the
sample index).
"""

from __future__ import annotations

import csv
import io
import logging
import random
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...artefacts.checkpoint import Checkpoint, save_checkpoint
from ...artefacts.runs import NO_TRAINING_STATE
from ...errors import CheckpointError, RunError
from ...fileio import atomic_write_text
from ...viz import save_curves
from .budget import TimeBudget

if TYPE_CHECKING:
    from .trainer import Trainer

log = logging.getLogger("unetzoo")


def training_state(trainer: Trainer) -> dict[str, Any]:
    """The state `restore` needs to continue `trainer` exactly (plain values and tensors,
    loadable with `weights_only=True`)."""
    return {
        "epoch": trainer.epoch, "step": trainer.step, "best_score": trainer.best_score,
        "progress": asdict(trainer.progress), "global_batch": trainer.global_batch,
        "world_size": trainer.context.world_size,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "scaler": trainer.step_fn.scaler.state_dict(),
        "history": trainer.history,
        **({"budget": trainer.budget.state()} if trainer.budget is not None else {}),
        **({"model": _cpu(trainer.model), "ema_averaged": int(trainer.ema.n_averaged)}
           if trainer.ema is not None else {}),
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64))},
    }


def build_checkpoint(trainer: Trainer, with_state: bool, metrics: dict[str, Any]) -> Checkpoint:
    """The checkpoint of the trainer's model now: weights, model spec, task, classes,
    preprocessing, config and `metrics`, plus the training state when `with_state`. The
    weights are those to use (the moving average with `ema`; the trained weights are then
    in the training state)."""
    info = trainer.data.info
    return Checkpoint(
        model_spec=trainer.model.unetzoo_spec, task=info.task, class_names=info.class_names,
        preprocessing=trainer.data.preprocessing,
        state_dict=_cpu(trainer.inference_model),
        config=trainer.config.to_dict(), metrics=metrics,
        train_state=training_state(trainer) if with_state else None,
        class_colors=info.class_colors, mask_reading=trainer.data.reading.to_dict())


def _cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def restore(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """Continue `trainer` from `checkpoint`'s weights, optimizer, schedule, position,
    history and RNG states.

    Raises:
        CheckpointError: the checkpoint holds no training state (e.g. `best.pt`).
    """
    from .trainer import EpochProgress

    state = checkpoint.train_state
    if not state:
        raise CheckpointError(NO_TRAINING_STATE)
    trainer.model.load_state_dict(state.get("model", checkpoint.state_dict))
    if trainer.ema is not None:
        trainer.ema.module.load_state_dict(checkpoint.state_dict)
        trainer.ema.n_averaged.fill_(state.get("ema_averaged", 0))
    if trainer.budget is not None:
        trainer.budget = TimeBudget.from_state(trainer.config.time_budget,  # type: ignore[arg-type]
                                               state.get("budget"))
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.step_fn.scaler.load_state_dict(state["scaler"])
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    trainer.saved_step = trainer.step
    trainer.progress = EpochProgress(**state.get("progress", {}))
    if trainer.progress.samples and state.get("global_batch") != trainer.global_batch:
        log.warning(f"the global batch changed from {state.get('global_batch')} to "
                    f"{trainer.global_batch}: epoch {trainer.epoch + 1} goes on from the next "
                    "whole batch, not exactly where it stopped")
    trainer.best_score, trainer.history = state["best_score"], list(state["history"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], state["rng"]["numpy"].numpy().astype(np.uint32),
                         *np_state[2:]))


def save(trainer: Trainer, path: Path, with_state: bool, metrics: dict[str, Any]) -> None:
    """Rank 0 builds the checkpoint and writes it atomically; a failed write (e.g. a full
    disk) keeps the previous file.

    Raises:
        RunError: the file cannot be written.
    """
    if not trainer.context.is_main:
        return
    try:
        save_checkpoint(path, build_checkpoint(trainer, with_state, metrics))
    except OSError as exc:
        raise RunError(f"cannot write the checkpoint ({exc.strerror or exc}); the "
                       "previous one is kept", path) from exc


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """`metrics.csv` (one row per epoch, every key seen as a column) and `curves.png`."""
    keys: list[str] = []
    for row in history:
        keys += [k for k in row if k not in keys]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(run_dir / "metrics.csv", out.getvalue())
    save_curves(run_dir / "curves.png", history)
