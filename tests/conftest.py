"""Shared fixtures: the optional real datasets beside the project, and determinism."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def shared_dataset():
    """Return a function giving ../shared/data/NAME, skipping the test when it is absent."""

    def get(name: str) -> Path:
        path = SHARED_DATA / name
        if not (path / "split.csv").is_file():
            pytest.skip(f"shared dataset {name} not present at {path}")
        return path

    return get
