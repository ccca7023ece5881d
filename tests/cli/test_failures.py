"""Every failure of the command line is one line and a non-zero exit code; the traceback is
there on request (`--traceback`, UNETZOO_DEBUG=1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unetzoo.cli import main
from unetzoo.cli import models as models_command
from unetzoo.models import count_parameters, create_model


def boom(args) -> None:
    raise RuntimeError("something broke\nsecond line")


def test_an_internal_error_is_one_line_with_exit_1(capsys, monkeypatch) -> None:
    monkeypatch.setattr(models_command, "run", boom)
    monkeypatch.delenv("UNETZOO_DEBUG", raising=False)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert err == ("unetzoo models: internal error: RuntimeError: something broke (run with "
                   "--traceback or UNETZOO_DEBUG=1 for the traceback)\n")


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_traceback_on_request(capsys, monkeypatch, how: str) -> None:
    monkeypatch.setattr(models_command, "run", boom)
    argv = ["models", "--traceback"] if how == "flag" else ["models"]
    if how == "env":
        monkeypatch.setenv("UNETZOO_DEBUG", "1")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in boom" in err
    assert err.splitlines()[-1].startswith("unetzoo models: internal error: RuntimeError")


def test_an_unwritable_output_is_one_line_with_exit_1(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "bench.json"  # a path below a file cannot be created
    code = main(["bench", "--model", "unet", "--preset", "tiny", "--img-size", "16",
                 "--repeats", "1", "--warmup-passes", "0", "--precision", "fp32", "--json",
                 str(out)])
    err = capsys.readouterr().err
    assert code == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"unetzoo bench: error: {blocker}: ") and "Traceback" not in err


def test_a_closed_output_pipe_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    process = subprocess.Popen([sys.executable, "-c", "import sys; from unetzoo.cli import main; "
                                "sys.exit(main(['models']))"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # the reader goes away before anything is written, as `| head -0`
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert err == "unetzoo models: output closed early (broken pipe)\n"


def test_deprecated_spellings_print_one_line_and_still_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.json"
    assert main(["bench", "--model", "unet", "--preset", "tiny", "--size", "16", "--repeats",
                 "1", "--warmup-passes", "0", "--precision", "fp32", "--json", str(out)]) == 0
    err = capsys.readouterr().err
    assert err == "unetzoo bench: --size is deprecated; use --img-size\n"
    assert json.loads(out.read_text())["size"] == 16


@pytest.mark.parametrize("command, deprecated, new, dest, value", [
    (["bench", "--model", "unet"], ["--warmup", "5"], "--warmup-passes", "warmup_passes", 5),
    (["export", "--model", "m.pt", "--format", "bioimageio", "--out", "m.zip"],
     ["--no-test"], "--no-package-test", "test", False),
    (["convert", "dsb2018", "src", "dest"], ["--instances"], "--write-instances", "instances",
     True),
])
def test_a_flag_name_with_a_second_meaning_is_a_deprecated_alias(
        command: list[str], deprecated: list[str], new: str, dest: str, value, capsys) -> None:
    from unetzoo.cli import build_parser

    args = build_parser().parse_args([*command, *deprecated])
    assert getattr(args, dest) == value
    assert capsys.readouterr().err == (f"unetzoo {command[0]}: {deprecated[0]} is deprecated; "
                                       f"use {new}\n")
    args = build_parser().parse_args([*command, new, *deprecated[1:]])
    assert getattr(args, dest) == value and capsys.readouterr().err == ""
    default = build_parser().parse_args(command)
    assert getattr(default, dest) == {"warmup_passes": 3, "test": True, "instances": False}[dest]


def test_bench_builds_an_architecture_with_model_args(tmp_path: Path, capsys) -> None:
    out = tmp_path / "b.json"
    assert main(["bench", "--model", "unet", "--preset", "tiny", "--model-args", "depth=2",
                 "--img-size", "16", "--repeats", "1", "--warmup-passes", "0", "--precision",
                 "fp32", "--json", str(out)]) == 0
    expected = count_parameters(create_model("unet", preset="tiny", depth=2))
    assert json.loads(out.read_text())["params"] == expected
    assert expected != count_parameters(create_model("unet", preset="tiny"))
