"""Every kind of model reference works in every command that takes a model (issue 22, the
table of docs/sharing.md "What --model takes"): one test per cell.

Kinds: a checkpoint file, a training run folder, a model folder, a shipped name, a
bioimage.io package unetzoo wrote, ONNX, OpenVINO IR and TorchScript files. Commands:
`predict`, `eval`, `bench`, `export`, `train --init`, and `Predictor.open` /
`load_checkpoint` in Python. Exported graphs hold no trainable weights: `export` and
`train --init` refuse them in one line naming what they take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.builders import write_blob_pairs
from unetzoo.cli import main

KINDS = ("checkpoint", "run", "folder", "shipped", "package", "foreign", "onnx", "openvino",
         "torchscript")
WITHOUT_WEIGHTS = ("foreign", "onnx", "openvino", "torchscript")
QUIET = ["--no-progress", "--device", "cpu"]
TINY = ["--model-args", "base_channels=4", "depth=2", "--img-size", "32", "--batch", "2",
        "--workers", "0", "--logger", "none", "--no-report", "--precision", "fp32",
        "--cache", "off"]

pytestmark = pytest.mark.slow


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def references(tmp_path_factory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("refs")
    data = write_blob_pairs(root / "data", 0, 6)
    assert run("train", "--dataset", data, "--epoch", "1", "--out", root / "run", "--no-test",
               *TINY, *QUIET) == 0
    best = root / "run" / "models" / "best.pt"
    refs: dict[str, Path | str] = {"checkpoint": best, "run": root / "run", "shipped": "nuclei",
                                   "folder": root / "folder", "package": root / "m.zip",
                                   "onnx": root / "m.onnx", "openvino": root / "m.xml",
                                   "torchscript": root / "m.torchscript", "data": data}
    assert run("export", "--model", best, "--format", "folder", "--out", refs["folder"]) == 0
    for kind in ("onnx", "openvino", "torchscript"):
        assert run("export", "--model", best, "--format", kind, "--out", refs[kind]) == 0
    pytest.importorskip("bioimageio.core")
    from unetzoo.engine.export.bioimageio import export_bioimageio

    export_bioimageio(best, refs["package"], authors=["A. Person"], license="MIT", test=False)
    from tests.engine.test_bioimageio import foreign_package

    refs["foreign"] = foreign_package(root / "pkg")[0]  # a package another tool wrote
    return refs


def image_folder(root: Path, channels: int = 3) -> Path:
    folder = root / "in"
    folder.mkdir(exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (40, 36, channels), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_predict(kind: str, references, tmp_path: Path) -> None:
    assert run("predict", "--model", references[kind], "--input", image_folder(tmp_path),
               "--out", tmp_path / "out", *QUIET) == 0
    if kind == "shipped":  # nuclei is an instance model: a label TIFF, one id per object
        import tifffile

        labels = tifffile.imread(tmp_path / "out" / "a.tif")
        assert labels.shape == (40, 36) and labels.dtype == np.uint16
        return
    mask = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    assert mask.shape == (40, 36) and set(np.unique(mask)) <= {0, 255}


@pytest.mark.parametrize("kind", KINDS)
def test_eval(kind: str, references, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # outputs of a model outside a run go to the working folder
    assert run("eval", "--model", references[kind], "--dataset", references["data"],
               "--split", "all", "--no-report", *QUIET) == 0
    written = list(tmp_path.glob("eval-*/metrics.json"))
    if kind in ("checkpoint", "run"):  # inside the run
        assert not written and (Path(references["run"]) / "eval-all" / "metrics.json").is_file()
    else:
        assert len(written) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_bench(kind: str, references, tmp_path: Path) -> None:
    assert run("bench", "--model", references[kind], "--img-size", "32", "--repeats", "1",
               "--warmup-passes" if _has_flag("bench", "--warmup-passes") else "--warmup", "0",
               "--json", tmp_path / "b.json", *QUIET) == 0
    assert (tmp_path / "b.json").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_export(kind: str, references, tmp_path: Path, capsys) -> None:
    code = run("export", "--model", references[kind], "--format", "onnx", "--out",
               tmp_path / "x.onnx")
    if kind in WITHOUT_WEIGHTS:
        assert code == 2
        assert "holds no trainable weights for an export to onnx: pass a checkpoint" in \
            capsys.readouterr().err
    else:
        assert code == 0 and (tmp_path / "x.onnx").is_file()


@pytest.mark.parametrize("kind", KINDS)
def test_train_init(kind: str, references, tmp_path: Path, capsys) -> None:
    code = run("train", "--dataset", references["data"], "--init", references[kind],
               "--epoch", "1", "--steps-per-epoch", "1", "--out", tmp_path / "tuned",
               "--no-test", "--workers", "0", "--logger", "none", "--no-report",
               "--img-size", "32", "--batch", "2", "--precision", "fp32", "--cache", "off",
               *QUIET)
    if kind in WITHOUT_WEIGHTS:
        assert code == 2
        assert "holds no trainable weights for --init" in capsys.readouterr().err
    else:
        assert code == 0
        assert "weights from" in capsys.readouterr().out


@pytest.mark.parametrize("kind", KINDS)
def test_python_api(kind: str, references) -> None:
    from unetzoo import Predictor, load_checkpoint
    from unetzoo.errors import CheckpointError

    image = np.random.default_rng(1).integers(0, 255, (24, 20, 3), dtype=np.uint8)
    predictor = Predictor.open(references[kind])
    if kind == "foreign":  # it reads files through its own preprocessing (`predict` does)
        from unetzoo.errors import DataError

        with pytest.raises(DataError, match="reads image files by its own preprocessing"):
            predictor.labels(image)
    else:
        labels = predictor.labels(image)
        assert isinstance(labels, np.ndarray) and labels.shape == (24, 20)
    if kind in WITHOUT_WEIGHTS:
        with pytest.raises(CheckpointError, match="holds no trainable weights"):
            load_checkpoint(references[kind])
    else:
        assert load_checkpoint(references[kind]).state_dict


def _has_flag(command: str, flag: str) -> bool:
    from unetzoo.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return flag in sub.choices[command]._option_string_actions  # type: ignore[union-attr]
