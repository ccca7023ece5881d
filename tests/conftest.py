"""Shared fixtures: small datasets built in the test, the optional real datasets beside the
project, and determinism."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch

from tests.helpers import write_pairs

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Tests use small tensors: one thread each avoids oversubscribing the cores when pytest-xdist
# runs several workers (and under load from other processes).
torch.set_num_threads(1)
# OpenVINO conversions of in-memory checkpoints are cached here, not in the user's cache.
os.environ.setdefault("UNETZOO_CACHE_DIR", tempfile.mkdtemp(prefix="unetzoo-test-cache-"))


SLOW_TIMEOUT = 900  # seconds; the default for other tests is pyproject's `timeout`


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow get a longer timeout unless they set their own."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _report_pages_only_in_report_tests(request: pytest.FixtureRequest,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Training in-process writes no report.html outside tests/report (which test it): a
    page costs seconds of FLOP counting and re-prediction per run on a loaded 2-core
    machine."""
    if "report" not in request.node.path.parts:
        from unetzoo.report.callback import ReportCallback

        monkeypatch.setattr(ReportCallback, "on_train_end", lambda *args: None)


@pytest.fixture
def shared_dataset():
    """Return a function giving ../shared/data/NAME, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = SHARED_DATA / name
        if not (path / "split.csv").is_file():
            pytest.skip(f"shared dataset {name} not present at {path}")
        return path

    return get


@pytest.fixture
def pairs_dir(tmp_path: Path) -> Path:
    """A 12-image binary paired dataset of 48 x 48 synthetic nuclei."""
    return write_pairs(tmp_path / "data")
