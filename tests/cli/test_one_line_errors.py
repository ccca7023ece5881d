"""Every failure is one line, whichever process it came from (issue 24): a data-loading
worker's error, a full disk, a pipe closed early."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tests.data.builders import write_blob_pairs
from unetzoo.cli import main
from unetzoo.errors import MaskValueError, one_line
from unetzoo.fileio import atomic_write_text


class Failing(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 2:
            raise MaskValueError("holds mask value 7, which this run's reading (binary 0/255) "
                                 "cannot hold; pass --num-classes 8", Path("masks/c.png"))
        return torch.zeros(1)


def test_a_workers_error_is_its_own_one_line() -> None:
    with pytest.raises(MaskValueError) as err:
        list(DataLoader(Failing(), batch_size=1, num_workers=1))
    assert "Original Traceback" in str(err.value)  # what PyTorch hands over: many lines
    assert one_line(err.value) == ("masks/c.png: holds mask value 7, which this run's reading "
                                   "(binary 0/255) cannot hold; pass --num-classes 8")


def test_library_texts_give_their_informative_line() -> None:
    text = ("Exception from src/inference/src/cpp/core.cpp:90:\nException from "
            "src/frontends/onnx/frontend/src/frontend.cpp:1:\nCheck 'shape' failed: [1,3]\n")
    assert one_line(RuntimeError(text)) == ("Exception from src/inference/src/cpp/core.cpp:90: "
                                            "Check 'shape' failed: [1,3]")
    assert one_line(RuntimeError("")) == "RuntimeError"


def test_a_full_disk_names_the_file(tmp_path: Path, monkeypatch, capsys) -> None:
    target = tmp_path / "out" / "split.csv"
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as err:
        atomic_write_text(target, "x")
    assert err.value.filename == str(target) and not target.exists()
    assert not list((tmp_path / "out").iterdir())  # no temporary left
    data = write_blob_pairs(tmp_path / "data", 0, 4)
    assert main(["split", "--dataset", str(data), "--train-size", "0.5"]) == 1
    assert capsys.readouterr().err.strip() == (
        f"unetzoo split: error: {data / 'split.csv'}: No space left on device")


def test_a_pipe_closed_early_exits_141_when_stderr_shares_it() -> None:
    """`unetzoo ... 2>&1 | head -1`: the one line saying so goes into the closed pipe too;
    the exit status is still 141 (tests/cli/test_failures.py: stdout alone closed)."""
    process = subprocess.Popen([sys.executable, "-m", "unetzoo", "bench", "--model", "unet",
                                "--preset", "tiny", "--img-size", "32", "--repeats", "20",
                                "--warmup-passes", "0", "--precision", "fp32"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    process.stdout.close()  # the reader goes before the first line is written
    assert process.wait(timeout=120) == 141
