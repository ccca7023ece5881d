"""One exception family: every error a user can cause carries the path or option concerned.

Every class here derives from `UnetzooError`; the CLI prints such an error as one line and
exits with status 2. Code in every layer (nn/, models/, metrics, losses, data/, engine/)
raises these classes, never bare `ValueError` / `TypeError`, for a problem a user can cause.
"""

from __future__ import annotations

import re
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


# what another process's error looks like once PyTorch re-raises it in this one (a
# DataLoader worker: "Caught DataError in DataLoader worker process 0.\nOriginal Traceback
# (most recent call last): ...\nunetzoo.errors.DataError: a.png: ..."), and its last line
_WRAPPED = "Original Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?(?P<name>[A-Za-z_]\w*(?:Error|Exception|"
                             r"Interrupt|Exit|Warning)?): (?P<message>.*)$")


def one_line(error: BaseException) -> str:
    """The one line a user sees for `error`: its message, or, for an error another process
    raised and this one re-raises with the other's traceback in the text (data-loader
    workers), that error's own message; multi-line texts of libraries (OpenVINO, torch)
    give their first informative line."""
    text = str(error).strip()
    if _WRAPPED in text:
        for line in reversed(text.splitlines()):
            match = _EXCEPTION_LINE.match(line.strip())
            if match:
                return match["message"].strip() or match["name"]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    first = lines[0]
    if len(lines) > 1 and (first.endswith(":") or first.startswith("Exception from ")):
        detail = next((ln for ln in lines[1:] if not ln.startswith(("Exception from ", "File ",
                                                                    "Traceback"))), None)
        if detail:
            return f"{first.rstrip(':')}: {detail}"
    return first
