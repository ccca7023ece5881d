"""A wall-clock budget for a training run: how many steps fit, when to validate, when to stop.

The trainer reports what it measures (optimizer steps and their time, validations and
theirs); `TimeBudget` turns that into decisions:

- the number of optimizer steps that fit in what is left, from the measured step time
  (a running average that leaves out one-off costs: the first steps after a start or
  resume, which pay for memory allocation, kernel selection and compilation, and each
  epoch's first step, which starts the data-loading workers), re-estimated at every step
  once measured, so that the learning-rate schedule (`schedules.BudgetSchedule`: laid once,
  then only stretched or shrunk) ends at the budget's end;
- validation counts against the budget and is bounded: a validation runs at an epoch end
  only while all validation time stays within `validation_share` of the time spent, and
  time for the last validation is reserved, so the run ends on a validated best model;
- stop when the next step would run past the budget (less that reserve).

Everything is in seconds on a monotonic clock (injectable for tests); `spent` carries the
time of earlier sessions of a resumed run, so a resumed run has what is left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ...errors import ConfigError

SKIPPED_STEPS = 3  # steps after each (re)start left out of the step-time average
FORWARD_SHARE = 1 / 3  # inference cost of a step's pixels, relative to a training step


@dataclass
class BudgetUsage:
    """What the budget was spent on so far (seconds), saved in checkpoints."""

    training: float = 0.0
    validation: float = 0.0
    other: float = 0.0  # set-up, checkpoints, data loading outside steps
    steps: int = 0
    validations: int = 0


class TimeBudget:
    """Decisions for a run limited to `minutes` of wall-clock time.

    Args:
        minutes: the whole budget, earlier sessions of a resumed run included.
        usage: what earlier sessions spent (from the checkpoint), else nothing.
        validation_share: the largest fraction of the time spent that validation may take.
        clock: seconds on a monotonic clock.
        steps_per_epoch: optimizer steps per epoch: an epoch's own costs outside its steps
            and validation (checkpoints, starting the data-loading workers, logs), measured
            per epoch (`observe_overhead`, `end_epoch`), are spread over its steps when the
            steps that fit are counted; None leaves them out.

    Raises:
        ConfigError: for a budget that is not positive or a share outside (0, 1).
    """

    def __init__(self, minutes: float, usage: BudgetUsage | None = None,
                 validation_share: float = 0.15,
                 clock: Callable[[], float] = time.monotonic,
                 steps_per_epoch: int | None = None) -> None:
        if not minutes > 0:
            raise ConfigError(f"--time-budget must be > 0 minutes, got {minutes}")
        if not 0 < validation_share < 1:
            raise ConfigError(f"the validation share must be in (0, 1), got {validation_share}")
        self.seconds = minutes * 60
        self.usage = usage or BudgetUsage()
        self.validation_share = validation_share
        self.clock = clock
        self.started = clock()
        self._before = self.usage.training + self.usage.validation + self.usage.other
        # earlier sessions' mean step time stands in until this session's is measured
        self._step_time: float | None = (
            self.usage.training / self.usage.steps if self.usage.steps else None)
        self._provisional = True
        self._timed_steps = 0
        self._session_steps = 0
        self._validation_time: float | None = (
            self.usage.validation / self.usage.validations if self.usage.validations else None)
        self.steps_per_epoch = steps_per_epoch
        self._overhead: float | None = None  # seconds per epoch outside steps and validation
        self._epoch_overhead = 0.0  # of the epoch under way
        self._epochs = 0

    # -- what has been spent ----------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds spent, earlier sessions included."""
        return self._before + self.clock() - self.started

    @property
    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed)

    @property
    def step_time(self) -> float | None:
        """Measured seconds per optimizer step (None until measured)."""
        return self._step_time

    @property
    def measured(self) -> bool:
        """Whether the step time comes from steady steps (of this session, or of earlier
        sessions of a resumed run), not from the first steps' stand-in."""
        return self._step_time is not None and (
            not self._provisional or self.usage.steps > self._session_steps)

    def observe_step(self, seconds: float, steady: bool = True) -> None:
        """One optimizer step took `seconds` (its data loading included). The first
        SKIPPED_STEPS of a session, and steps that are not `steady` (an epoch's first,
        which starts the data-loading workers), count as spent but only stand in for the
        step time while nothing better is known."""
        self.usage.training += seconds
        self.usage.steps += 1
        self._session_steps += 1
        if not steady and not self._provisional:  # the excess is the epoch's own cost
            self._epoch_overhead += max(0.0, seconds - self._step_time)  # type: ignore[operator]
        if self._session_steps <= SKIPPED_STEPS or not steady:
            if self._step_time is None:
                self._step_time, self._provisional = seconds, True
            return
        self._timed_steps += 1
        if self._provisional:
            self._step_time, self._provisional = seconds, False
        else:  # a running mean that forgets slowly, as the machine's load changes
            weight = max(1 / self._timed_steps, 0.02)
            self._step_time += weight * (seconds - self._step_time)  # type: ignore[operator]

    def observe_overhead(self, seconds: float) -> None:
        """The epoch under way spent `seconds` outside its steps and validation (a
        checkpoint, its end's bookkeeping)."""
        self._epoch_overhead += seconds

    def end_epoch(self) -> None:
        """An epoch ended: its own costs join the per-epoch mean (one that forgets slowly).
        The first epoch of a session (first checkpoint files, loggers starting) only stands
        in until a second one ends."""
        self._epochs += 1
        if self._epochs <= 2:
            self._overhead = self._epoch_overhead
        else:
            weight = max(1 / (self._epochs - 1), 0.1)
            self._overhead += weight * (self._epoch_overhead - self._overhead)  # type: ignore[operator]
        self._epoch_overhead = 0.0

    def observe_validation(self, seconds: float) -> None:
        self.usage.validation += seconds
        self.usage.validations += 1
        self._validation_time = self.usage.validation / self.usage.validations

    def sync_other(self) -> None:
        """Count the time not spent in steps or validation as `other`."""
        self.usage.other = max(0.0, self.elapsed - self.usage.training - self.usage.validation)

    # -- decisions --------------------------------------------------------------------
    def validation_estimate(self, val_pixels: int, step_pixels: int) -> float:
        """Seconds one validation takes: measured, else estimated from the pixels it runs
        (`val_pixels`) against those of a training step (`step_pixels`)."""
        if self._validation_time is not None:
            return self._validation_time
        if self._step_time is None or step_pixels <= 0:
            return 0.0
        return self._step_time * FORWARD_SHARE * val_pixels / step_pixels

    def total_steps(self, step: int, reserve: float = 0.0) -> int:
        """Optimizer steps the whole run will take, `step` already taken: those that fit
        in the time left less `reserve` (the last validation), at the measured step time
        and with each epoch's own costs (once measured) spread over its steps."""
        if self._step_time is None:
            return step + 1
        left = max(0.0, self.remaining - reserve)
        per_step = self._step_time
        if self._overhead is not None and self.steps_per_epoch:
            per_step += self._overhead / self.steps_per_epoch
        return step + max(0, math.floor(left / per_step))

    def should_validate(self, estimate: float, final: bool) -> bool:
        """Validate now? At the end when it fits in what is left (time for it is reserved
        as the steps are counted; a tenth of the budget is the slack for a poor estimate);
        before, while all validation time, this one included, stays within
        `validation_share` of the time spent."""
        if final:
            return estimate <= self.remaining + 0.1 * self.seconds
        return self.usage.validation + estimate <= self.validation_share * self.elapsed

    def exhausted(self, reserve: float = 0.0) -> bool:
        """True when another step (at the measured step time) would end past the budget
        less `reserve`."""
        step = self._step_time or 0.0
        return self.elapsed + step + reserve > self.seconds

    # -- reporting --------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self.sync_other()
        return {"minutes": self.seconds / 60, **asdict(self.usage)}

    @classmethod
    def from_state(cls, minutes: float, state: dict[str, Any] | None, **kwargs: Any
                   ) -> TimeBudget:
        """A budget of `minutes` that continues a checkpoint's `state` (what was spent)."""
        usage = BudgetUsage(**{k: v for k, v in (state or {}).items()
                               if k in BudgetUsage.__dataclass_fields__})
        return cls(minutes, usage, **kwargs)

    def summary(self, epochs: float, stopped_by_budget: bool) -> str:
        """One line saying how the budget was spent."""
        self.sync_other()
        u = self.usage
        spent = max(self.elapsed, 1e-9)
        per_step = f", {u.training / u.steps:.3f} s/step" if u.steps else ""
        why = "stopped by the budget" if stopped_by_budget else "finished before the budget"
        return (f"time budget {self.seconds / 60:g} min: {spent / 60:.2f} min spent "
                f"({why}): training {u.training / 60:.2f} min ({u.steps} steps, "
                f"{epochs:.1f} epochs{per_step}), validation {u.validation / 60:.2f} min "
                f"({u.validations} runs, {u.validation / spent:.0%}), other "
                f"{u.other / 60:.2f} min")
