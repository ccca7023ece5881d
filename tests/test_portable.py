"""What is written for others carries no path of the machine it was made on (issue 22):
model folders, bioimage.io packages, exported graphs, model cards, the shipped models."""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_checkpoint import make_checkpoint
from unetzoo.artefacts.checkpoint import portable, save_checkpoint
from unetzoo.artefacts.modelcard import render_card
from unetzoo.artefacts.pretrained import PRETRAINED
from unetzoo.artefacts.references import save_pretrained


def machine_paths(tmp_path: Path) -> list[str]:
    """Paths of this machine an artefact must not mention."""
    found = {str(tmp_path), str(tmp_path.resolve()), os.getcwd(), str(Path.home())}
    return sorted(p for p in found if len(p) > 1)


def assert_portable(text: str, tmp_path: Path, where: str) -> None:
    for path in machine_paths(tmp_path):
        assert path not in text, f"{where} mentions {path}"


def trained_checkpoint(tmp_path: Path):
    """A checkpoint as `unetzoo train` writes it: absolute dataset and run paths in its
    config and test metrics."""
    data = tmp_path / "data" / "nuclei"
    checkpoint = make_checkpoint()
    return replace(checkpoint, config={
        **checkpoint.config, "dataset": str(data), "csvfile": str(data / "split.csv"),
        "out": str(tmp_path / "runs" / "x"), "loss": "ce+dice"}, metrics={
        **checkpoint.metrics, "test": {
            "global": {"dice": 0.9, "iou": 0.8}, "mean_over_images": {"dice": 0.9, "iou": 0.8},
            "checkpoint": str(tmp_path / "runs" / "x" / "models" / "best.pt"),
            "dataset": str(data), "split": "test", "images": 3,
            "note": f"{data}: the run's split was evaluated"}})


def test_portable_cuts_absolute_paths_to_their_names() -> None:
    assert portable({"a": "/home/me/data/nuclei", "b": ["runs/x", "C:\\Users\\me\\d.png"],
                     "c": "see /tmp/x/y.png here", "d": "https://bioimage.io/x/y", "e": 3}) == {
        "a": "nuclei", "b": ["runs/x", "d.png"], "c": "see y.png here",
        "d": "https://bioimage.io/x/y", "e": 3}


def test_model_folders_and_cards_hold_no_machine_path(tmp_path: Path) -> None:
    checkpoint = trained_checkpoint(tmp_path)
    folder = save_pretrained(checkpoint, tmp_path / "shared")
    for name in ("config.json", "README.md"):
        assert_portable((folder / name).read_text(), tmp_path, f"model folder {name}")
    config = json.loads((folder / "config.json").read_text())
    assert config["training"]["dataset"] == "nuclei"  # what it trained on, by name
    card = render_card(checkpoint.portable())
    assert "Test evaluation (test split, 3 images" in card
    assert "- loss: bce+dice" in card  # the name the log uses for a binary task


def test_exported_graphs_hold_no_machine_path(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    import onnx

    from unetzoo.engine.export.exporter import export_checkpoint

    path = save_checkpoint(tmp_path / "best.pt", trained_checkpoint(tmp_path))
    export_checkpoint(path, "onnx", tmp_path / "m.onnx")
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert_portable(metadata["unetzoo"], tmp_path, "ONNX metadata")


def test_packages_hold_no_machine_path(tmp_path: Path) -> None:
    pytest.importorskip("bioimageio.core")
    from unetzoo.engine.export.bioimageio import export_bioimageio

    path = save_checkpoint(tmp_path / "best.pt", trained_checkpoint(tmp_path))
    package = tmp_path / "m.zip"
    export_bioimageio(path, package, authors=["A. Person"], license="MIT", test=False)
    with zipfile.ZipFile(package) as archive:
        for name in archive.namelist():
            if name.endswith((".yaml", ".md", ".json", ".txt")):
                assert_portable(archive.read(name).decode("utf-8", "replace"), tmp_path,
                                f"package {name}")


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_models_hold_no_machine_path(name: str, tmp_path: Path) -> None:
    folder = PRETRAINED[name].folder
    for file in ("config.json", "README.md"):
        text = (folder / file).read_text()
        assert not any(f'"{root}' in text or f" {root}" in text
                       for root in ("/work/", "/home/", "/root/", "/tmp/", "/Users/")), file
