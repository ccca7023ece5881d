"""Callbacks: what features outside the training loop (loggers, reports, budgets) hook into.

The trainer calls each callback at three points. A callback with `rank_zero_only` (the
default) runs in the process that writes (rank 0) only; one that must take part in every
process (for example to agree on when to stop) sets it to False.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..evaluate import EvaluationResult
    from .setup import TrainResult
    from .trainer import Trainer


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
