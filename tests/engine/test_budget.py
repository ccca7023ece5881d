"""TimeBudget decisions on a simulated clock: steps that fit, bounded validation, resume."""

from __future__ import annotations

import itertools
import math

import pytest

from unetzoo.engine.training.budget import SKIPPED_STEPS, BudgetUsage, TimeBudget
from unetzoo.errors import ConfigError
from unetzoo.schedules import BudgetSchedule


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


def _budget_run(minutes: float, steps_per_epoch: int, step_seconds, validation: float,
                schedule: str = "cosine", warmup_epochs: int = 1) -> tuple[list[float], int]:
    """The learning-rate factors of a simulated run under a budget, as the trainer takes
    its decisions (`Trainer.train_step`, `_want_validation`): `step_seconds(epoch)` is the
    step time of an epoch, `validation` what a validation costs. Returns the factor used at
    each step taken and the warm-up's last step."""
    clock = Clock()
    budget = TimeBudget(minutes, clock=clock)
    factor = BudgetSchedule(schedule, warmup_epochs * steps_per_epoch, steps_per_epoch)
    lrs, step, epoch = [factor(0)], 0, 0
    estimate = validation / 3  # what the trainer estimates before measuring one
    while True:
        epoch += 1
        for index in range(steps_per_epoch):
            clock.now += step_seconds(epoch)
            budget.observe_step(step_seconds(epoch), steady=index > 0)
            reserve = budget.validation_estimate(1, 1) if budget.usage.validations \
                else estimate
            if budget.measured:
                factor.set_total(budget.total_steps(step + 1, reserve))
            step += 1
            if budget.exhausted(reserve):
                return lrs, factor.warmup or 0
            lrs.append(factor(step))
        reserve = budget.validation_estimate(1, 1) if budget.usage.validations else estimate
        if budget.should_validate(reserve, final=False):
            clock.now += validation
            budget.observe_validation(validation)


def test_the_learning_rate_follows_one_curve_when_the_first_epoch_is_slow():
    # the polyp run of issue 22: the first epoch (filling the sample cache) takes half of a
    # 10-minute budget at 3 s per step, later steps take 1 s; a validation 20 s
    lrs, warmup = _budget_run(10, 100, lambda epoch: 3.0 if epoch == 1 else 1.0, 20.0)
    steps = len(lrs)
    assert 300 < steps < 340 and 5 < warmup < 50  # 100 slow steps, the rest less validations
    decay = lrs[warmup:]
    drops = [a - b for a, b in itertools.pairwise(decay)]
    assert min(drops) >= 0  # never rises after the warm-up
    # a cosine laid over the steps actually taken changes by at most pi / 2 per step of
    # its length; the curve's steepest step is at most twice that
    own = math.pi / 2 / (steps - warmup)
    assert max(drops) < 2 * own
    assert lrs[-1] < 0.01  # the decay ends at the budget's end...
    assert min(lrs[warmup: -steps // 50]) > 0.002  # ...and not before (the floor is 0)
    mid = lrs[100]  # the end of the slow first epoch: on the curve, not at the floor
    assert 0.3 < mid < 0.8


def test_the_learning_rate_bends_smoothly_when_the_step_time_swings():
    # step times swinging between epochs (a shared machine): 1 s, 2 s, 1 s, 0.5 s, ...
    times = {1: 1.0, 2: 2.0, 3: 1.0, 4: 0.5}
    lrs, warmup = _budget_run(5, 50, lambda epoch: times.get(epoch, 1.0), 5.0,
                              warmup_epochs=0)
    assert warmup == SKIPPED_STEPS + 1  # laid once the step time is measured
    decay = lrs[warmup:]
    drops = [a - b for a, b in itertools.pairwise(decay)]
    assert min(drops) >= 0 and max(drops) < 2 * math.pi / 2 / (len(lrs) - warmup)
    assert lrs[-1] < 0.01


def test_a_budget_schedule_warms_up_then_decays_and_is_saved_as_plain_values():
    factor = BudgetSchedule("cosine", 10, 5)
    assert [factor(s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])  # not laid yet
    factor.set_total(200)  # laid at the next step: the warm-up ends at 10 (a tenth: 20)
    assert factor(3) == pytest.approx(0.3 + 0.7 / 8) and factor.warmup == 10  # on to 1 at 10
    assert factor(10) == 1.0 and factor(9) == 1.0  # computed in order; 9 is behind
    assert 0.99 < factor(11) < 1.0
    assert all(isinstance(v, (int, float, str, type(None))) for v in vars(factor).values())
    poly = BudgetSchedule("poly", 0, 5)
    poly.set_total(10)
    assert poly(0) == 1.0 and 0 < poly(9) == pytest.approx((1 / 18) ** 0.9)  # near the floor
    assert 0 < poly(12) == pytest.approx((1 / 18 / 8) ** 0.9)  # past the estimated end:
    # halving the distance to the floor at each step, never at it
    stretched = BudgetSchedule("cosine", 0, 5)
    stretched.set_total(10)
    assert stretched(9) < 0.01 and stretched.progress == pytest.approx(17 / 18)
    stretched.stretch(2.0)  # twice the budget on resume: the curve of a run twice as long
    assert stretched.progress == pytest.approx(17 / 36)
    assert stretched.value == pytest.approx(0.5 * (1 + math.cos(math.pi * 17 / 36)))
