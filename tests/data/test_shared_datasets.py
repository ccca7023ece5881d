"""The real datasets beside the project (../shared/data), read the way users' data is read.

Each test skips when the dataset is absent; the suite does not depend on them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unetzoo
from unetzoo.data.prepare import prepare_data

CASES = [  # name, channels, (train, val, test)
    ("isbi2012_em", 1, (20, 5, 5)),
    ("dsb2018_96", 3, (536, 67, 67)),
    ("dsb2018", 3, (532, 66, 66)),
]


@pytest.mark.parametrize("name, channels, splits", CASES)
def test_split_csv_is_read_and_checked(shared_dataset, name: str, channels: int,
                                       splits: tuple[int, int, int]) -> None:
    root = shared_dataset(name)
    stats = json.loads((root / "STATS.json").read_text())
    data = prepare_data(root, "split.csv")
    assert (len(data.train), len(data.val), len(data.test)) == splits
    assert sum(splits) == stats["pairs"]
    assert (data.info.task, data.info.num_classes, data.info.in_channels) == ("binary", 1,
                                                                             channels)
    sample = data.dataset(data.val)[0]
    assert sample["image"].shape[0] == channels
    assert set(sample["mask"].unique().tolist()) <= {0, 1}
    assert sample["mask"].float().mean().item() > 0  # foreground 255 was read as class 1


def test_a_short_run_on_isbi_trains_and_evaluates_the_test_split(shared_dataset,
                                                                tmp_path: Path) -> None:
    root = shared_dataset("isbi2012_em")
    result = unetzoo.train(dataset=str(root), csvfile="split.csv", model="unet",
                           preset="tiny", img_size=96, batch=4, epoch=2, steps_per_epoch=5,
                           lr=0.01, out=str(tmp_path / "run"), progress=False, workers=0)
    assert result.test is not None
    # the cell interior (255) covers about 78% of each slice: a model that predicts it at
    # all scores well above 0.6, one that inverted the masks far below
    assert result.test.summary["global"]["dice"] > 0.6
    assert (tmp_path / "run" / "test" / "per_image.csv").read_text().count("\n") == 1 + 5
