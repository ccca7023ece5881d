"""How runs use the mask reading, and the faults of issue 10 section 3 on the engine side:
eval's split rules, resume from a checkpoint file, selection by validation loss, the
reading recorded in the run and re-applied by eval."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetzoo
from tests.data import mask_corpus as corpus
from tests.helpers import write_pairs
from tests.test_checkpoint import make_checkpoint
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.engine.evaluate import EvaluationResult, evaluate_checkpoint
from unetzoo.errors import DataError, RunError

OPTIONS = {"model": "unet", "preset": "tiny", "batch": 4, "img_size": 32, "workers": 0,
           "precision": "fp32", "device": "cpu", "progress": False, "test": False}


def checkpoint_file(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "run" / "models" / "best.pt", make_checkpoint())


# -- eval: which images ---------------------------------------------------------------------

def test_eval_without_split_information_says_it_evaluated_all_images(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=5, size=32)
    result = evaluate_checkpoint(checkpoint_file(tmp_path), data, progress=False)
    assert result.summary["images"] == 5 and result.extra["split"] == "all"
    assert result.extra["note"] == ("the dataset has no split information: all 5 images were "
                                    "evaluated")
    with pytest.raises(DataError, match=r"data: has no split information \(no split column or "
                                        r"train/val/test folders\), so there is no 'test' split; "
                                        r"pass --split all to evaluate every image, or "
                                        r"--csvfile with the split a run saved"):
        evaluate_checkpoint(checkpoint_file(tmp_path), data, split="test", progress=False)


def test_eval_of_a_split_the_csv_does_not_have_is_an_error(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=4, size=32)
    rows = [f"images/img_{i:03d}.png,masks/img_{i:03d}.png,{'train' if i else 'test'}"
            for i in range(4)]
    (data / "split.csv").write_text("image,mask,split\n" + "\n".join(rows) + "\n")
    result = evaluate_checkpoint(checkpoint_file(tmp_path), data, "split.csv", progress=False)
    assert (result.extra["split"], result.summary["images"]) == ("test", 1)
    with pytest.raises(DataError) as err:
        evaluate_checkpoint(checkpoint_file(tmp_path), data, "split.csv", "val", progress=False)
    assert str(err.value) == (f"{data / 'split.csv'}: no rows of split 'val'; the split has: "
                              "test, train; pass --split train (or --split all for every image)")


def test_cli_eval_names_the_folder_after_the_split_it_evaluated(tmp_path: Path, capsys) -> None:
    from unetzoo.cli import main

    data = write_pairs(tmp_path / "data", count=3, size=32)
    best = checkpoint_file(tmp_path)
    assert main(["eval", "--dataset", str(data), "--model", str(best), "--no-progress",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "the dataset has no split information: all 3 images were evaluated" in printed
    assert json.loads((tmp_path / "run" / "eval-all" / "metrics.json").read_text())[
        "split"] == "all"


# -- eval re-applies the run's reading --------------------------------------------------------

def test_eval_reads_binary_levels_from_its_own_masks(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=3, size=32)
    for mask in (data / "masks").iterdir():  # the model's 0/255 masks, stored as 0/1
        Image.fromarray((np.asarray(Image.open(mask)) > 0).astype(np.uint8)).save(mask)
    result = evaluate_checkpoint(checkpoint_file(tmp_path), data, progress=False)
    assert result.extra["masks"] == "binary: 3 masks 0/1"


def test_eval_refuses_masks_that_do_not_fit_the_model(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=3, size=32, multiclass=True)
    with pytest.raises(DataError, match=r"data: the masks read as .* but the model was trained "
                                        r"for binary with 1 output\(s\)|--task binary"):
        evaluate_checkpoint(checkpoint_file(tmp_path), data, progress=False)


def test_the_run_records_its_reading_and_eval_re_applies_it(tmp_path: Path) -> None:
    masks = []
    for i in range(8):  # classes stored as 0 / 128 / 255 (evenly spaced, for display)
        m = np.zeros((32, 32), np.uint8)
        m[4:14, 4 + i:14 + i], m[18:28, 10:20] = 128, 255
        masks.append(m)
    data = corpus.write_masks(tmp_path / "data", masks)
    run = unetzoo.train(dataset=str(data), out=str(tmp_path / "r"), epoch=1, **OPTIONS)
    decided = json.loads((run.run_dir / "dataset.json").read_text())
    recorded = decided["masks"]
    assert (recorded["rule"], recorded["values"]) == ("index", [0, 128, 255])
    assert decided["images"] == "8 RGB"  # nothing converted or dropped: nothing more said
    assert load_checkpoint(run.best_checkpoint).mask_reading["values"] == [0, 128, 255]
    result = evaluate_checkpoint(run.best_checkpoint, data, split="all", progress=False)
    assert result.extra["masks"] == ("multiclass: 3 classes, stored 0, 128, 255 -> classes "
                                     "0..2 (evenly spaced values)")
    assert set(result.summary["per_class"]) == {"background", "class1", "class2"}
    assert result.extra["image_channels"] == "8 RGB"
    assert result.to_json()["images"] == 8  # metrics.json keeps the image count


def test_train_and_eval_say_how_image_channels_are_read(tmp_path: Path, caplog) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)  # RGB images
    for name in ("img_000.png", "img_001.png"):  # two gray+alpha images among them
        path = data / "images" / name
        gray = np.asarray(Image.open(path).convert("L"))
        Image.fromarray(np.stack([gray, np.full_like(gray, 200)], -1), "LA").save(path)
    with caplog.at_level("INFO", logger="unetzoo"):
        run = unetzoo.train(dataset=str(data), out=str(tmp_path / "r"), epoch=1, **OPTIONS)
    said = ("4 RGB, 2 gray+alpha; 2 with a declared alpha channel: the alpha is dropped "
            "(transparency, not an input channel; to keep it, save it as a TIFF sample not "
            "declared alpha); 2 gray: replicated to 3 channels")
    assert f"  images: {said}" in caplog.messages
    assert json.loads((run.run_dir / "dataset.json").read_text())["images"] == said
    result = evaluate_checkpoint(run.best_checkpoint, data, split="all", progress=False)
    assert result.extra["image_channels"] == said


# -- resume from a checkpoint file ------------------------------------------------------------

def test_resume_from_a_file_writes_into_its_run_folder_or_out(tmp_path: Path,
                                                              monkeypatch) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)
    first = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, **OPTIONS)
    monkeypatch.chdir(tmp_path / "data")  # elsewhere: the run folder comes from the file
    again = unetzoo.train(resume=str(first.last_checkpoint), epoch=2)
    assert again.run_dir.resolve() == (tmp_path / "run").resolve()
    assert [row["epoch"] for row in again.history] == [1, 2]
    other = unetzoo.train(resume=str(first.last_checkpoint), epoch=3,
                          out=str(tmp_path / "other"))
    assert other.run_dir == tmp_path / "other" and len(other.history) == 3
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3


def test_resume_from_a_loose_file_needs_out_and_deletes_nothing(tmp_path: Path,
                                                                 monkeypatch) -> None:
    data = write_pairs(tmp_path / "data", count=6, size=32)
    first = unetzoo.train(dataset=str(data), out=str(tmp_path / "run"), epoch=1, **OPTIONS)
    loose = tmp_path / "downloads"
    loose.mkdir()
    shutil.copy(first.last_checkpoint, loose / "epoch_last.pt")
    keep = tmp_path / ".notes.txt.a1b2.tmp"  # someone's file in the parent folder
    keep.write_text("mine")
    monkeypatch.chdir(loose)
    with pytest.raises(RunError, match=r"epoch_last.pt: is not inside a run folder .*; pass "
                                       r"--out DIR for the resumed run's outputs"):
        unetzoo.train(resume="epoch_last.pt", epoch=2)
    assert keep.read_text() == "mine"
    resumed = unetzoo.train(resume="epoch_last.pt", epoch=2, out=str(tmp_path / "new"))
    assert [row["epoch"] for row in resumed.history] == [1, 2] and keep.exists()


# -- the best checkpoint by validation loss ---------------------------------------------------

def test_monitor_loss_selects_by_validation_loss(tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "data", count=10, size=32)
    run = unetzoo.train(dataset=str(data), out=str(tmp_path / "r"), epoch=3, monitor="loss",
                        lr=0.02, seed=1, **OPTIONS)
    losses = [row["val_loss"] for row in run.history]
    assert all(math.isfinite(v) for v in losses)
    best_epoch = load_checkpoint(run.best_checkpoint).metrics["epoch"]
    assert best_epoch == 1 + int(np.argmin(losses))
    assert run.best_score == -min(losses)


def test_validation_loss_is_the_mean_over_images() -> None:
    result = EvaluationResult({}, [], 1.0, 1.0, losses=[0.2, 0.4])
    assert result.loss == pytest.approx(0.3) and result.to_json()["loss"] == pytest.approx(0.3)


def test_eval_refuses_masks_whose_objects_are_the_runs_void_value(tmp_path: Path) -> None:
    # A 4-class model (255 = void) evaluated on 0/255 binary masks ignored every object and
    # scored a background-only model Dice 1.0 on those images, exit 0.
    from unetzoo.data.layouts import find_pairs
    from unetzoo.data.prepare import run_reading

    recorded = {"task": "multiclass", "num_classes": 4, "rule": "index",
                "evidence": "multiclass: 4 classes", "values": [0, 1, 2, 3], "ignore": [255]}
    data = write_pairs(tmp_path / "binary", count=3, size=16)  # masks 0/255
    with pytest.raises(DataError) as err:
        run_reading("multiclass", 4, data, find_pairs(data), {}, recorded)
    assert str(err.value) == (f"{data / 'masks' / 'img_000.png'}: holds only 0 and 255, which "
                              "the model reads as void; so do 3 of 3 masks, none with a class "
                              "label beside it: their objects would go unscored (the model: "
                              "multiclass: 4 classes)")
    void_row = np.zeros((16, 16), np.uint8)
    void_row[0], void_row[5:9, 5:9] = 255, 2  # a void border beside a class, as trained
    Image.fromarray(void_row).save(data / "masks" / "img_001.png")
    reading = run_reading("multiclass", 4, data, find_pairs(data), {}, recorded)
    assert (reading.values, reading.ignore) == ((0, 1, 2, 3), (255,))


def test_a_class_only_in_the_val_split_is_said_before_training(tmp_path: Path,
                                                               caplog) -> None:
    data = write_pairs(tmp_path / "data", count=8, size=32, multiclass=True)  # classes 0..2
    rows = ["image,mask,split"]
    for i in range(8):
        split = "train" if i < 6 else "val"
        if split == "val":  # class 3 only here
            path = data / "masks" / f"img_{i:03d}.png"
            mask = np.asarray(Image.open(path)).copy()
            mask[:4, :4] = 3
            Image.fromarray(mask).save(path)
        rows.append(f"images/img_{i:03d}.png,masks/img_{i:03d}.png,{split}")
    (data / "split.csv").write_text("\n".join(rows) + "\n")
    with caplog.at_level("WARNING", logger="unetzoo"):
        unetzoo.train(dataset=str(data), csvfile="split.csv", out=str(tmp_path / "r"),
                      epoch=1, **OPTIONS)
    assert (f"class 'class3' has no pixels in the 6 training masks read; it is only in 2 "
            f"val/test mask(s), e.g. {data / 'masks' / 'img_006.png'}: move such images into "
            "the training split. The model cannot learn it") in caplog.messages
    assert not [m for m in caplog.messages if "class1" in m or "class2" in m]
