"""The gatherer: concurrent model calls of one input shape run as one batch, each caller gets
its own rows back, other shapes run apart, and an error reaches every caller of its batch."""

from __future__ import annotations

import threading

import pytest
import torch

from unetzoo.serve.batching import Gatherer


def call_together(gatherer: Gatherer, batches: list[torch.Tensor]) -> list:
    results: list = [None] * len(batches)
    start = threading.Barrier(len(batches))

    def run(i: int) -> None:
        with gatherer.working():
            start.wait()
            try:
                results[i] = gatherer(batches[i])
            except Exception as exc:
                results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_calls_of_one_shape_run_as_one_batch() -> None:
    seen: list[int] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(len(x))
        return x * 2 + 1

    gatherer = Gatherer(model, max_rows=6, wait_s=5.0)  # full before the wait ends
    batches = [torch.full((n, 1, 4, 4), float(i)) for i, n in enumerate((1, 2, 3))]
    results = call_together(gatherer, batches)
    assert seen == [6] and gatherer.calls == 1 and gatherer.rows == 6
    for batch, result in zip(batches, results, strict=True):
        torch.testing.assert_close(result, batch * 2 + 1)


def test_other_shapes_run_apart_after_waiting_at_most_wait_s() -> None:
    seen: list[tuple[int, ...]] = []

    def model(x: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return -x

    gatherer = Gatherer(model, max_rows=8, wait_s=0.05)
    batches = [torch.ones(1, 1, 4, 4), torch.ones(1, 1, 4, 6), torch.ones(1, 1, 4, 4)]
    results = call_together(gatherer, batches)
    assert sorted(seen) == [(1, 1, 4, 6), (2, 1, 4, 4)]
    for batch, result in zip(batches, results, strict=True):
        torch.testing.assert_close(result, -batch)


def test_an_error_reaches_every_caller_of_its_batch() -> None:
    def model(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    gatherer = Gatherer(model, max_rows=2, wait_s=5.0)
    results = call_together(gatherer, [torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)])
    assert all(isinstance(r, RuntimeError) for r in results)
    alone = Gatherer(model, max_rows=2, wait_s=3600.0)  # waiting would hang the test
    with pytest.raises(RuntimeError, match="out of memory"):
        alone(torch.ones(1, 1, 2, 2))  # nobody else at work: runs at once, and raises
