"""Metrics against hand-computed confusion counts; per-image versus dataset-global."""

from __future__ import annotations

import pytest
import torch

from unetzoo.metrics import MetricAccumulator, confusion_counts, headline
from unetzoo.task import IGNORE_INDEX


def test_binary_counts_and_scores() -> None:
    pred = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, 0]]])
    target = torch.tensor([[[1, 0, 1, 0], [0, 0, 0, IGNORE_INDEX]]])
    counts = confusion_counts(pred, target, "binary", 1)
    assert counts[0, 1].tolist() == [1, 1, 1, 4]  # foreground TP FP FN TN (ignored left out)
    scores = headline(counts, "binary")
    assert scores["dice"].item() == pytest.approx(0.5)
    assert scores["iou"].item() == pytest.approx(1 / 3)
    assert scores["precision"].item() == pytest.approx(0.5)
    assert scores["recall"].item() == pytest.approx(0.5)
    assert scores["specificity"].item() == pytest.approx(0.8)
    assert scores["accuracy"].item() == pytest.approx(5 / 7)
    background_dice = 2 * 4 / (2 * 4 + 1 + 1)
    assert scores["mdice"].item() == pytest.approx((0.5 + background_dice) / 2)


def test_empty_image_with_empty_prediction_scores_one() -> None:
    pred = torch.zeros(1, 3, 3, dtype=torch.long)
    scores = headline(confusion_counts(pred, pred.clone(), "binary", 1), "binary")
    for name in ("dice", "iou", "precision", "recall", "specificity", "accuracy"):
        assert scores[name].item() == 1.0
    missed = headline(confusion_counts(pred, torch.ones(1, 3, 3, dtype=torch.long), "binary", 1),
                      "binary")
    assert missed["dice"].item() == 0.0 and missed["precision"].item() == 0.0


def test_mean_over_images_differs_from_global() -> None:
    acc = MetricAccumulator("binary", 1, ["nucleus"])
    big_target = torch.ones(1, 10, 10, dtype=torch.long)
    acc.update(big_target.clone(), big_target, ["perfect_big"])  # dice 1, 100 px
    small_target = torch.zeros(1, 10, 10, dtype=torch.long)
    small_target[0, 0, 0] = 1
    acc.update(torch.zeros_like(small_target), small_target, ["missed_small"])  # dice 0
    summary = acc.summary()
    assert summary["mean_over_images"]["dice"] == pytest.approx(0.5)
    assert summary["global"]["dice"] == pytest.approx(200 / 201)
    assert [row["image"] for row in acc.per_image()] == ["perfect_big", "missed_small"]
    assert set(summary["per_class"]) == {"background", "nucleus"}


def test_multiclass_headline_averages_foreground_classes() -> None:
    target = torch.tensor([[[0, 1, 2, 2]]])
    pred = torch.tensor([[[0, 1, 2, 1]]])
    counts = confusion_counts(pred, target, "multiclass", 3)
    per_class_dice = [1.0, 2 / 3, 2 / 3]  # class 1: tp1 fp1; class 2: tp1 fn1
    scores = headline(counts, "multiclass")
    assert scores["dice"].item() == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert scores["mdice"].item() == pytest.approx(sum(per_class_dice) / 3)
    assert scores["accuracy"].item() == pytest.approx(3 / 4)


def test_multilabel_counts_per_label() -> None:
    target = torch.tensor([[[[1, 0]], [[1, 1]]]])  # 1 x 2 labels x 1 x 2
    pred = torch.tensor([[[[1, 1]], [[1, 1]]]])
    counts = confusion_counts(pred, target, "multilabel", 2)
    assert counts[0, 0].tolist() == [1, 1, 0, 0]
    assert counts[0, 1].tolist() == [2, 0, 0, 0]
    assert headline(counts, "multilabel")["dice"].item() == pytest.approx((2 / 3 + 1) / 2)


def test_a_class_absent_and_not_predicted_leaves_the_mean_over_classes() -> None:
    # 4 classes; the image holds classes 1 and 2, class 3 is nowhere: a model that predicts
    # only background scores 0 (not the 1/3 a free 1.0 for class 3 would give)
    target = torch.tensor([[[1, 1, 2, 2, 0, 0]]])
    background = torch.zeros_like(target)
    scores = headline(confusion_counts(background, target, "multiclass", 4), "multiclass")
    assert scores["dice"].item() == 0.0
    assert scores["iou"].item() == 0.0
    assert scores["mdice"].item() == pytest.approx((2 * 2 / (2 * 2 + 4) + 0 + 0) / 3)
    # a class predicted where it is absent is in play: it scores 0 and counts
    pred = torch.tensor([[[1, 1, 2, 2, 3, 0]]])
    scores = headline(confusion_counts(pred, target, "multiclass", 4), "multiclass")
    assert scores["dice"].item() == pytest.approx((1 + 1 + 0) / 3)
    # the same rule dataset-global: class 3 absent from the whole split
    metrics = MetricAccumulator("multiclass", 4, ("bg", "a", "b", "c"))
    metrics.update(torch.tensor([[[1, 1, 0, 0, 0, 0]]]), target, ["x"])
    summary = metrics.summary()
    assert summary["global"]["dice"] == pytest.approx((1 + 0) / 2)
    assert summary["per_class"]["c"]["dice"] == 1.0  # the per-class rule is unchanged
    # multilabel: the mean over the labels in play
    target = torch.tensor([[[[1, 1, 0]], [[0, 0, 0]]]])
    pred = torch.tensor([[[[1, 0, 0]], [[0, 0, 0]]]])
    scores = headline(confusion_counts(pred, target, "multilabel", 2), "multilabel")
    assert scores["dice"].item() == pytest.approx(2 / 3)


def test_the_console_table_marks_a_class_absent_from_masks_and_predictions() -> None:
    from unetzoo.engine.evaluate import EvaluationResult, format_summary

    metrics = MetricAccumulator("multiclass", 4, ("bg", "a", "b", "c"))
    target = torch.tensor([[[1, 1, 2, 2, 0, 0]]])
    metrics.update(torch.tensor([[[1, 1, 0, 0, 0, 0]]]), target, ["x"])
    result = EvaluationResult(metrics.summary(), metrics.per_image(), 1.0, 1.0,
                              counts=metrics.stacked())
    rows = format_summary(result).splitlines()
    assert "dice             0.5000     0.5000" in rows  # (1 + 0) / 2: c is not in play
    assert ("c                       -        -  absent: in no mask, never predicted; left out "
            "of the means") in rows
    assert "b                  0.0000   0.0000" in rows
