"""Graceful stops: SIGINT (Ctrl-C) and SIGTERM (preemption) finish the current step, then
training writes its checkpoint and exits with 128 + the signal number (130, 143)."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REPEAT_GRACE = 1.0  # seconds: torchrun forwards the Ctrl-C its workers also got themselves


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after saving its state; `exit_code` is 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopRequest:
    """While entered (in the main thread), SIGINT and SIGTERM only set `signum`; the
    training loop polls it. The same signal again, a second or more later, stops at once
    (KeyboardInterrupt)."""

    def __init__(self, announce: bool = True) -> None:
        self.signum = 0
        self.announce = announce
        self._first = 0.0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in STOP_SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.signum:
            if now - self._first > REPEAT_GRACE:
                raise KeyboardInterrupt
            return
        self.signum, self._first = signum, now
        if self.announce:  # os.write: no locks taken inside a signal handler
            os.write(2, f"\n{signal.Signals(signum).name}: stopping after the current step "
                        "and saving a checkpoint (send it again to stop at once)\n".encode())


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: a Ctrl-C (or a SIGTERM sent to the process group)
    reaches the workers too; they keep serving batches until the main process has finished
    its step, and exit with it (PyTorch's workers watch their parent)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
