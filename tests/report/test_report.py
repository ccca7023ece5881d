"""The report page and the comparison, without a browser: what they choose, compute and
write."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unetzoo
from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import Checkpoint
from unetzoo.cli import main
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.errors import RunError
from unetzoo.metrics import MetricAccumulator, class_confusion
from unetzoo.models import create_model, list_models
from unetzoo.report import ReportOptions, collect_run, write_comparison, write_report
from unetzoo.report.gallery import (
    AssetWriter,
    SideOutputs,
    Source,
    choose_images,
    dataset_pairs,
    error_zoom,
    label_layer,
    reading_for,
    render_images,
)
from unetzoo.report.machine import machine_line
from unetzoo.report.page import ASSETS, MARKER, is_generated, write_page_safely
from unetzoo.runtime import Runtime
from unetzoo.viz import FN, FP, IGNORED, TN, TP, error_codes

from .conftest import TINY, write_large_run


def page_data(html: Path) -> dict:
    text = html.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', text,
                      re.S)
    assert match, "no page data"
    return json.loads(match.group(1).replace("<\\/", "</"))


def per_image(folder: Path) -> dict[str, dict[str, float]]:
    with (folder / "per_image.csv").open() as fh:
        return {r["image"]: {k: float(v) for k, v in r.items() if k != "image"}
                for r in csv.DictReader(fh)}


# -- choosing and drawing -------------------------------------------------------------------
def test_choose_images_takes_the_worst_and_best_and_bounds_the_pictures() -> None:
    rows = [{"image": f"i{i}", "dice": v} for i, v in
            enumerate([0.5, 0.9, math.nan, 0.1, 0.7, 0.3, 0.95, 0.2])]
    worst, best, pictured = choose_images(rows, "dice", 2, overlays=4)
    assert worst == [2, 3]  # NaN counts as worst, then 0.1
    assert best == [6, 1]
    assert pictured == [1, 2, 3, 6]  # more rows than overlays: the gallery's only
    _, _, pictured = choose_images(rows, "dice", 2, overlays=8)
    assert pictured == list(range(8))
    worst, best, _ = choose_images(rows[:3], "dice", 8, overlays=0)
    assert (worst, best) == ([2, 0], [1])  # a small evaluation: worse half, better half


def test_error_codes_binary_multiclass_and_multilabel() -> None:
    target = np.array([[0, 1, 1, 255], [2, 2, 0, 0]])
    pred = np.array([[1, 1, 0, 1], [2, 1, 0, 2]])
    assert error_codes(target, pred).tolist() == [[FP, TP, FN, IGNORED], [TP, FN, TN, FP]]
    truth = np.array([[[1, 0]], [[1, 1]]])  # K=2 x 1 x 2
    guess = np.array([[[1, 1]], [[0, 1]]])
    assert error_codes(truth, guess).tolist() == [[FN, FP]]


def test_error_zoom_finds_the_densest_errors() -> None:
    codes = np.zeros((600, 900), np.uint8)
    codes[400:450, 700:760] = FP
    codes[10, 10] = FN
    x0, y0, x1, y1 = error_zoom(codes)
    assert 0 <= x0 * 900 <= 700 and x1 * 900 >= 760
    assert 0 <= y0 * 600 <= 400 and y1 * 600 >= 450
    assert round((x1 - x0) * 900) == 300  # a third of the longer side
    assert error_zoom(np.zeros((100, 100), np.uint8)) is None


def test_label_layer_colours_classes_and_leaves_background_transparent() -> None:
    colors = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    layer = label_layer(np.array([[0, 1, 2, 255]]), colors)
    assert layer[0, :, 3].tolist() == [0, 255, 255, 0]
    assert layer[0, 2, :3].tolist() == [0, 255, 0]
    both = label_layer(np.array([[[1, 0, 1]], [[0, 0, 1]]]), colors)  # multilabel K=2
    assert both[0, :, 3].tolist() == [255, 0, 255]
    assert both[0, 0, :3].tolist() == [255, 0, 0] and both[0, 2, :3].tolist() == [0, 255, 0]


def test_class_confusion_counts_pixels_by_true_and_predicted_class() -> None:
    target = torch.tensor([[[0, 1, 2], [2, 255, 1]]])
    pred = torch.tensor([[[0, 2, 2], [1, 0, 1]]])
    assert class_confusion(pred, target, 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 1, 1]]
    acc = MetricAccumulator("multiclass", 3, ["bg", "a", "b"])
    acc.update(pred, target, ["x"])
    acc.update(pred, target, ["y"])
    assert acc.summary()["confusion_matrix"] == [[2, 0, 0], [0, 2, 2], [0, 2, 2]]
    acc.add_counts(acc.stacked()[:1], ["z"])  # counts without a confusion: none reported
    assert "confusion_matrix" not in acc.summary()


def test_side_outputs_keep_every_layer_in_eval_mode() -> None:
    model = create_model("unetpp", 3, 2, preset="tiny").eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    before = norms[0].running_mean.clone()
    wrapper = SideOutputs(model, "side")
    with torch.no_grad():
        out = wrapper(torch.randn(1, 3, 24, 24))
    assert out.shape == (1, 2 * (len(model.output_weights) - 1), 24, 24)
    assert torch.equal(norms[0].running_mean, before)  # batch norm ran in eval mode
    assert not any(m.training for m in model.modules())
    model.train()
    with torch.no_grad():
        reference = model(torch.randn(1, 3, 24, 24))
    assert len(reference) - 1 == wrapper.count


def test_attention_maps_are_resampled_to_the_input() -> None:
    model = create_model("attention_unet", 1, 1, preset="tiny").eval()
    wrapper = SideOutputs(model, "attention")
    assert SideOutputs.kinds(model) == ["attention"]
    with torch.no_grad():
        out = wrapper(torch.randn(1, 1, 30, 22))
    assert out.shape == (1, len(model.gates), 30, 22)
    assert float(out.min()) >= 0 and float(out.max()) <= 1


# -- pages ----------------------------------------------------------------------------------
def test_train_writes_its_report_and_the_machine_it_ran_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="unetzoo")  # as the CLI: train.log gets the header
    data = write_pairs(tmp_path / "data", count=10, size=32)
    options = {**TINY, "report": True}
    unetzoo.train(dataset=str(data), model="unet", epoch=1, out=str(tmp_path / "r"),
                  **options)
    unetzoo.train(resume=str(tmp_path / "r"), epoch=2)
    html = tmp_path / "r" / "report.html"
    assert is_generated(html)
    run = collect_run(tmp_path / "r")
    assert run.log.sessions == 2 and len(run.history) == 2
    cpu = machine_line().split(", load")[0]  # the load average changes between calls
    assert len(run.log.machines) == 2 and run.log.machines[0].startswith(cpu)
    assert run.log.splits == {"train": 8, "val": 1, "test": 1}
    text = html.read_text()
    assert "2 sessions (resumed)" in text and run.log.machines[-1] in text
    assert len(page_data(html)["rows"]) == 1  # the test evaluation, with its picture


def test_report_of_a_trained_run(binary_runs: tuple[Path, Path]) -> None:
    run = binary_runs[0]
    html = write_report(run, options=ReportOptions(gallery=1, overlays=100))
    assert html == run / "report.html"
    text = html.read_text()
    assert 'content="unetzoo report"' in text and "http://" not in text.replace(
        "http://www.w3.org", "")
    data = page_data(html)
    scored = per_image(run / "test")
    assert [r[0] for r in data["rows"]] == list(scored)
    assert set(data["pictured"]) == set(scored)  # 2 test images <= overlays: all pictured
    for asset in data["assets"]:
        files = [asset["image"], asset["truth"], *asset["preds"].values(),
                 *asset["errors"].values()]
        assert all((run / f).is_file() for f in files)
        # the pictures show the prediction that was scored
        assert asset["scores"]["model"] == pytest.approx(scored[asset["name"]]["dice"],
                                                         abs=1e-6)
    gallery = [a for a in data["assets"] if a["maps"]]
    assert len(gallery) == 2  # worst 1 + best 1, each with the gates' attention maps
    gates = len(collect_run(run).checkpoint.build_model().gates)
    assert all(len(a["maps"]["model"]) == gates for a in gallery)
    # the default loss as it ran for a binary task, as the training log says it
    assert collect_run(run).config["loss"] == "ce+dice" and "loss bce+dice," in text
    assert (run / ASSETS / MARKER).is_file()


def test_report_of_a_multiclass_deep_supervised_run(multiclass_run: Path) -> None:
    html = write_report(multiclass_run)
    metrics = json.loads((multiclass_run / "test" / "metrics.json").read_text())
    matrix = metrics["confusion_matrix"]
    assert len(matrix) == 3 and sum(map(sum, matrix)) > 0
    text = html.read_text()
    assert 'data-testid="confusion"' in text
    data = page_data(html)
    sides = len(collect_run(multiclass_run).checkpoint.build_model().output_weights) - 1
    assert any(len(a["maps"].get("model", [])) == sides for a in data["assets"])


def test_report_of_an_evaluation_folder(binary_runs: tuple[Path, Path]) -> None:
    run = binary_runs[1]
    out = run / "eval-all"
    assert main(["eval", "--dataset", str(collect_run(run).config["dataset"]),
                 "--model", str(run / "models" / "best.pt"), "--split", "all", "--out",
                 str(out), "--no-progress", "--precision", "fp32"]) == 0
    assert (out / "report.html").is_file()  # written by eval
    recorded = json.loads((out / "metrics.json").read_text())["inference"]
    assert recorded["precision"] == "fp32" and recorded["tta"] == "none"
    data = page_data(out / "report.html")
    scored = per_image(out)
    assert len(data["rows"]) == 24
    for asset in data["assets"]:
        assert asset["scores"]["model"] == pytest.approx(scored[asset["name"]]["dice"],
                                                         abs=1e-6)
    run_data = collect_run(out)
    assert run_data.run_dir == run and run_data.history  # the training run is found


def test_report_never_replaces_a_page_it_did_not_write(tmp_path: Path,
                                                       large_run: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "metrics.csv"):
        (run / name).write_bytes((large_run / name).read_bytes())
    (run / "report.html").write_text("<html>my notes</html>")
    with pytest.raises(RunError, match="not written by unetzoo"):
        write_report(run)
    assert (run / "report.html").read_text() == "<html>my notes</html>"
    write_report(run, overwrite=True)
    write_report(run)  # its own page is made again without --overwrite
    assert 'content="unetzoo report"' in (run / "report.html").read_text()


def test_a_failing_report_logs_one_line_and_returns(caplog: pytest.LogCaptureFixture,
                                                    tmp_path: Path) -> None:
    def fail() -> Path:
        raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="unetzoo"):
        assert write_page_safely("report.html", fail) is None
    assert "report.html not written (RuntimeError: boom)" in caplog.text


def test_large_evaluation_page_stays_bounded(large_run: Path) -> None:
    html = write_report(large_run)
    data = page_data(html)
    assert len(data["rows"]) == 10_000 and data["page_rows"] == 50
    assert data["assets"] == []  # no checkpoint or dataset: no pictures, said on the page
    text = html.read_text()
    assert "no pictures" in text
    assert html.stat().st_size < 1_500_000  # 10,000 rows x 9 metrics at 6 decimals: ~1 MB
    assert text.count("<img") < 10


def test_compare_two_runs(binary_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = binary_runs
    result = write_comparison([a, b], tmp_path / "ab.html",
                              options=ReportOptions(gallery=2))
    assert result.page.is_file()
    lines = result.console.splitlines()
    dice_a = json.loads((a / "test" / "metrics.json").read_text())["mean_over_images"]["dice"]
    dice_b = json.loads((b / "test" / "metrics.json").read_text())["mean_over_images"]["dice"]
    row = next(ln for ln in lines if ln.startswith("dice (mean / image)"))
    assert row.split()[-3:] == [f"{dice_a:.4f}", f"{dice_b:.4f}", f"{dice_b - dice_a:+.4f}"]
    differ = lines[lines.index("config differences:") + 1:]
    assert any(ln.split()[0] == "lr" for ln in differ)
    assert any(ln.split()[0] == "model" for ln in differ)
    data = page_data(result.page)
    deltas = {r[0]: r[3] for r in data["rows"]}
    a_scores, b_scores = per_image(a / "test"), per_image(b / "test")
    for name, delta in deltas.items():
        assert delta == pytest.approx(b_scores[name]["dice"] - a_scores[name]["dice"],
                                      abs=1e-6)
    chosen = [asset["name"] for asset in data["assets"]]
    assert chosen == sorted(deltas, key=lambda n: -abs(deltas[n]))[:2]
    for asset in data["assets"]:
        assert set(asset["preds"]) == {"A", "B"}
        assert asset["scores"]["A"] == pytest.approx(a_scores[asset["name"]]["dice"],
                                                     abs=1e-6)
        assert asset["scores"]["B"] == pytest.approx(b_scores[asset["name"]]["dice"],
                                                     abs=1e-6)
    assert (tmp_path / "ab_files" / MARKER).is_file()


def test_cli_report_and_compare(binary_runs: tuple[Path, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture) -> None:
    a, b = binary_runs
    assert main(["report", str(a), "--gallery", "1"]) == 0
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "c.html")]) == 0
    assert "comparison written to" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "missing: not found" in capsys.readouterr().err
    assert main(["compare", str(a)]) == 2
    assert main(["report", str(a), "--metric", "nope"]) == 2


@pytest.mark.parametrize("name", list_models())
def test_every_model_gets_its_pictures_and_maps(name: str, tmp_path: Path) -> None:
    extra = {"deep_supervision": True} if name == "dpsau2net" else {}
    model = create_model(name, 3, 1, preset="tiny", **extra).eval()
    checkpoint = Checkpoint(model.unetzoo_spec, "binary", ("foreground",),
                            Preprocessing(3, (0.5,) * 3, (0.25,) * 3, 32),
                            model.state_dict())
    data = write_pairs(tmp_path / "data", count=1, size=36)
    pairs = dataset_pairs(data, None, None, ["img_000"])
    options = InferenceOptions(Runtime.resolve(precision="fp32"))
    assets = render_images([Source("model", checkpoint, options)], pairs,
                           reading_for(checkpoint, data, pairs), ["img_000"],
                           AssetWriter(tmp_path / "pics", "pics"), {"img_000"})["img_000"]
    expected = sum(SideOutputs(model, kind).count for kind in SideOutputs.kinds(model))
    if name in ("u2net", "u2netp", "unetpp", "dpsau2net", "attention_unet",
                "r2_attention_unet"):
        assert expected > 0
    assert len(assets.maps.get("model", [])) == expected
    for _, path in assets.maps.get("model", []):
        assert Image.open(tmp_path / path).size == (36, 36)
    assert Image.open(tmp_path / assets.preds["model"]).mode == "RGBA"


def test_pictures_that_differ_from_the_scores_are_flagged(binary_runs: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    run = tmp_path / "moved"
    shutil.copytree(binary_runs[1], run, ignore=shutil.ignore_patterns("report*", "eval-*"))
    table = run / "test" / "per_image.csv"
    with table.open() as fh:
        rows = list(csv.DictReader(fh))
    rows[0]["dice"] = "0.123456"  # no longer what the checkpoint predicts
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run / "models" / "epoch_last.pt").unlink()
    html = write_report(run, options=ReportOptions(gallery=2))
    text = html.read_text()
    assert text.count("re-predicted dice") == 1  # on the one card whose score was changed
    data = page_data(html)
    assert data["assets"] and data["assets"][0]["scores"]["model"] != 0.123456


def test_the_class_table_marks_a_class_in_no_mask_and_never_predicted(tmp_path: Path) -> None:
    run = write_large_run(tmp_path / "run", images=3, epochs=2)
    metrics = MetricAccumulator("multiclass", 3, ("bg", "cell", "debris"))
    metrics.update(torch.tensor([[[1, 1, 0, 0]]]), torch.tensor([[[1, 0, 0, 0]]]), ["x"])
    summary = metrics.summary()
    assert summary["per_class"]["debris"]["absent"] is True
    assert summary["per_class"]["cell"]["absent"] is False
    assert summary["per_class"]["debris"]["dice"] == 1.0  # the documented per-class value
    metrics_file = run / "test" / "metrics.json"
    stored = json.loads(metrics_file.read_text())
    metrics_file.write_text(json.dumps({**stored, "per_class": summary["per_class"]}))
    text = write_report(run).read_text()
    row = re.search(r"<tr[^>]*><td>debris[^\n]*?</tr>", text)
    assert row is not None and "(absent)" in row.group(0)
    assert "1.000" not in row.group(0) and row.group(0).count("<td>-</td>") == 6
    cell = re.search(r"<tr><td>cell</td>.*?</tr>", text)
    assert cell is not None and "<td>-</td>" not in cell.group(0)
