"""One exception family: every error a user can cause carries the path and what is wrong."""

from __future__ import annotations

from pathlib import Path


class UnetzooError(Exception):
    """Base of all errors unetzoo raises for bad input, config or state."""

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
    """An unknown model name or invalid model arguments."""


class RunError(UnetzooError):
    """A run folder or output location cannot be used."""
