"""TimeBudget decisions on a simulated clock: steps that fit, bounded validation, resume."""

from __future__ import annotations

import pytest

from unetzoo.engine.training.budget import SKIPPED_STEPS, BudgetUsage, TimeBudget
from unetzoo.errors import ConfigError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _steps(budget: TimeBudget, clock: Clock, count: int, seconds: float) -> None:
    for _ in range(count):
        clock.now += seconds
        budget.observe_step(seconds)


def test_steps_that_fit_follow_the_measured_step_time_not_the_warm_up():
    clock = Clock()
    budget = TimeBudget(1, clock=clock)  # 60 s
    assert budget.total_steps(0) == 1  # nothing measured yet
    _steps(budget, clock, SKIPPED_STEPS, 5.0)  # slow first steps (allocation, kernels)
    assert budget.step_time == 5.0  # provisional
    _steps(budget, clock, 10, 0.5)
    assert budget.step_time == pytest.approx(0.5)
    # 15 + 5 = 20 s spent, 40 s left, 2 s reserved for the last validation: 76 more steps
    assert budget.total_steps(13, reserve=2.0) == 13 + 76
    assert not budget.exhausted(reserve=2.0)
    _steps(budget, clock, 76, 0.5)
    assert budget.exhausted(reserve=2.0)
    assert budget.elapsed == pytest.approx(58.0)


def test_validation_stays_within_its_share_of_the_time_spent():
    clock = Clock()
    budget = TimeBudget(10, validation_share=0.1, clock=clock)
    _steps(budget, clock, 20, 1.0)  # 20 s spent
    # before a validation is measured, its cost is estimated from its pixels:
    # 4 steps' worth of pixels at a third of a training step's cost each
    estimate = budget.validation_estimate(val_pixels=4 * 8 * 96 * 96, step_pixels=8 * 96 * 96)
    assert estimate == pytest.approx(4 / 3)
    assert budget.should_validate(estimate, final=False)  # 1.3 s <= 10% of 20 s
    clock.now += 3.0
    budget.observe_validation(3.0)
    assert budget.validation_estimate(1, 1) == 3.0  # measured now
    assert not budget.should_validate(3.0, final=False)  # 6 s > 10% of 23 s
    _steps(budget, clock, 40, 1.0)  # 63 s spent: 6 s <= 6.3 s
    assert budget.should_validate(3.0, final=False)
    assert budget.should_validate(537.0, final=True)  # the last one runs when it fits
    assert not budget.should_validate(600.0, final=True)  # 537 s left + 60 s of slack


def test_a_resumed_run_has_what_is_left():
    clock = Clock()
    first = TimeBudget(2, clock=clock)
    _steps(first, clock, 50, 1.0)
    clock.now += 5.0
    first.observe_validation(5.0)
    clock.now += 5.0  # set-up, checkpoints
    state = first.state()
    assert state == {"minutes": 2, "training": 50.0, "validation": 5.0, "other": 5.0,
                     "steps": 50, "validations": 1}
    clock.now += 1000  # the process was stopped for a while: that does not count
    resumed = TimeBudget.from_state(2, state, clock=clock)
    assert resumed.elapsed == pytest.approx(60.0) and resumed.remaining == pytest.approx(60.0)
    assert resumed.step_time == 1.0  # the earlier sessions' mean, until measured again
    assert resumed.total_steps(50, reserve=5.0) == 50 + 55
    longer = TimeBudget.from_state(3, state, clock=clock)  # a larger budget given on resume
    assert longer.remaining == pytest.approx(120.0)


def test_summary_says_how_the_budget_was_spent():
    clock = Clock()
    budget = TimeBudget(1, clock=clock)
    clock.now += 6.0  # set-up
    _steps(budget, clock, 40, 1.0)
    clock.now += 6.0
    budget.observe_validation(6.0)
    line = budget.summary(epochs=4.0, stopped_by_budget=True)
    assert line == ("time budget 1 min: 0.87 min spent (stopped by the budget): training "
                    "0.67 min (40 steps, 4.0 epochs, 1.000 s/step), validation 0.10 min (1 runs, "
                    "12%), other 0.10 min")


def test_bad_budgets_are_refused():
    with pytest.raises(ConfigError, match="time-budget"):
        TimeBudget(0)
    with pytest.raises(ConfigError, match="share"):
        TimeBudget(1, BudgetUsage(), validation_share=1.5)
