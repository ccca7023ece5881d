"""The report's part in training: the machine line at the start, `report.html` at the end."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..engine.training.trainer import Callback
from .machine import machine_line

if TYPE_CHECKING:
    from ..engine.training.trainer import Trainer, TrainResult

log = logging.getLogger("unetzoo")


class ReportCallback(Callback):
    """Logs what machine trains (a `  machine:` line of the run's header in `train.log`,
    which the report shows) and, with `config.report`, writes `RUN/report.html` after the
    test evaluation. A report that fails logs one warning line; the run is never lost."""

    def on_train_start(self, trainer: Trainer) -> None:
        log.info(f"  machine: {machine_line()}")

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        if not trainer.config.report:
            return
        from .page import write_page_safely, write_report

        write_page_safely("report.html", lambda: write_report(result.run_dir))
