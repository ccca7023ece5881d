"""`unetzoo ARGS` as the command line runs it, with faults injected for the tests (also as a
torchrun worker script). unetzoo itself never imports this file.

Environment:
  HARNESS_MARKER        file touched when a pause begins (the test waits for it)
  HARNESS_PAUSE_STEP=k  after optimizer step k, touch the marker and wait (up to 60 s) for
                        a signal to stop (the test sends SIGKILL, SIGTERM or SIGINT)
  HARNESS_PAUSE_SAVE=n  in the n-th write of epoch_last.pt, write half the file, touch the marker
                        and sleep (the test kills the process mid-save)
  HARNESS_CRASH=r:k     on torchrun's first attempt, rank r dies (exit 1) after step k
  HARNESS_WRITES=path   append "rank file" for every file unetzoo writes
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from unetzoo import fileio, viz
from unetzoo.artefacts import checkpoint
from unetzoo.cli import main
from unetzoo.data import writers
from unetzoo.engine.inference import predict
from unetzoo.engine.training import trainer

ENV = os.environ
RANK = ENV.get("RANK", "0")


def touch_marker() -> None:
    Path(ENV["HARNESS_MARKER"]).write_text(str(os.getpid()))


def patch_step() -> None:
    original = trainer.Trainer.train_step
    pause = int(ENV.get("HARNESS_PAUSE_STEP", 0))
    crash_rank, _, crash_step = ENV.get("HARNESS_CRASH", "-1:0").partition(":")
    first_attempt = ENV.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"

    def train_step(self, batch, epoch, index):
        stop = original(self, batch, epoch, index)
        if self.step == pause and not stop:
            touch_marker()
            deadline = time.monotonic() + 60
            while not self.stop.signum and time.monotonic() < deadline:
                time.sleep(0.02)
        if first_attempt and crash_rank == RANK and self.step == int(crash_step):
            os._exit(1)
        return stop

    trainer.Trainer.train_step = train_step


def patch_writes() -> None:
    original = fileio.atomic_write
    pause = int(ENV.get("HARNESS_PAUSE_SAVE", 0))
    log = ENV.get("HARNESS_WRITES")
    saves = 0

    def atomic_write(path, write):
        nonlocal saves
        if log:
            with open(log, "a") as fh:
                fh.write(f"{RANK} {path}\n")
        if Path(path).name == "epoch_last.pt":
            saves += 1
            if saves == pause:
                def half_then_hang(fh):
                    data = bytearray()
                    write(type("Sink", (), {"write": lambda _, b: data.extend(b)})())
                    fh.write(data[: len(data) // 2])
                    fh.flush()
                    touch_marker()
                    time.sleep(60)
                return original(path, half_then_hang)
        return original(path, write)

    for module in (fileio, checkpoint, viz, predict, writers):  # each bound it at import
        module.atomic_write = atomic_write


if __name__ == "__main__":
    patch_step()
    patch_writes()
    sys.exit(main(sys.argv[1:]))
