"""The command line end to end on a tiny dataset: split, train, resume, eval, predict, errors."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.cli import main

FAST = ["--no-progress", "--precision", "fp32", "--device", "cpu"]
TRAIN = ["--model", "unet", "--preset", "tiny", "--batch", "4", "--img-size", "32",
         "--workers", "0", *FAST]


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


def test_split_train_resume_eval_predict(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "data", count=14, size=40)
    assert run("split", "--dataset", data, "--train-size", "0.7", "--val-size", "0.15",
               "--seed", "1") == 0
    rows = list(csv.DictReader((data / "split.csv").read_text().splitlines()))
    assert sorted({r["split"] for r in rows}) == ["test", "train", "val"]

    out = tmp_path / "run"
    assert run("train", "--dataset", data, "--csvfile", "split.csv", "--loss", "bce+dice",
               "--lr", "0.01", "--epoch", "2", "--out", out, *TRAIN) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2" in printed and "val dice" in printed and "test split" in printed
    for name in ("models/best.pt", "models/epoch_last.pt", "metrics.csv", "curves.png",
                 "config.yaml", "train.log", "test/metrics.json"):
        assert (out / name).is_file(), name

    # a new run into the same folder is refused; resume continues it
    assert run("train", "--dataset", data, "--csvfile", "split.csv", "--epoch", "2",
               "--out", out, *TRAIN) == 2
    assert "--resume" in capsys.readouterr().err
    assert run("train", "--resume", out, "--epoch", "3", *FAST) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    assert len((out / "metrics.csv").read_text().splitlines()) == 1 + 3

    evaluation = tmp_path / "eval"
    assert run("eval", "--dataset", data, "--csvfile", "split.csv", "--model",
               out / "models" / "best.pt", "--debug", "--out", evaluation, *FAST) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert {"mean_over_images", "global", "per_class", "fps"} <= set(metrics)
    assert set(metrics["global"]) >= {"dice", "iou", "precision", "recall", "specificity", "f1",
                                      "accuracy", "mdice"}
    test_names = sorted(Path(r["image"]).stem for r in rows if r["split"] == "test")
    assert sorted(p.stem for p in (evaluation / "overlays").iterdir()) == test_names
    assert "mean/image" in capsys.readouterr().out

    odd = tmp_path / "new"
    odd.mkdir()
    Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(odd / "odd.jpg")
    masks = tmp_path / "masks_out"
    assert run("predict", "--model", out / "models" / "best.pt", "--input", odd,
               "--output", masks, *FAST) == 0
    written = np.asarray(Image.open(masks / "odd.png"))
    assert written.shape == (37, 53) and set(np.unique(written)) <= {0, 255}
    assert run("predict", "--model", out / "models" / "best.pt", "--input", odd,
               "--output", masks, *FAST) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_multiclass_training_writes_palette_predictions(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "data", count=8, size=32, multiclass=True)
    out = tmp_path / "run"
    assert run("train", data, "--epoch", "1", "--out", out, *TRAIN) == 0  # DIR positional
    assert "multiclass, 3 class(es)" in capsys.readouterr().out
    assert run("predict", "--model", out / "models" / "best.pt", "--input",
               data / "images" / "img_000.png", "--output", tmp_path / "p", *FAST) == 0
    written = Image.open(tmp_path / "p" / "img_000.png")
    assert written.mode == "P" and set(np.unique(np.asarray(written))) <= {0, 1, 2}
    assert (out / "split.csv").is_file()  # the split it made is kept with the run


def test_bad_input_is_one_clear_line_before_training(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "data", count=4, size=16)
    (data / "masks" / "img_002.png").unlink()
    assert run("train", "--dataset", data, "--out", tmp_path / "run", *TRAIN) == 2
    err = capsys.readouterr().err
    assert "img_002.png: image has no mask" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "models").exists()


@pytest.mark.parametrize("argv, message", [
    (["eval", "--dataset", ".", "--model", "missing.pt"],
     "missing.pt: model not found: pass a checkpoint (.pt), a training run folder "),
    (["predict", "--model", "unet", "--input", ".", "--out", "o"],
     "--model unet: unet is an architecture without trained weights; pass a checkpoint"),
    (["eval", "--dataset", ".", "--model", "unetpp"],
     "unetpp is an architecture without trained weights"),
    (["train", "--dataset", ".", "--lr", "fast"], "--lr expects a number, got 'fast'"),
    (["train", "--dataset", "nowhere"], "nowhere: dataset folder not found"),
    (["train", "--dataset", ".", "--model", "vnet"], "unknown model 'vnet'"),
    (["bench", "--model", "best.pt"],
     "unetzoo bench: error: best.pt: no such file, nor a registered model name"),
])
def test_errors_exit_2_naming_the_problem(argv: list[str], message: str, capsys,
                                          tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path, count=2, size=16)
    assert run(*argv, "--no-progress") == 2
    assert message in capsys.readouterr().err


def test_an_unknown_flag_is_named_with_the_commands_own_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run("export", "--model", "m.pt", "--format", "onnx", "--out", "m.onnx", "--threads", "1")
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("usage: unetzoo export ")
    assert err.strip().endswith("unetzoo export: error: unrecognized arguments: --threads 1")


def test_models_lists_every_model_with_exact_counts(capsys) -> None:
    assert run("models") == 0
    out = capsys.readouterr().out
    assert "34,527,041" in out and "unetpp" in out
    assert "60,697,357" in out  # DPSAU2-Net's exact count, not a rounded one


@pytest.mark.parametrize("overlap, task", [(True, "multilabel"), (False, "multiclass")])
def test_class_folder_datasets_train_end_to_end(tmp_path: Path, capsys, overlap: bool,
                                                task: str) -> None:
    from tests.data.builders import write_class_folders

    data = write_class_folders(tmp_path / "data", count=4, size=32, overlap=overlap,
                               test_images=1)
    out = tmp_path / "run"
    assert run("train", "--dataset", data, "--epoch", "1", "--out", out, *TRAIN) == 0
    printed = capsys.readouterr().out
    assert f"{task}, " in printed and "val dice" in printed
    assert run("predict", "--model", out / "models" / "best.pt", "--input",
               data / "test" / "images", "--output", tmp_path / "p", *FAST) == 0
    written = sorted(p.relative_to(tmp_path / "p").as_posix()
                     for p in (tmp_path / "p").rglob("*.png"))
    assert written == (["left/test_000.png", "nucleus/test_000.png"] if overlap
                       else ["test_000.png"])
    assert run("eval", "--dataset", data, "--split", "val", "--model",
               out / "models" / "best.pt", "--out", tmp_path / "e", *FAST) == 0
    per_class = json.loads((tmp_path / "e" / "metrics.json").read_text())["per_class"]
    assert {"left", "nucleus"} <= set(per_class)


def test_convert_drive_train_and_evaluate_inside_the_fov(tmp_path: Path, capsys) -> None:
    from tests.data.builders import drive_zips

    src = drive_zips(tmp_path / "DRIVE", size=40)
    dest = tmp_path / "drive"
    assert run("convert", "drive", src, dest) == 0
    assert "drive: 4 images" in capsys.readouterr().out
    assert run("convert", "drive", src, dest) == 2
    assert "--overwrite" in capsys.readouterr().err
    out = tmp_path / "run"
    assert run("train", "--dataset", dest, "--csvfile", "split.csv", "--epoch", "1",
               "--out", out, "--val-fraction", "0.5", *TRAIN) == 0
    assert "binary, 1 class(es)" in capsys.readouterr().out
    assert load_checkpoint(out / "models" / "best.pt").class_names == ("vessel",)
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert metrics["images"] == 2 and "vessel" in metrics["per_class"]

    # A model that calls every pixel a vessel: its Dice counts false positives inside the
    # field of view only, so it equals the FOV-restricted Dice and not the whole-image one.
    checkpoint = load_checkpoint(out / "models" / "best.pt")
    weights = dict(checkpoint.state_dict)
    weights["head.bias"] = weights["head.bias"] + 100.0
    everywhere = tmp_path / "everywhere.pt"
    save_checkpoint(everywhere, dataclasses.replace(checkpoint, state_dict=weights))
    assert run("eval", "--dataset", dest, "--csvfile", "split.csv", "--model", everywhere,
               "--out", tmp_path / "e", *FAST) == 0
    rows = {Path(r["image"]).stem: float(r["dice"]) for r in
            csv.DictReader((tmp_path / "e" / "per_image.csv").read_text().splitlines())}
    for stem, dice in rows.items():
        vessel = np.asarray(Image.open(dest / "masks" / f"{stem}.png")) > 0
        fov = np.asarray(Image.open(dest / "roi" / f"{stem}.png")) > 0
        inside = 2 * (vessel & fov).sum() / ((vessel & fov).sum() + fov.sum())
        whole = 2 * vessel.sum() / (vessel.sum() + vessel.size)
        assert dice == pytest.approx(inside, abs=1e-6) and abs(dice - whole) > 0.01


def test_cityscapes_classes_and_colours_reach_the_predictions(tmp_path: Path) -> None:
    from tests.data.builders import cityscapes_files, write_files
    from unetzoo.artefacts.references import load_checkpoint

    src = write_files(tmp_path / "src", cityscapes_files(width=32, height=16))
    assert run("convert", "cityscapes", src, tmp_path / "cs") == 0
    out = tmp_path / "run"
    assert run("train", "--dataset", tmp_path / "cs", "--csvfile", "split.csv", "--epoch", "1",
               "--out", out, *TRAIN) == 0
    checkpoint = load_checkpoint(out / "models" / "best.pt")
    assert checkpoint.class_names[0] == "road" and checkpoint.class_colors[0] == (128, 64, 128)
    image = next((tmp_path / "cs" / "images").iterdir())
    assert run("predict", "--model", out / "models" / "best.pt", "--input", image,
               "--output", tmp_path / "p", *FAST) == 0
    written = Image.open(tmp_path / "p" / f"{image.stem}.png")
    assert written.mode == "P" and written.getpalette()[:6] == [128, 64, 128, 244, 35, 232]


def test_inspect_lists_problems_and_exits_2(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "data", count=3, size=16)
    assert run("inspect", data, "--no-progress") == 0
    assert "problems: none found" in capsys.readouterr().out
    (data / "masks" / "img_001.png").unlink()
    (data / "images" / "img_002.png").write_bytes(b"")
    assert run("inspect", data, "--no-progress") == 2
    captured = capsys.readouterr()
    assert "img_001.png: image has no mask" in captured.out
    assert "img_002.png: file is empty" in captured.out
    assert "2 problem(s) found" in captured.err


def test_a_bad_sample_met_in_training_is_logged_and_skipped(tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    import unetzoo.data.dataset as dataset_module

    data = write_pairs(tmp_path / "data", count=8, size=64)
    rows = ["image,mask,split"] + [f"images/img_{i:03d}.png,masks/img_{i:03d}.png,"
                                   f"{'val' if i == 7 else 'train'}" for i in range(8)]
    (data / "split.csv").write_text("\n".join(rows) + "\n")
    broken = data / "images" / "img_003.png"
    broken.write_bytes(broken.read_bytes()[:300])
    monkeypatch.setattr(dataset_module, "SAMPLE_SIZE", 2)
    assert run("train", "--dataset", data, "--csvfile", "split.csv", "--epoch", "1",
               "--out", tmp_path / "run", "--steps-per-epoch", "4", *TRAIN) == 0
    printed = capsys.readouterr().out
    assert "skipped a bad sample" in printed and "img_003.png" in printed
    assert "epoch 1/1" in printed


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_version_and_exits_0(flag: str, capsys) -> None:
    from unetzoo.version import __version__

    with pytest.raises(SystemExit) as exit_:
        run(flag)
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"unetzoo {__version__}\n" == "unetzoo 0.1.0\n"


DATASET_COMMANDS = [["train"], ["eval", "--model", "m.pt"], ["plan"], ["inspect"], ["split"]]


@pytest.mark.parametrize("command", DATASET_COMMANDS, ids=lambda c: c[0])
def test_the_dataset_is_positional_or_a_flag_but_not_two_folders(command: list[str], capsys,
                                                                 tmp_path: Path) -> None:
    assert run(*command, tmp_path / "a", "--dataset", tmp_path / "b") == 2
    assert capsys.readouterr().err == (
        f"unetzoo {command[0]}: error: the dataset is given twice, as {tmp_path / 'a'} and as "
        f"--dataset {tmp_path / 'b'}; give it once\n")
    if command[0] != "train":  # train may take it from --config or --resume
        assert run(*command) == 2
        assert capsys.readouterr().err == (f"unetzoo {command[0]}: error: no dataset given: "
                                           "name its folder, as DIR or with --dataset DIR\n")


def test_inspect_and_split_take_the_dataset_either_way(tmp_path: Path, capsys) -> None:
    data = write_pairs(tmp_path / "data", count=3, size=16)
    assert run("inspect", "--dataset", data, "--no-progress") == 0
    flag = capsys.readouterr().out
    assert "problems: none found" in flag
    # the same folder spelled twice is one dataset
    assert run("inspect", data, "--dataset", f"{data}/", "--no-progress") == 0
    assert capsys.readouterr().out == flag
    assert run("split", data, "--train-size", "0.5", "--csvfile", "a.csv") == 0
    assert run("split", "--dataset", data, "--train-size", "0.5", "--csvfile", "b.csv") == 0
    assert (data / "a.csv").read_text() == (data / "b.csv").read_text()
