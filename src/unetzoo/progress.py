"""Progress reporting: every loop that shows progress goes through `progress_bar`.

On a terminal it is a tqdm bar. When the output is not a terminal (a log file, a pipe, a
CI job), bars would draw carriage returns and escape codes into the file: no bar is drawn,
and a loop given a `summary` writes one line when it ends instead (e.g. one line per
evaluation; the trainer logs one line per epoch itself).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

log = logging.getLogger("unetzoo")
T = TypeVar("T")


def on_terminal() -> bool:
    """Whether progress bars can be drawn: stderr (where tqdm draws) is a terminal."""
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


class _Lines:
    """The loop without a bar; with a `summary`, one line when the loop ends."""

    def __init__(self, iterable: Iterable[T], summary: str | None, unit: str) -> None:
        self.iterable = iterable
        self.summary = summary
        self.unit = unit

    def __iter__(self) -> Iterator[Any]:
        start, count = time.perf_counter(), 0
        for item in self.iterable:
            count += 1
            yield item
        if self.summary:
            plural = "" if count == 1 else "s"
            log.info(f"{self.summary}: {count} {self.unit}{plural} in "
                     f"{time.perf_counter() - start:.1f} s")

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to update without a bar (tqdm's method, for callers that use it)."""


def progress_bar(iterable: Iterable[T], desc: str, unit: str, *, enabled: bool = True,
                 total: int | None = None, initial: int = 0, leave: bool = False,
                 summary: bool = False) -> Any:
    """`iterable` with progress shown as the output allows.

    Args:
        iterable: the loop's items.
        desc: what the loop does, e.g. "evaluate".
        unit: what one item is, e.g. "img".
        enabled: False shows nothing (e.g. --no-progress).
        total, initial, leave: as tqdm's (a resumed loop starts at `initial` of `total`).
        summary: without a terminal, log one line "<desc>: N <unit>s in S s" at the end.

    Returns:
        A tqdm bar on a terminal, else an iterable with tqdm's `set_postfix` (a no-op).
    """
    if enabled and on_terminal():
        return tqdm(iterable, desc=desc, unit=unit, total=total, initial=initial,
                    leave=leave)
    return _Lines(iterable, desc if enabled and summary else None, unit)
