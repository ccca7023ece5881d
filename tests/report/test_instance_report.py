"""The report and comparison pages of instance models: the objects section's numbers come
from metrics.json, the gallery ranks by per-image mean AP, and its pictures outline each
object in the colour of its error."""

from __future__ import annotations

import csv
import html as htmllib
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unetzoo
from unetzoo.artefacts.references import load_checkpoint
from unetzoo.cli import main
from unetzoo.data.io import read_image
from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
from unetzoo.instances.matching import object_errors
from unetzoo.report import ReportOptions, write_comparison
from unetzoo.report.gallery import (
    AssetWriter,
    choose_images,
    dataset_pairs,
    reading_for,
    render_images,
    source_for,
)
from unetzoo.report.objects import (
    FILL_ALPHA,
    OBJECT_KINDS,
    VOID_COLOR,
    display_labels,
    inner_outlines,
    object_colors,
    object_error_layer,
    object_layer,
    objects_section,
)
from unetzoo.runtime import Runtime

from .test_report import page_data

GREEN, RED, MAGENTA, BLUE, ORANGE = (OBJECT_KINDS[k][0] for k in
                                     ("tp", "fp", "merged", "fn", "split"))


def disc(labels: np.ndarray, y: int, x: int, r: int, value: int) -> None:
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    labels[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = value


def metrics(run: Path) -> dict:
    return json.loads((run / "test" / "metrics.json").read_text())


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "test" / "per_image.csv").open() as fh:
        return list(csv.DictReader(fh))


