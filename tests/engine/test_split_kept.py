"""A run's data never change role (issue 24, ../shared/cases/37): `train --resume` after pairs
were added to a split-less dataset folder keeps the split the run started with, names the new
images and leaves them out; `eval` names scored images the checkpoint trained on."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.builders import write_blob_pairs
from unetzoo.cli import main
from unetzoo.data.split_record import read_split_record

TINY = ["--model-args", "base_channels=4", "depth=2", "--img-size", "32", "--batch", "2",
        "--workers", "0", "--logger", "none", "--no-report", "--no-progress",
        "--precision", "fp32", "--device", "cpu", "--cache", "off"]


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.mark.slow
def test_case_37_resume_keeps_the_split_and_names_new_images(tmp_path: Path, capsys) -> None:
    data = write_blob_pairs(tmp_path / "data", 0, 12)
    out = tmp_path / "run"
    assert run("train", "--dataset", data, "--epoch", "1", "--out", out, "--no-test",
               *TINY) == 0
    before = (out / "split.csv").read_bytes()
    first = read_split_record(data, out / "split.csv")
    roles = {r.image: r.split for r in first.rows}
    assert len(roles) == 12 and sorted(roles.values()).count("test") == 1
    write_blob_pairs(data, 12, 8)  # the user adds 8 pairs to the folder
    capsys.readouterr()
    assert run("train", "--resume", out, "--epoch", "2", "--no-test", *TINY) == 0
    # the run's split.csv is the same file, byte for byte: nothing changed role
    assert (out / "split.csv").read_bytes() == before
    text = capsys.readouterr().out
    assert "8 images added to the dataset since the run started are left out" in text
    assert "images/s12.png" in text
    # eval of the whole folder names the images the checkpoint learnt from
    assert run("eval", "--dataset", data, "--model", out, "--split", "all",
               "--backend", "torch", "--no-report", "--no-progress", "--precision", "fp32",
               "--out", tmp_path / "ev") == 0
    fit = sum(s in ("train", "val") for s in roles.values())
    assert f"{fit} of the 20 images scored trained or validated this checkpoint" in \
        capsys.readouterr().out


def test_an_image_in_two_splits_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    data = write_blob_pairs(tmp_path / "data", 0, 4)
    (data / "split.csv").write_text("image,mask,split\nimages/s00.png,masks/s00.png,train\n"
                                    "images/s01.png,masks/s01.png,train\n"
                                    "images/s00.png,masks/s00.png,test\n")
    assert run("train", "--dataset", data, "--csvfile", "split.csv", "--epoch", "1",
               "--out", tmp_path / "run", *TINY) == 2
    err = capsys.readouterr().err
    assert "split.csv: line 2 (images/s00.png, " in err  # train, or val carved from it
    assert "and line 4 (images/s00.png, test) name the same image in two splits" in err
    assert not (tmp_path / "run").exists()
