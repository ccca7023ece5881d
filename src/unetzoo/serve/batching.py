"""Gather the model calls of concurrent requests into one call per input size.

Each request runs the whole `Predictor` path (`labels`: normalisation, tiling, TTA,
post-processing) in a worker thread of its own, on its own shallow copy of the model's
predictor; the copies share one `Gatherer` in place of the model. A call of the gatherer
with a `B x C x h x w` batch waits until the model is free and, while other requests are at
work (`working()`) and have not joined it, up to `wait_s` after it arrived for their calls of
the same `C x h x w`; then it runs them as one `concatenate -> model -> split` and hands each
caller its own rows back. Only the model call is shared, so a request's labels come from
exactly the code `unetzoo predict` runs; a request alone never waits.

Whether gathering pays depends on the backend; `benchmarks/serve_load.py --batching`
measures it. On a 2-core CPU (the shipped `nuclei` model, 256 x 256 inputs: every tile of a
larger dsb2018 image is one too) OpenVINO ran 8 images as one batch 1.45 times as fast per
image as one at a time, and torch 5.9 times, with outputs equal to the last bit. Under the
load test (8 clients, mixed sizes, a machine shared with other work) four requests at a
time, their calls gathered into 4.9 rows on average, served 9 to 12 % more images per
second than one at a time in two runs, for the same CPU time per image or 6 % less. The
server therefore runs 4 requests of a model at a time on a CPU and 8 on a GPU
(`--max-batch`; 1 turns gathering off).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class _Call:
    batch: torch.Tensor
    arrived: float
    out: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False


@dataclass
class _Group:
    calls: list[_Call] = field(default_factory=list)
    rows: int = 0


class Gatherer:
    """A callable standing in for a model (`B x C x h x w -> B x K x h x w`) that runs the
    calls of several threads with the same input shape as one batch.

    Args:
        module: the model or graph (called by one thread at a time).
        max_rows: the most rows (images or tiles) gathered into one call; a caller's batch
            is never split, so a call may hold more when one caller brings more.
        wait_s: how long a call waits after it arrived for others of its shape (seconds).

    Attributes:
        calls: model calls made; rows: rows run (rows / calls is the mean batch).

    Example:
        >>> gatherer = Gatherer(model, max_rows=8, wait_s=0.005)
        >>> with gatherer.working():          # in each request's thread
        ...     logits = gatherer(batch)      # B x K x h x w, this caller's rows
    """

    def __init__(self, module: Callable[[torch.Tensor], Any], max_rows: int,
                 wait_s: float) -> None:
        self.module = module
        self.max_rows = max(1, max_rows)
        self.wait_s = max(0.0, wait_s)
        self._cond = threading.Condition()
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._model = threading.Lock()  # one model call at a time
        self._working = 0  # requests at work that may call
        self.calls = 0
        self.rows = 0

    @contextmanager
    def working(self) -> Iterator[None]:
        """Mark the calling thread's request as at work (it may call the gatherer): calls
        wait for it to join only while it is."""
        with self._cond:
            self._working += 1
        try:
            yield
        finally:
            with self._cond:
                self._working -= 1
                self._cond.notify_all()

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        key = (tuple(batch.shape[1:]), batch.dtype, batch.device)
        call = _Call(batch, time.monotonic())
        with self._cond:
            group = self._groups.get(key)
            if group is not None:  # a leader is waiting: join it
                group.calls.append(call)
                group.rows += len(batch)
                self._cond.notify_all()
                while not call.done:
                    self._cond.wait()
                return self._result(call)
            group = self._groups[key] = _Group([call], len(batch))
        with self._model:  # the leader: others join while the model is busy
            with self._cond:
                deadline = call.arrived + self.wait_s
                while (group.rows < self.max_rows and len(group.calls) < self._working
                       and (left := deadline - time.monotonic()) > 0):
                    self._cond.wait(left)
                del self._groups[key]
            self._run(group.calls)
        return self._result(call)

    def _run(self, calls: list[_Call]) -> None:
        try:
            inputs = calls[0].batch if len(calls) == 1 else \
                torch.cat([c.batch for c in calls])
            out = self.module(inputs)
            out = out[0] if isinstance(out, (list, tuple)) else out
            start = 0
            for c in calls:
                c.out = out[start: start + len(c.batch)]
                start += len(c.batch)
            self.calls += 1
            self.rows += len(inputs)
        except BaseException as exc:  # every caller of the batch raises it
            for c in calls:
                c.error = exc
        finally:
            with self._cond:
                for c in calls:
                    c.done = True
                self._cond.notify_all()

    @staticmethod
    def _result(call: _Call) -> torch.Tensor:
        if call.error is not None:
            raise call.error
        assert call.out is not None
        return call.out