def table_cells(text: str, testid: str) -> dict[str, list[str]]:
    """data-key -> the text of its cells, of the table with `data-testid=testid`."""
    table = re.search(rf'<table[^>]*data-testid="{testid}".*?</table>', text, re.S)
    assert table, f"no table {testid}"
    out = {}
    for key, row in re.findall(r'<tr data-key="([^"]+)">(.*?)</tr>', table.group(0), re.S):
        out[key] = [htmllib.unescape(re.sub(r"<[^>]+>", "", c)).strip()
                    for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
    return out


# -- drawing --------------------------------------------------------------------------------
def test_object_error_layer_outlines_each_kind_in_its_colour() -> None:
    """Hand-made objects, one of each kind: the edge pixels take the kind's colour, the
    inside a faint fill, void grey, the background stays transparent."""
    true = np.zeros((60, 80), np.int32)
    pred = np.zeros((60, 80), np.int32)
    disc(true, 12, 12, 6, 1)        # missed: nothing predicted there
    disc(true, 12, 40, 6, 2)        # matched exactly
    disc(pred, 12, 40, 6, 7)
    true[30:40, 5:15] = 3           # two touching true objects ...
    true[30:40, 15:25] = 4
    pred[28:42, 3:27] = 8           # ... covered by one prediction: a merge (IoU 0.30 each)
    true[30:40, 40:60] = 5          # one true object ...
    pred[30:40, 40:47] = 9          # ... predicted as three pieces: a split
    pred[30:40, 47:54] = 10
    pred[30:40, 54:60] = 11
    disc(pred, 50, 72, 4, 12)       # an extra prediction
    true[55:60, 0:5] = -1           # void
    errors = object_errors(np.where(true < 0, 0, true), pred, 0.5)
    assert errors.fn.tolist() == [1, 3, 4, 5] and errors.tp_true.tolist() == [2]
    assert errors.fp.tolist() == [8, 9, 10, 11, 12]
    assert errors.merged.tolist() == [8] and errors.split.tolist() == [5]
    layer = object_error_layer(true, pred, errors, (80, 60))
    assert layer.shape == (60, 80, 4)

    def pixel(y: int, x: int) -> tuple[int, ...]:
        return tuple(int(v) for v in layer[y, x])

    assert pixel(12, 6) == (*BLUE, 255)          # the missed disc's left edge
    assert pixel(12, 12) == (*BLUE, FILL_ALPHA)  # its inside
    assert pixel(12, 34) == (*GREEN, 255)        # the matched prediction's edge
    assert pixel(28, 10) == (*MAGENTA, 255)      # the merged prediction's top edge
    assert pixel(29, 4) == (*MAGENTA, FILL_ALPHA)  # its inside beyond its true objects
    assert pixel(30, 10) == (*BLUE, 255)         # inside it, the missed true objects' edges
    assert pixel(35, 14) == (*BLUE, 255)         # ... where they meet
    assert pixel(35, 10) == (*BLUE, FILL_ALPHA)  # a merged true object's inside
    assert pixel(35, 46) == (*RED, 255)          # the split's pieces: extra predictions
    assert pixel(35, 47) == (*RED, 255)
    assert pixel(35, 44) == (*ORANGE, FILL_ALPHA)  # ... over the split true object
    assert pixel(30, 59) == (*RED, 255)          # the pieces' outlines over the true one's
    assert pixel(50, 68) == (*RED, 255)          # the extra prediction's edge
    assert pixel(57, 2) == (*VOID_COLOR, 160)
    assert pixel(50, 30) == (0, 0, 0, 0)         # background
    # a matched object is outlined by the prediction, not filled as an error
    assert pixel(12, 40) == (*GREEN, FILL_ALPHA)


def test_object_layer_colours_each_object_with_a_white_edge() -> None:
    labels = np.zeros((20, 30), np.int32)
    labels[2:10, 2:10] = 4
    labels[2:10, 10:18] = 9
    labels[15:20, 25:30] = -1
    layer = object_layer(labels, (30, 20))
    colors = object_colors(np.array([4, 9]))
    assert not np.array_equal(colors[0], colors[1])
    assert tuple(layer[5, 5]) == (*colors[0], 255)
    assert tuple(layer[5, 13]) == (*colors[1], 255)
    assert tuple(layer[5, 9]) == (255, 255, 255, 255)  # where the two objects touch
    assert tuple(layer[2, 5]) == (255, 255, 255, 255)
    assert tuple(layer[17, 27]) == (*VOID_COLOR, 255)
    assert layer[12, 5, 3] == 0


def test_display_labels_keep_ids_and_outlines_stay_inside() -> None:
    labels = np.zeros((100, 200), np.int32)
    labels[10:50, 20:120] = 3
    labels[60:90, 150:190] = 70000
    small = display_labels(labels, (50, 25))
    assert small.shape == (25, 50) and set(np.unique(small).tolist()) == {0, 3, 70000}
    ring = inner_outlines(labels, 2)
    assert ring[10, 60] and ring[11, 60] and not ring[12, 60]  # two pixels wide
    assert not ring[9, 60] and not ring[30, 60]
    assert display_labels(labels, (200, 100)) is labels


def test_objects_section_reads_every_number_from_the_summary() -> None:
    summary = {"instances": {
        "images": 4, "n_true": 20, "n_pred": 18, "strict": False,
        "conventions": {"threshold_rule": ">=", "matching": "one-to-one, IoU >= t",
                        "ap": "AP = TP/(TP+FP+FN)"},
        "notes": ["true label images are float32"],
        "mean_over_images": {"per_threshold": [
            {"threshold": 0.5, "ap": 0.6, "precision": 0.7, "recall": 0.8, "f1": 0.75,
             "tp": 3.5}], "mean_ap": 0.4, "pq": 0.5, "sq": 0.8, "dq": 0.6, "aji": 0.55,
            "aji_plus": 0.52, "splits": 0.25, "merges": 0.5, "missed": 1.0, "extra": 0.75,
            "n_true": 5.0, "n_pred": 4.5},
        "pooled": {"per_threshold": [{"threshold": 0.5, "ap": 0.58, "tp": 14, "fp": 4,
                                      "fn": 6}],
                   "mean_ap": 0.38, "pq": 0.49, "sq": 0.79, "dq": 0.61, "aji": 0.54,
                   "aji_plus": 0.5, "splits": 1, "merges": 2, "missed": 6, "extra": 4,
                   "n_true": 20, "n_pred": 18}}}
    section = objects_section(summary)
    assert section is not None
    scores = {r["key"]: (r["mean"], r["pooled"]) for r in section["rows"]}
    assert scores["ap50"] == (0.6, 0.58) and scores["mean_ap"] == (0.4, 0.38)
    assert scores["pq"] == (0.5, 0.49) and scores["aji"] == (0.55, 0.54)
    counts = {c["key"]: (c["total"], c["per_image"]) for c in section["counts"]}
    assert counts["tp"] == (14, 3.5) and counts["splits"] == (1, 0.25)
    assert counts["missed"] == (6, 1.0) and counts["extra"] == (4, 0.75)
    assert section["rule"] == ">=" and ("matching", "one-to-one, IoU >= t") in \
        section["conventions"]
    assert section["notes"] == ["true label images are float32"]
    assert objects_section({"mean_over_images": {"dice": 1.0}}) is None


# -- the pages ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def instance_page(instance_runs: tuple[Path, Path]) -> Path:
    """The CLI's page of the trained instance run (ranked by its default metric)."""
    run = instance_runs[0]
    assert main(["report", str(run), "--gallery", "1"]) == 0
    return run / "report.html"


def test_report_objects_section_has_the_evaluations_numbers(
        instance_runs: tuple[Path, Path], instance_page: Path) -> None:
    run = instance_runs[0]
    objects = metrics(run)["instances"]
    mean, pooled = objects["mean_over_images"], objects["pooled"]
    text = instance_page.read_text()
    cells = table_cells(text, "objects-table")
    ap50 = next(t for t in mean["per_threshold"] if t["threshold"] == 0.5)["ap"]
    ap50_pooled = next(t for t in pooled["per_threshold"] if t["threshold"] == 0.5)["ap"]
    assert cells["ap50"][1:3] == [f"{ap50:.4f}", f"{ap50_pooled:.4f}"]
    for key in ("mean_ap", "pq", "sq", "dq", "aji", "aji_plus"):
        assert cells[key][1:3] == [f"{mean[key]:.4f}", f"{pooled[key]:.4f}"], key
    counts = table_cells(text, "object-counts")
    for key in ("splits", "merges", "missed", "extra", "n_true", "n_pred"):
        assert counts[key][1] == f"{pooled[key]:,}" and \
            counts[key][2] == f"{mean[key]:.2f}", key
    # the conventions in words, and the AP curve
    conventions = htmllib.unescape(re.search(r'data-testid="conventions">(.*?)</dl>', text,
                                             re.S).group(1))
    assert objects["conventions"]["matching"] in conventions
    assert objects["conventions"]["averaging"] in conventions
    assert 'data-testid="ap-curve"' in text and "data:image/svg+xml;base64," in text
    assert f"AP@0.5 {ap50:.4f}</b>" in text  # the header's headline
    assert "a match needs IoU &gt;= t" in text


def test_report_gallery_ranks_by_mean_ap_and_outlines_the_errors(
        instance_runs: tuple[Path, Path], instance_page: Path) -> None:
    run = instance_runs[0]
    data = page_data(instance_page)
    assert data["sort"] == "mean_ap" and data["instance"] is True
    assert data["columns"][:2] == ["image", "mean_ap"] and "ap@0.5" in data["columns"]
    assert {"n_true", "splits", "merges"} <= set(data["count_columns"])
    scored = {r["image"]: r for r in rows(run)}
    worst, _, _ = choose_images([{"image": n, "mean_ap": float(r["mean_ap"])}
                                 for n, r in scored.items()], "mean_ap", 1, 0)
    first_card = re.search(r'data-testid="worst">\s*<figure class="card" data-name="([^"]+)"',
                           instance_page.read_text())
    assert first_card and first_card.group(1) == list(scored)[worst[0]]
    checkpoint = load_checkpoint(run / "models" / "best.pt")
    predictor = Predictor.from_checkpoint(
        checkpoint, InferenceOptions(Runtime.resolve(precision="fp32")))
    dataset = Path(checkpoint.config["dataset"])
    checked = {"fn": 0, "tp": 0}
    assert data["assets"]
    for asset in data["assets"]:
        row = scored[asset["name"]]
        # the pictures show the scored prediction: its mean AP and object counts
        assert asset["scores"]["model"] == pytest.approx(float(row["mean_ap"]), abs=1e-6)
        counts = asset["objects"]["model"]
        assert (counts["fn"], counts["fp"], counts["split"], counts["merged"]) == \
            tuple(int(row[k]) for k in ("missed", "extra", "splits", "merges"))
        assert (counts["n_true"], counts["n_pred"]) == (int(row["n_true"]),
                                                         int(row["n_pred"]))
        # the edges of known objects in the written picture have their kind's colour
        true = np.asarray(Image.open(dataset / "masks" / f"{asset['name']}.png"), np.int64)
        pred = predictor.labels(read_image(dataset / "images" / f"{asset['name']}.png", 1))
        errors = object_errors(true, pred, 0.5)
        picture = np.asarray(Image.open(instance_page.parent / asset["errors"]["model"]))
        assert picture.shape == (64, 64, 4)  # a 64 x 64 image is shown at its own size
        drawn_pred = np.isin(pred, np.concatenate([errors.tp_pred, errors.fp])) & (pred > 0)
        for kind, labels, ids, color in (("fn", true, np.setdiff1d(errors.fn, errors.split),
                                          BLUE),
                                         ("tp", pred, np.setdiff1d(errors.tp_pred,
                                                                   errors.merged), GREEN)):
            for object_id in ids:
                edge = inner_outlines(np.where(labels == object_id, labels, 0))
                if kind == "fn":  # predicted objects' outlines are drawn over true ones
                    edge &= ~inner_outlines(np.where(drawn_pred, pred, 0))
                ys, xs = np.nonzero(edge)
                if ys.size == 0:
                    continue
                colours = picture[ys, xs]
                assert (colours == (*color, 255)).all(axis=1).mean() > 0.9, (kind, object_id)
                checked[kind] += 1
        truth = np.asarray(Image.open(instance_page.parent / asset["truth"]))
        assert truth[..., 3][true > 0].min() == 255 and truth[..., 3][true == 0].max() == 0
    assert checked["fn"] + checked["tp"] > 0


def test_compare_instance_runs_shows_their_object_scores(instance_runs: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    a, b = instance_runs
    result = write_comparison([a, b], tmp_path / "c.html",
                              options=ReportOptions(gallery=2))
    text = result.page.read_text()
    cells = table_cells(text, "objects-table")
    for index, run in enumerate((a, b)):
        objects = metrics(run)["instances"]
        for key in ("mean_ap", "pq", "aji"):
            assert cells[key][1 + index] == f"{objects['mean_over_images'][key]:.4f}"
            assert cells[key][4 + index] == f"{objects['pooled'][key]:.4f}"
        assert cells["missed"][4 + index] == f"{objects['pooled']['missed']}"
    delta = metrics(b)["instances"]["pooled"]["mean_ap"] - \
        metrics(a)["instances"]["pooled"]["mean_ap"]
    assert cells["mean_ap"][6] == f"{delta:+.4f}"
    assert "mean AP 0.5:0.95 (pooled)" in result.console and "AJI (per image)" in result.console
    data = page_data(result.page)
    assert data["metric"] == "mean_ap" and data["columns"][-1] == "\u0394 mean_ap B\u2212A"
    assert all(set(asset["objects"]) == {"A", "B"} for asset in data["assets"])
    assert 'data-testid="object-legend"' in text and 'data-testid="ap-curve"' in text


def test_side_outputs_of_an_instance_model_are_foreground_maps(
        instance_runs: tuple[Path, Path], tmp_path: Path) -> None:
    """A deep-supervised instance model's side outputs are shown as the foreground its
    representation gives (`object_maps`), one map per side output."""
    base = load_checkpoint(instance_runs[0] / "models" / "best.pt")
    outputs = base.model_spec["num_classes"]  # the run's representation's channels
    model = unetzoo.create_model("unetpp", 1, outputs, preset="tiny", deep_supervision=True)
    checkpoint = replace(base, model_spec=model.unetzoo_spec, state_dict=model.state_dict())
    data = Path(base.config["dataset"])
    pairs = dataset_pairs(data, None, None, ["im00"])
    assets = render_images([source_for(checkpoint, None, "model")], pairs,
                           reading_for(checkpoint, data, pairs), ["im00"],
                           AssetWriter(tmp_path, "x"), {"im00"}, "mean_ap")["im00"]
    sides = len(model.output_weights) - 1
    assert [title for title, _ in assets.maps["model"]] == [f"side {i + 1}"
                                                             for i in range(sides)]
    assert Image.open(tmp_path / Path(assets.maps["model"][0][1]).name).size == (64, 64)
    assert set(assets.objects["model"]) == {"tp", "fp", "fn", "split", "merged", "n_true",
                                            "n_pred"}
