"""The Python API's entry points that join the engine with the report, above both: what
`unetzoo.train` is (the engine's `train` plus the report callback that writes
`RUN/report.html`; `report=False` in the config turns the page off)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .config import TrainConfig
from .engine.training.setup import train as train_engine
from .engine.training.trainer import Callback, TrainResult
from .report.callback import ReportCallback

__all__ = ["train"]


def train(config: TrainConfig | None = None, *, given: dict[str, Any] | None = None,
          callbacks: list[Callback] | None = None, explicit: Collection[str] | None = None,
          **options: Any) -> TrainResult:
    """Train a model and evaluate it on the test split; `report.html` is written into the
    run folder at the end (with `config.report`). The arguments, results and errors are
    those of `unetzoo.engine.training.setup.train`, which this calls with the report's
    callback added.

    Example:
        >>> result = train(dataset="data/", csvfile="split.csv", model="unet",
        ...                loss="bce+dice", epoch=50)            # doctest: +SKIP
        >>> result.run_dir / "report.html"                       # doctest: +SKIP
        PosixPath('runs/unet-20261130-120000/report.html')
    """
    return train_engine(config, given=given, callbacks=[*(callbacks or []), ReportCallback()],
                        explicit=explicit, **options)
