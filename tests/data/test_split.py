"""Reproducible splits and their CSV round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import write_pairs
from unetzoo.data.layouts import find_pairs
from unetzoo.data.split import assign_splits, make_split, split_counts, write_split_csv
from unetzoo.errors import ConfigError, RunError


def test_split_counts() -> None:
    assert split_counts(10, 0.9, 0.0) == (9, 0, 1)
    assert split_counts(10, 0.8, 0.1) == (8, 1, 1)
    assert split_counts(10, 1.0, 0.0) == (10, 0, 0)
    with pytest.raises(ConfigError):
        split_counts(10, 0.9, 0.2)


def test_same_seed_same_split_and_csv_round_trip(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=10, size=16)
    pairs = find_pairs(root)
    a = make_split(pairs, 0.6, 0.2, seed=4)
    assert a == make_split(pairs, 0.6, 0.2, seed=4)
    assert a != make_split(pairs, 0.6, 0.2, seed=5)
    path = write_split_csv(a, root, root / "split.csv")
    assert path.read_text().splitlines()[0] == "image,mask,split"
    assert "images/img_000.png" in path.read_text()
    assert find_pairs(root, "split.csv") == a
    with pytest.raises(RunError, match="already exists"):
        write_split_csv(a, root, root / "split.csv")


def test_assign_splits_carves_validation_from_train(tmp_path: Path) -> None:
    root = write_pairs(tmp_path / "d", count=10, size=16)
    split = make_split(find_pairs(root), 0.8, 0.0, seed=0)
    train, val, test, made = assign_splits(split, 0.25, seed=0)
    assert (len(train), len(val), len(test), made) == (6, 2, 2, True)
    train, val, test, made = assign_splits(find_pairs(root), 0.1, seed=0)
    assert (len(train), len(val), len(test), made) == (8, 1, 1, True)
