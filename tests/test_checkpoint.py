"""Checkpoints: weights_only round trip, atomic writes, refusal of unsafe or broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.data.transforms import Preprocessing
from unetzoo.errors import CheckpointError
from unetzoo.models import create_model


def make_checkpoint() -> Checkpoint:
    model = create_model("unet", 3, 1, preset="tiny")
    return Checkpoint(model_spec=model.unetzoo_spec, task="binary", class_names=("nucleus",),
                      preprocessing=Preprocessing(3, (0.1, 0.2, 0.3), (1.0, 1.0, 1.0), 64),
                      state_dict=model.state_dict(), config={"lr": 0.001, "model": "unet"},
                      metrics={"val_dice": 0.5},
                      train_state={"epoch": 3, "rng": {"torch": torch.get_rng_state()}})


def test_round_trip_rebuilds_the_model(tmp_path: Path) -> None:
    ckpt = make_checkpoint()
    path = save_checkpoint(tmp_path / "models" / "best.pt", ckpt)
    torch.load(path, weights_only=True)  # plain tensors and values only
    loaded = load_checkpoint(path)
    assert loaded.preprocessing == ckpt.preprocessing
    assert loaded.class_names == ("nucleus",) and loaded.train_state["epoch"] == 3
    model, original = loaded.build_model(), create_model("unet", 3, 1, preset="tiny")
    original.load_state_dict(ckpt.state_dict)
    original.eval()
    x = torch.randn(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_failed_save_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = save_checkpoint(tmp_path / "last.pt", make_checkpoint())
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("unetzoo.fileio.os.fsync", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_checkpoint())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "unetzoo-checkpoint", "evil": Evil()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize("content, message", [
    (b"", "cannot read checkpoint"),
    (b"PK\x03\x04garbage", "cannot read checkpoint"),
])
def test_broken_files_are_reported(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_foreign_and_missing_files(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a unetzoo checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")


def test_a_run_folder_loads_its_best_checkpoint_and_names_what_it_lacks(tmp_path: Path,
                                                                        caplog) -> None:
    from unetzoo.artefacts.runs import run_checkpoint

    run = tmp_path / "run"
    (run / "models").mkdir(parents=True)
    (run / "config.yaml").write_text("model: unet\n")
    with pytest.raises(CheckpointError, match="no checkpoint in models/"):
        load_checkpoint(run)
    save_checkpoint(run / "models" / "best.pt", make_checkpoint())
    with caplog.at_level("INFO", logger="unetzoo"):
        loaded = load_checkpoint(run)
    assert loaded.preprocessing == make_checkpoint().preprocessing
    assert f"{run}: a training run folder; using its best checkpoint" in caplog.text
    folder = tmp_path / "folder"  # a model folder (config.json) is not a run folder
    (folder / "models").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert run_checkpoint(folder) == folder and run_checkpoint("nuclei") == Path("nuclei")
