"""Stop requests: a signal during training is noted, not fatal; a late repeat aborts;
`unetzoo train` stopped by a signal exits with 128 + the signal."""

from __future__ import annotations

import os
import signal
import time

import pytest

from unetzoo.engine.training import preemption
from unetzoo.engine.training.preemption import StopRequest


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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interruption_exit_codes(tmp_path, monkeypatch, capsys, signum: int) -> None:
    """`unetzoo train` stopped by a signal during its first step exits with 128 + the
    signal (143 for SIGTERM, 130 for SIGINT) after saving that step."""
    from tests.helpers import write_pairs
    from unetzoo.artefacts.references import load_checkpoint
    from unetzoo.cli import main
    from unetzoo.engine.training.trainer import Trainer

    original = Trainer.train_step

    def signalled_step(self, batch, epoch, index):
        if self.step == 0:  # the signal arrives during the first step
            # only where training handles it: a SIGTERM nobody handles ends pytest itself
            assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler)
            os.kill(os.getpid(), signum)
        return original(self, batch, epoch, index)

    monkeypatch.setattr(Trainer, "train_step", signalled_step)
    before = signal.getsignal(signum)
    data, run = write_pairs(tmp_path / "data", count=8, size=32), tmp_path / "run"
    try:
        code = main(["train", str(data), "--out", str(run), "--model", "unet", "--preset",
                     "tiny", "--batch", "2", "--img-size", "32", "--epoch", "2", "--workers",
                     "0", "--logger", "none", "--no-report", "--no-progress", "--device", "cpu",
                     "--precision", "fp32"])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert code == 128 + signum == {signal.SIGTERM: 143, signal.SIGINT: 130}[signum]
    assert f"interrupted at epoch 1 step 1; resume with: unetzoo train --resume {run}" in out
    assert err == ""
    assert load_checkpoint(run / "models" / "epoch_last.pt").train_state["step"] == 1
    assert signal.getsignal(signum) is before  # the handler given back
