"""`unetzoo export`, `unetzoo bench` and the inference flags of eval and predict."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.engine.test_export import tiny_checkpoint
from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import save_checkpoint
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.cli import main, setup_logging
from unetzoo.engine.inference.backends import open_exported
from unetzoo.models import create_model

FAST = ["--no-progress", "--device", "cpu"]


def run(*argv: str | Path) -> int:
    return main([str(a) for a in argv])


@pytest.fixture
def cli_logging() -> None:
    """The "unetzoo" logger as `main` leaves it (not propagating) before the test runs:
    pytest attaches caplog's handler only to loggers that are non-propagating when the test
    starts, so a test whose first `main` call happens inside it would capture nothing when
    run alone."""
    setup_logging()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "best.pt", tiny_checkpoint(num_classes=1)[1])


def masks(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_export_then_predict_from_the_file_alone(tmp_path: Path, checkpoint: Path,
                                                 capsys) -> None:
    pytest.importorskip("onnxruntime")
    images = write_pairs(tmp_path / "data", count=2, size=50) / "images"
    onnx = tmp_path / "model.onnx"
    assert run("export", "--model", checkpoint, "--format", "onnx", "--out", onnx) == 0
    assert "dynamic height and width" in capsys.readouterr().out
    assert run("export", "--model", checkpoint, "--format", "onnx", "--out", onnx) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run("predict", "--model", checkpoint, "--input", images, "--output",
               tmp_path / "torch", "--precision", "fp32", *FAST) == 0
    assert run("predict", "--model", onnx, "--input", images, "--output",
               tmp_path / "onnx", *FAST) == 0
    expected = masks(tmp_path / "torch")
    assert len(expected) == 2
    for name, mask in masks(tmp_path / "onnx").items():
        assert np.array_equal(mask, expected[name])
    scores = []
    for model in (checkpoint, onnx):  # an exported file evaluates like its checkpoint
        out = tmp_path / f"eval-{model.suffix}"
        assert run("eval", "--dataset", tmp_path / "data", "--model", model, "--split", "all",
                   "--precision", "fp32", "--out", out, *FAST) == 0
        scores.append(json.loads((out / "metrics.json").read_text())["global"]["dice"])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def symmetries() -> list[tuple]:
    """The eight symmetries of the square on `B x C x H x W` and their inverses."""
    rot = lambda k: lambda t: torch.rot90(t, k, (2, 3))  # noqa: E731
    flip = lambda *dims: lambda t: t.flip(dims)  # noqa: E731
    transpose = lambda t: t.transpose(2, 3)  # noqa: E731
    anti = lambda t: t.flip((2, 3)).transpose(2, 3)  # noqa: E731
    return [(flip(), flip()), (flip(3), flip(3)), (flip(2), flip(2)), (flip(2, 3), flip(2, 3)),
            (rot(1), rot(-1)), (rot(-1), rot(1)), (transpose, transpose), (anti, anti)]


def test_predict_with_tta_and_post_processing(tmp_path: Path) -> None:
    from scipy import ndimage

    image = write_pairs(tmp_path / "data", count=1, size=70) / "images" / "img_000.png"
    pixels = np.asarray(Image.open(image).convert("RGB"), np.float32) / 255
    x = torch.from_numpy((pixels - 0.5) / 0.25).permute(2, 0, 1)[None]  # its normalisation
    model, info = tiny_checkpoint(num_classes=1)
    # A random tiny U-Net is ~0.55 everywhere; its head scaled about the median logit gives
    # a noisy map: small components and holes, and views of the image that disagree.
    with torch.no_grad():
        median = float(model(x).median())
        weights = {k: v.clone() for k, v in model.state_dict().items()}
        weights["head.weight"] *= 1e6
        weights["head.bias"] = (weights["head.bias"] - median) * 1e6
        model.load_state_dict(weights)
        plain = torch.sigmoid(model(x))[0, 0].numpy()
        mean = np.mean([torch.sigmoid(inverse(model(view(x))))[0, 0].numpy()
                        for view, inverse in symmetries()], axis=0)
    # the whole image in one pass (patch 96 > 70), so the views are of the image itself
    checkpoint = save_checkpoint(tmp_path / "best.pt", replace(
        info, state_dict=weights, preprocessing=replace(info.preprocessing, img_size=96)))
    threshold = 0.3
    assert np.abs(mean - threshold).min() > 1e-3  # no pixel on the edge of the threshold
    tta = mean > threshold
    labels, count = ndimage.label(tta, structure=np.ones((3, 3)))  # 8-connected
    sizes = ndimage.sum_labels(tta, labels, index=np.arange(1, count + 1))
    kept = np.isin(labels, 1 + np.flatnonzero(sizes >= 20))
    expected = ndimage.binary_fill_holes(kept)  # background 4-connected to the border stays
    # each step matters here, so leaving one out changes the mask
    assert (tta != (plain > threshold)).sum() > 100 and (tta & ~kept).any()
    assert (expected & ~kept).sum() > 100

    assert run("predict", "--model", checkpoint, "--input", image, "--output", tmp_path / "a",
               "--tta", "flip-rot90", "--min-size", "20", "--fill-holes", "--threshold",
               str(threshold), "--batch", "2", "--precision", "fp32", "--backend", "torch",
               *FAST) == 0
    (mask,) = masks(tmp_path / "a").values()
    assert mask.shape == (70, 70) and set(np.unique(mask)) == {0, 255}
    assert np.array_equal(mask == 255, expected)


def test_eval_on_an_exported_backend(tmp_path: Path, checkpoint: Path) -> None:
    pytest.importorskip("onnxruntime")
    data = write_pairs(tmp_path / "data", count=3, size=40)
    scores = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert run("eval", "--dataset", data, "--model", checkpoint, "--split", "all",
                   "--backend", backend, "--precision", "fp32", "--out", out, *FAST) == 0
        scores[backend] = json.loads((out / "metrics.json").read_text())["global"]["dice"]
    assert scores["torch"] == pytest.approx(scores["onnxruntime"], abs=1e-6)


def test_bench_reports_speed_and_fraction_of_peak(tmp_path: Path, capsys) -> None:
    result = tmp_path / "bench.json"
    assert run("bench", "--model", "unet", "--preset", "tiny", "--img-size", "32", "--repeats",
               "2", "--warmup-passes", "0", "--precision", "fp32", "--json", result, *FAST) == 0
    printed = capsys.readouterr().out
    assert "GFLOPs/image" in printed and "of the measured fp32 peak" in printed
    numbers = json.loads(result.read_text())
    # 2 x the multiply-adds of the tiny U-Net's convs at 32 x 32 (widths 8-16-32): encoder
    # 811,008 + 884,736 + 884,736, 2x2 up-convs 2 x 131,072, decoder 1,769,472 + 1,769,472,
    # 1x1 head 8,192 = 6,389,760 MACs
    assert numbers["params"] == 29_625 and numbers["gflops"] == pytest.approx(12_779_520e-9)
    assert 0 < numbers["fraction_of_peak"] < 1.5 and numbers["latency_p90_ms"] > 0
    assert run("bench", "--model", "unet", "--preset", "tiny", "--img-size", "32", "--repeats",
               "1", "--train", "--batch", "2", *FAST) == 0
    assert "train at 32 x 32, batch 2" in capsys.readouterr().out
    assert run("bench", "--model", "nonet", *FAST) == 2
    assert run("bench", "--model", "unet", "--backend", "onnxruntime", "--precision", "bf16",
               *FAST) == 2
    assert "float32" in capsys.readouterr().err


def unetpp_checkpoint(path: Path, deep_supervision: bool = True) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = create_model("unetpp", 3, 1, preset="tiny", deep_supervision=deep_supervision)
    _, info = tiny_checkpoint(num_classes=1)
    info.model_spec, info.state_dict = model.unetzoo_spec, model.state_dict()
    return save_checkpoint(path, info), model.eval()


def test_checkpoint_builds_the_pruned_unetpp(tmp_path: Path) -> None:
    path, model = unetpp_checkpoint(tmp_path / "unetpp.pt")
    x = torch.randn(1, 3, 37, 45)
    pruned = load_checkpoint(path).build_model(prune_depth=1)
    with torch.no_grad():
        full, expected, got = model(x), model.prune(1)(x), pruned(x)
    assert torch.equal(got, expected) and not torch.allclose(got, full)


def test_prune_depth_in_predict_and_export(tmp_path: Path, capsys) -> None:
    pytest.importorskip("onnxruntime")
    images = write_pairs(tmp_path / "data", count=2, size=44) / "images"
    path, _ = unetpp_checkpoint(tmp_path / "unetpp.pt")
    onnx = tmp_path / "l1.onnx"
    assert run("export", "--model", path, "--format", "onnx", "--out", onnx,
               "--prune-depth", "1") == 0
    assert open_exported(onnx).checkpoint.model_spec["kwargs"]["prune_depth"] == 1
    assert run("predict", "--model", path, "--input", images, "--output", tmp_path / "torch",
               "--prune-depth", "1", "--precision", "fp32", *FAST) == 0
    assert run("predict", "--model", onnx, "--input", images, "--output", tmp_path / "onnx",
               *FAST) == 0
    expected = masks(tmp_path / "torch")
    assert len(expected) == 2 and masks(tmp_path / "onnx").keys() == expected.keys()
    for name, mask in masks(tmp_path / "onnx").items():
        assert np.array_equal(mask, expected[name])
    assert run("predict", "--model", onnx, "--input", images, "--output", tmp_path / "x",
               "--prune-depth", "1", *FAST) == 2
    assert "needs a checkpoint" in capsys.readouterr().err


def test_prune_depth_errors_name_the_problem(tmp_path: Path, checkpoint: Path, capsys) -> None:
    images = write_pairs(tmp_path / "data", count=1, size=40) / "images"
    plain, _ = unetpp_checkpoint(tmp_path / "plain.pt", deep_supervision=False)
    deep, _ = unetpp_checkpoint(tmp_path / "deep.pt")
    cases = [(checkpoint, "1", "applies to UNet++"), (plain, "1", "deep_supervision=True"),
             (deep, "9", "prune depth must be in 1..")]
    for path, depth, message in cases:
        assert run("predict", "--model", path, "--input", images, "--output",
                   tmp_path / "out", "--prune-depth", depth, *FAST) == 2
        assert message in capsys.readouterr().err


CASES = Path(__file__).resolve().parents[3] / "shared" / "cases"


def test_inputs_whose_names_clash_get_distinct_outputs(tmp_path: Path, checkpoint: Path,
                                                       capsys) -> None:
    """Case 20: scan.png + scan.tif and case.JPG + case.jpg are four pictures: four masks,
    and the count printed is the count on disk."""
    case = CASES / "20-predict-same-stem-outputs"
    if not (case / "make.py").is_file():
        pytest.skip(f"field cases not present at {CASES}")
    work = tmp_path / "case" / "20"
    work.mkdir(parents=True)
    shutil.copy(CASES / "gen.py", tmp_path / "case" / "gen.py")
    shutil.copy(case / "make.py", work / "make.py")
    subprocess.run([sys.executable, "make.py"], cwd=work, check=True)
    assert run("predict", "--model", checkpoint, "--input", work / "new", "--output",
               tmp_path / "out", "--precision", "fp32", *FAST) == 0
    printed = capsys.readouterr().out
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["case_jpg.png", "case_jpg_2.png", "scan_png.png", "scan_tif.png"]
    assert "4 image(s)" in printed and "(4 files" in printed and "named apart" in printed
    # each output is the prediction of its own input
    for name, source in (("scan_png.png", "scan.png"), ("scan_tif.png", "scan.tif")):
        alone = tmp_path / "alone" / name
        assert run("predict", "--model", checkpoint, "--input", work / "new" / source,
                   "--output", alone, "--precision", "fp32", *FAST) == 0
        (single,) = alone.iterdir()
        assert np.array_equal(np.asarray(Image.open(single)),
                              np.asarray(Image.open(tmp_path / "out" / name)))


def test_save_attention_tiles_large_images(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("attention_unet", 3, 1, preset="tiny")
    _, info = tiny_checkpoint(num_classes=1)
    info.model_spec, info.state_dict = model.unetzoo_spec, model.state_dict()
    path = save_checkpoint(tmp_path / "att.pt", info)
    images = write_pairs(tmp_path / "data", count=1, size=75) / "images"  # > patch 32: tiled
    assert run("predict", "--model", path, "--input", images, "--output", tmp_path / "out",
               "--save-attention", *FAST) == 0
    maps = sorted((tmp_path / "out" / "attention").iterdir())
    assert [p.name for p in maps] == ["img_000_gate1.png", "img_000_gate2.png"]
    assert all(np.asarray(Image.open(p)).shape == (75, 75, 3) for p in maps)


def test_predict_under_torchrun_shards_the_inputs(tmp_path: Path, checkpoint: Path) -> None:
    """Two CPU processes: every output is written once, by one rank, and equals the
    single-process output."""
    from tests.engine.processes import finish, torchrun

    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate([40, 70, 33, 90, 50]):  # some tiled, 5 over 2 ranks
        source = write_pairs(tmp_path / f"d{i}", count=1, size=size, seed=i) / "images"
        shutil.copy(source / "img_000.png", images / f"im{i}.png")
    assert run("predict", "--model", checkpoint, "--input", images, "--output",
               tmp_path / "single", "--precision", "fp32", *FAST) == 0
    writes = tmp_path / "writes.txt"
    process = torchrun(["--standalone", "--nproc-per-node", 2],
                       ["predict", "--model", checkpoint, "--input", images, "--output",
                        tmp_path / "multi", "--precision", "fp32", *FAST], writes=writes)
    code, out, err = finish(process)
    assert code == 0, err
    assert "5 image(s)" in out and "(5 files" in out and out.count("image(s) ->") == 1
    written = [line.split(" ", 1) for line in writes.read_text().splitlines()
               if "/multi/" in line]
    names = [Path(path).name for _, path in written]
    assert sorted(names) == sorted(set(names)) and len(names) == 5
    assert {rank for rank, _ in written} == {"0", "1"}
    assert masks(tmp_path / "multi").keys() == masks(tmp_path / "single").keys()
    for name, mask in masks(tmp_path / "multi").items():
        assert np.array_equal(mask, masks(tmp_path / "single")[name])


def test_every_command_taking_a_trained_model_takes_a_run_folder(tmp_path: Path,
                                                                 checkpoint: Path,
                                                                 capsys) -> None:
    """`--model RUN` (what train prints as "run folder") is RUN/models/best.pt, said once;
    a run folder without it names what it holds."""
    pytest.importorskip("onnxruntime")
    data = write_pairs(tmp_path / "data", count=2, size=40)
    run_dir = tmp_path / "run"
    (run_dir / "models").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model: unet\n")
    shutil.copy(checkpoint, run_dir / "models" / "best.pt")
    said = "a training run folder; using its best checkpoint"
    for name, model in (("file", run_dir / "models" / "best.pt"), ("run", run_dir)):
        assert run("predict", "--model", model, "--input", data / "images", "--output",
                   tmp_path / f"pred-{name}", "--precision", "fp32", *FAST) == 0
        assert (said in "".join(capsys.readouterr())) == (name == "run")
    got, expected = masks(tmp_path / "pred-run"), masks(tmp_path / "pred-file")
    assert sorted(got) == sorted(expected) and len(got) == 2
    assert all(np.array_equal(got[n], expected[n]) for n in got)
    assert run("eval", "--dataset", data, "--model", run_dir, "--split", "all",
               "--precision", "fp32", "--no-report", *FAST) == 0
    assert (run_dir / "eval-all" / "metrics.json").is_file()  # beside the run, as for best.pt
    assert run("export", "--model", run_dir, "--format", "onnx", "--out",
               tmp_path / "m.onnx") == 0
    assert open_exported(tmp_path / "m.onnx", "onnxruntime").checkpoint.preprocessing == \
        load_checkpoint(checkpoint).preprocessing
    assert run("bench", "--model", run_dir, "--img-size", "32", "--repeats", "1",
               "--warmup-passes", "0", "--backend", "torch", *FAST) == 0
    assert said in "".join(capsys.readouterr())
    (run_dir / "models" / "best.pt").rename(run_dir / "models" / "epoch_last.pt")
    assert run("predict", "--model", run_dir, "--input", data / "images", "--output",
               tmp_path / "none", *FAST) == 2
    err = capsys.readouterr().err
    assert "without models/best.pt; models/ holds epoch_last.pt: pass one with --model, e.g. " \
        f"--model {(run_dir / 'models' / 'epoch_last.pt').as_posix()}" in err
    assert len(err.strip().splitlines()) == 1 and str(run_dir) in err


def test_post_processing_that_empties_every_prediction_is_said(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, cli_logging: None) -> None:
    _, info = tiny_checkpoint(num_classes=1)
    state = dict(info.state_dict)
    head = [k for k in state if k.endswith("bias")][-1]
    state[head] = torch.full_like(state[head], 20.0)  # every pixel foreground
    checkpoint = save_checkpoint(tmp_path / "best.pt", replace(info, state_dict=state))
    data = write_pairs(tmp_path / "data", count=3, size=40)
    with caplog.at_level("WARNING", logger="unetzoo"):
        assert run("eval", "--dataset", data, "--model", checkpoint, "--split", "all",
                   "--min-size", "5000", "--out", tmp_path / "e", *FAST) == 0
        assert run("predict", "--model", checkpoint, "--input", data / "images", "--output",
                   tmp_path / "p", "--min-size", "5000", *FAST) == 0
        assert run("predict", "--model", checkpoint, "--input", data / "images", "--output",
                   tmp_path / "q", "--min-size", "100", *FAST) == 0  # 1600 px objects stay
    said = [r.getMessage() for r in caplog.records if "--min-size" in r.getMessage()]
    assert said == ["post-processing (--min-size 5000) removed every predicted foreground "
                    "pixel of 3 of 3 image(s): their masks are empty because of it; lower "
                    "--min-size or leave it out"] * 2
    assert all(not m.any() for m in masks(tmp_path / "p").values())
    assert all(m.all() for m in masks(tmp_path / "q").values())


def test_eval_and_predict_share_the_threshold(tmp_path: Path, capsys) -> None:
    # a model whose probability is 0.7 at every pixel: foreground above 0.5, nothing above 0.8
    _, info = tiny_checkpoint(num_classes=1)
    weights = {k: v.clone() for k, v in info.state_dict.items()}
    weights["head.weight"].zero_()
    weights["head.bias"].fill_(float(torch.logit(torch.tensor(0.7))))
    constant = save_checkpoint(tmp_path / "constant.pt", replace(info, state_dict=weights))
    data = write_pairs(tmp_path / "data", count=2, size=32)
    truth = np.stack([np.asarray(Image.open(p)) > 0 for p in sorted(data.glob("masks/*.png"))])
    everywhere = 2 * truth.sum() / (truth.sum() + truth.size)
    for threshold, dice, value in (("0.5", everywhere, 255), ("0.8", 0.0, 0)):
        out = tmp_path / f"eval-{threshold}"
        assert run("eval", data, "--model", constant, "--split", "all", "--threshold",
                   threshold, "--precision", "fp32", "--backend", "torch", "--no-report",
                   "--out", out, *FAST) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["global"]["dice"] == pytest.approx(dice, abs=1e-6)
        assert run("predict", "--model", constant, "--input", data / "images", "--threshold",
                   threshold, "--precision", "fp32", "--backend", "torch", "--output",
                   tmp_path / f"p-{threshold}", *FAST) == 0
        written = masks(tmp_path / f"p-{threshold}")
        assert len(written) == 2 and all((m == value).all() for m in written.values())
    capsys.readouterr()
    for command in (["eval", data], ["predict", "--input", data / "images", "--out",
                                     tmp_path / "x"]):
        assert run(*command, "--model", constant, "--threshold", "1", *FAST) == 2
        assert capsys.readouterr().err == (f"unetzoo {command[0]}: error: --threshold must be "
                                           "in (0, 1), got 1.0\n")
