"""Stop requests: a signal during training is noted, not fatal; a late repeat aborts."""

from __future__ import annotations

import os
import signal
import time

import pytest

from unetzoo.engine.training import preemption
from unetzoo.engine.training.preemption import StopRequest, TrainingInterrupted


def test_signals_are_noted_and_handlers_restored(monkeypatch) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # torchrun forwarding the same Ctrl-C: ignored
        assert stop.signum == signal.SIGTERM
        monkeypatch.setattr(preemption, "REPEAT_GRACE", 0.0)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_interruption_exit_codes() -> None:
    assert TrainingInterrupted("x", signal.SIGINT).exit_code == 130
    assert TrainingInterrupted("x", signal.SIGTERM).exit_code == 143
    assert issubclass(TrainingInterrupted, KeyboardInterrupt)
