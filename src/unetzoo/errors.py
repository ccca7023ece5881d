"""One exception family: every error a user can cause carries the path or option concerned.

Every class here derives from `UnetzooError`; the CLI prints such an error as one line and
exits with status 2. Code in every layer (nn/, models/, metrics, losses, data/, engine/)
raises these classes, never bare `ValueError` / `TypeError`, for a problem a user can cause.
"""

from __future__ import annotations

from pathlib import Path


class UnetzooError(Exception):
    """Base of all errors unetzoo raises for bad input, config or state.

    Args:
        message: what is wrong, in one line, naming the option or value concerned.
        path: the file or folder concerned, if any; the message is prefixed with it.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{path}: {message}" if path is not None else message)


class ConfigError(UnetzooError):
    """An option or config file value is missing, unknown or out of range."""


class DataError(UnetzooError):
    """A dataset, image or mask cannot be used as it is."""


class MaskValueError(DataError):
    """A mask holds a value the dataset's reading cannot hold (a class never met in the
    sample, a second foreground level): training or evaluation stops naming the file; it is
    never skipped like an unreadable file."""


class CheckpointError(UnetzooError):
    """A checkpoint is missing, unreadable or not a unetzoo checkpoint."""


class ModelError(UnetzooError):
    """An unknown model name, invalid model arguments, or an input a model cannot take."""


class RunError(UnetzooError):
    """A run folder or output location cannot be used."""


class TrainingError(UnetzooError):
    """Training cannot go on (e.g. a non-finite loss)."""


class ExportError(UnetzooError):
    """An exported graph does not reproduce the model, or the model cannot be exported."""


class PeerError(UnetzooError):
    """Another process of a distributed group failed; its own message says why."""


class MetricError(UnetzooError):
    """Metrics were asked for where there is nothing to measure (e.g. no image evaluated)."""
