"""Which files `unetzoo predict --input` reads, and how it says so when there are none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetzoo.engine.inference.predict import input_images
from unetzoo.errors import DataError, RunError


def test_folder_of_subfolders_names_them(tmp_path: Path) -> None:
    # images/<case>/x.png gave a bare "no image files in folder".
    for sub in ("caseB", "caseA", ".hidden"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "in" / sub / "x.png")
    with pytest.raises(DataError) as err:
        input_images(tmp_path / "in")
    assert str(err.value) == (f"{tmp_path / 'in'}: no image files in folder; it holds folders "
                              "(caseA, caseB): pass --recursive to predict the images in "
                              "them, or give one as --input")
    assert input_images(tmp_path / "in" / "caseA") == ([tmp_path / "in" / "caseA" / "x.png"],
                                                       [])
    found, skipped = input_images(tmp_path / "in", recursive=True)
    assert found == [tmp_path / "in" / sub / "x.png" for sub in ("caseA", "caseB")]
    assert [(e.path.name, e.kind) for e in skipped] == [(".hidden", "hidden")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no image files in folder \(it is empty\)$"):
        input_images(tmp_path / "empty")


def test_channel_conversion_is_said_in_one_line(tmp_path: Path, caplog) -> None:
    # A 3-channel model on gray inputs replicated them without a word.
    from tests.test_checkpoint import make_checkpoint
    from unetzoo.artefacts.checkpoint import save_checkpoint
    from unetzoo.engine.inference.predict import predict_paths
    from unetzoo.engine.inference.predictor import InferenceOptions
    from unetzoo.runtime import Runtime

    model = save_checkpoint(tmp_path / "best.pt", make_checkpoint())  # 3 input channels
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "in" / "gray.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in" / "rgb.png")
    Image.fromarray(np.zeros((16, 16, 2), np.uint8), "LA").save(tmp_path / "in" / "la.png")
    options = InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False))
    with caplog.at_level("INFO", logger="unetzoo"):
        result = predict_paths(model, tmp_path / "in", tmp_path / "out", options=options,
                               progress=False)
    assert result.files == 3
    assert ("images: 1 gray, 1 gray+alpha, 1 RGB; 1 with a declared alpha channel: the alpha "
            "is dropped (transparency, not an input channel; to keep it, save it as a TIFF "
            "sample not declared alpha); 2 gray: replicated to 3 channels") in caplog.messages


def tiny_model(tmp_path: Path) -> Path:
    from tests.test_checkpoint import make_checkpoint
    from unetzoo.artefacts.checkpoint import save_checkpoint

    return save_checkpoint(tmp_path / "best.pt", make_checkpoint())


def torch_options():
    from unetzoo.engine.inference.predictor import InferenceOptions
    from unetzoo.runtime import Runtime

    return InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False,
                                            backend="torch"))


def case_28(root: Path) -> Path:
    """../shared/cases/28: a folder of PNGs, .npy slices, WebP and JPEG 2000 exports,
    DICOM- and NIfTI-named files, notes, a .DS_Store and a sub-folder of more images."""
    new = root / "new"
    (new / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
    for i in range(4):
        Image.fromarray(rgb).save(new / f"n{i}.png")
    np.save(new / "slice_000.npy", rgb[..., 0])
    np.save(new / "slice_001.npy", rgb[..., 0].astype(np.float32) / 255)
    Image.fromarray(rgb).save(new / "photo.webp")
    Image.fromarray(rgb).save(new / "scan.jp2")
    (new / "IM-0001-0001.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    (new / "case_01.nii.gz").write_bytes(b"\x1f\x8b" + b"\0" * 64)
    (new / "notes.txt").write_text("scanned 2026-12-01\n")
    (new / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    Image.fromarray(rgb).save(new / "more" / "m0.png")
    return new


def test_case_28_every_input_is_accounted_for(tmp_path: Path, caplog) -> None:
    from unetzoo.engine.inference.predict import predict_paths

    new = case_28(tmp_path)
    with caplog.at_level("INFO", logger="unetzoo"):
        result = predict_paths(tiny_model(tmp_path), new, tmp_path / "pred", torch_options(),
                               progress=False)
    # the 8 images Pillow, tifffile and numpy read are predicted: 4 PNG, 2 .npy, WebP, JP2
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == [
        "n0.png", "n1.png", "n2.png", "n3.png", "photo.png", "scan.png", "slice_000.png",
        "slice_001.png"]
    assert result.files == 8 and not result.failed
    # what is not read is named, per kind, before any work
    lines = [m for m in caplog.messages if m.startswith(f"{new}: skipped")]
    assert f"{new}: skipped 3 entries: not image formats unetzoo reads (.dcm, .nii.gz, .txt): " \
        "IM-0001-0001.dcm, case_01.nii.gz, notes.txt" in lines, lines
    assert any("a folder (pass --recursive)" in m and "more" in m for m in lines), lines
    assert caplog.messages.index(lines[0]) < next(
        i for i, m in enumerate(caplog.messages) if m.startswith("backend:"))
    # --recursive predicts the sub-folder too, mirrored
    result = predict_paths(tiny_model(tmp_path), new, tmp_path / "all", torch_options(),
                           progress=False, recursive=True)
    assert (tmp_path / "all" / "more" / "m0.png").is_file() and result.files == 9
    # an output folder inside the input folder would be read as input by the next run
    with pytest.raises(RunError, match=r"inside the input folder .* --recursive reads"):
        predict_paths(tiny_model(tmp_path), new, new / "labels", torch_options(),
                      progress=False, recursive=True)
    assert not (new / "labels").exists()


def bad_folder(root: Path, good: int = 6) -> Path:
    """`good` images and four bad files: truncated, zero bytes, not an image, too large."""
    folder = root / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(good):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            folder / f"g{i}.png")
    data = (folder / "g0.png").read_bytes()
    (folder / "b_truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "b_wrong.png").write_bytes(b"this is not a png at all, only text")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "b_large.png")
    (folder / "b_empty.png").write_bytes(b"")
    return folder


def test_bad_files_are_named_and_the_rest_predicted(tmp_path: Path, monkeypatch,
                                                    caplog) -> None:
    from unetzoo.engine.inference.predict import PredictionFailures, predict_paths

    monkeypatch.setenv("UNETZOO_MAX_IMAGE_PIXELS", "1000")  # b_large.png is 1600 pixels
    folder = bad_folder(tmp_path)
    model = tiny_model(tmp_path)
    with caplog.at_level("INFO", logger="unetzoo"), \
            pytest.raises(PredictionFailures) as err:
        predict_paths(model, folder, tmp_path / "out", torch_options(), progress=False)
    message = str(err.value)
    assert message.startswith("3 of 9 image(s) could not be read or predicted: ")
    assert "b_large.png" in message and "b_truncated.png" in message
    assert "the other 6 were written" in message
    # the empty file is named before any work (a listing skips it), the rest as they fail
    assert any("b_empty.png" in m and "empty" in m for m in caplog.messages)
    listing = (tmp_path / "out" / "unreadable.txt").read_text().splitlines()
    assert sorted(line.split("\t")[0].rsplit("/", 1)[-1] for line in listing) == [
        "b_large.png", "b_truncated.png", "b_wrong.png"]
    assert sorted(p.name for p in (tmp_path / "out").glob("g*.png")) == [
        f"g{i}.png" for i in range(6)]
    with pytest.raises(PredictionFailures, match="--strict stops at the first"):
        predict_paths(model, folder, tmp_path / "strict", torch_options(), progress=False,
                      strict=True)
    assert len(list((tmp_path / "strict").glob("*.png"))) < 6  # stopped at b_large.png


def test_a_rerun_after_a_kill_finishes_the_rest_with_identical_outputs(tmp_path: Path) -> None:
    from unetzoo.engine.inference.predict import predict_paths

    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
            tmp_path / "in" / f"x{i}.png")
    model = tiny_model(tmp_path)
    predict_paths(model, tmp_path / "in", tmp_path / "whole", torch_options(), progress=False)
    expected = {p.name: p.read_bytes() for p in (tmp_path / "whole").iterdir()}
    # a kill after three images: three outputs whole, and the temporary of a fourth that
    # SIGKILL left behind (atomic_write cannot remove it), which the rerun removes
    (tmp_path / "cut").mkdir()
    for name in sorted(expected)[:3]:
        (tmp_path / "cut" / name).write_bytes(expected[name])
    fourth = sorted(expected)[3]
    (tmp_path / "cut" / f".{fourth}.k2j4x9a1.tmp").write_bytes(expected[fourth][:10])
    (tmp_path / "cut" / ".notes.txt").write_text("a user's hidden file: kept")
    with pytest.raises(RunError, match="--skip-existing to finish an interrupted run"):
        predict_paths(model, tmp_path / "in", tmp_path / "cut", torch_options(), progress=False)
    result = predict_paths(model, tmp_path / "in", tmp_path / "cut", torch_options(),
                           progress=False, skip_existing=True)
    assert result.skipped_existing == 3 and result.files == 5
    assert (tmp_path / "cut" / ".notes.txt").read_text() == "a user's hidden file: kept"
    (tmp_path / "cut" / ".notes.txt").unlink()
    assert {p.name: p.read_bytes() for p in (tmp_path / "cut").iterdir()} == expected
