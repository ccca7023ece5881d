"""Losses against hand-computed cases, ignore handling and task behaviour."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unetzoo.errors import ConfigError
from unetzoo.losses import build_loss, deep_supervision_loss, loss_name
from unetzoo.task import IGNORE_INDEX

BIG = 30.0  # a logit so large that sigmoid/softmax are 0 or 1 in float32


def binary_case() -> tuple[torch.Tensor, torch.Tensor]:
    """Logits giving probabilities [[1, 1], [0, 0]] against target [[1, 0], [1, 0]]."""
    logits = torch.tensor([[[[BIG, BIG], [-BIG, -BIG]]]])
    target = torch.tensor([[[1, 0], [1, 0]]])
    return logits, target


def test_dice_loss_matches_hand_computation() -> None:
    logits, target = binary_case()
    # tp = fp = fn = 1: smoothed soft Dice (tp + 1) / (tp + (fp + fn) / 2 + 1) = 2 / 3
    expected = 1 - 2 / 3
    assert build_loss("dice", "binary")(logits, target).item() == pytest.approx(expected, abs=1e-5)


def test_tversky_weights_false_negatives_more() -> None:
    logits = torch.tensor([[[[BIG, -BIG], [-BIG, -BIG]]]])
    target = torch.tensor([[[1, 1], [0, 0]]])  # tp 1, fn 1, fp 0
    expected = 1 - (1 + 1) / (1 + 0.3 * 0 + 0.7 * 1 + 1)
    assert build_loss("tversky", "binary")(logits, target).item() == pytest.approx(expected,
                                                                                   abs=1e-5)


def test_bce_is_mean_over_valid_pixels_only() -> None:
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 5.0]]]])
    target = torch.tensor([[[1, 0], [IGNORE_INDEX, IGNORE_INDEX]]])
    expected = (math.log(2) + math.log(1 + math.exp(2.0))) / 2
    assert build_loss("bce", "binary")(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_multiclass_ce_equals_torch_with_ignore() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[0, 0] = IGNORE_INDEX
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE_INDEX)
    assert build_loss("ce", "multiclass")(logits, target).item() == pytest.approx(
        expected.item(), rel=1e-6)


def test_multiclass_dice_skips_background_and_ignored_pixels() -> None:
    # class 1 predicted perfectly where valid; the ignored pixel is predicted wrong
    logits = torch.full((1, 3, 1, 3), -BIG)
    logits[0, 1, 0, :2] = BIG
    logits[0, 2, 0, 2] = BIG
    target = torch.tensor([[[1, 1, IGNORE_INDEX]]])
    # class 1: tp 2 -> index 1; class 2: nothing valid -> index 1
    assert build_loss("dice", "multiclass")(logits, target).item() == pytest.approx(0, abs=1e-5)


def test_focal_down_weights_easy_pixels() -> None:
    target = torch.tensor([[[1, 0]]])
    easy = torch.tensor([[[[4.0, -4.0]]]])
    hard = torch.tensor([[[[0.1, -0.1]]]])
    focal, bce = build_loss("focal", "binary"), build_loss("bce", "binary")
    assert focal(easy, target) / bce(easy, target) < focal(hard, target) / bce(hard, target)
    # Lin et al.: alpha_t (1 - p_t)^2 CE, alpha 0.25 for the positive and 0.75 for the
    # negative pixel, both with p_t = sigmoid(4)
    p_t = 1 / (1 + math.exp(-4.0))
    expected = (0.25 + 0.75) / 2 * (1 - p_t) ** 2 * -math.log(p_t)
    assert focal(easy, target).item() == pytest.approx(expected, rel=1e-5)


def test_multilabel_bce_per_channel() -> None:
    logits = torch.zeros(1, 2, 2, 2)
    target = torch.ones(1, 2, 2, 2, dtype=torch.long)
    assert build_loss("bce", "multilabel")(logits, target).item() == pytest.approx(math.log(2))


def test_sum_of_losses_and_unknown_names() -> None:
    logits, target = binary_case()
    total = build_loss("bce+dice", "binary")(logits, target)
    parts = build_loss("bce", "binary")(logits, target) + build_loss("dice", "binary")(logits,
                                                                                      target)
    assert total.item() == pytest.approx(parts.item())
    with pytest.raises(ConfigError, match="unknown loss"):
        build_loss("dice+lovasz2", "binary")


def test_losses_are_float32_under_bfloat16_logits() -> None:
    logits = torch.randn(1, 1, 4, 4).bfloat16()
    target = torch.randint(0, 2, (1, 4, 4))
    for name in ("bce", "dice", "focal", "tversky"):
        assert build_loss(name, "binary")(logits, target).dtype == torch.float32


def test_deep_supervision_weights() -> None:
    logits, target = binary_case()
    loss = build_loss("bce", "binary")
    single = loss(logits, target)
    weighted = deep_supervision_loss(loss, [logits, torch.zeros_like(logits)], target, [1.0, 0.0])
    assert weighted.item() == pytest.approx(single.item())
    mean = deep_supervision_loss(loss, [logits, logits], target)
    assert mean.item() == pytest.approx(single.item())
    with pytest.raises(ConfigError, match="2 model outputs but 3"):
        deep_supervision_loss(loss, [logits, logits], target, [1, 1, 1])


def test_lovasz_hinge_is_the_jaccard_loss_on_unit_margin_mistakes() -> None:
    # logits +-1: a right pixel has hinge error 0, a wrong one 2, and the Lovasz extension
    # is positively homogeneous, so the loss is 2 x (1 - IoU) of the hard prediction
    target = torch.tensor([[[1, 1, 0, 0]]])
    logits = torch.tensor([[[[1.0, -1.0, 1.0, -1.0]]]])  # predicted {0, 2}: IoU 1/3
    lovasz = build_loss("lovasz", "binary")
    assert lovasz(logits, target).item() == pytest.approx(2 * (1 - 1 / 3), abs=1e-6)
    perfect = torch.tensor([[[[1.0, 1.0, -1.0, -1.0]]]])
    assert lovasz(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # per image, then the mean over the batch (the mean IoU over images)
    both = lovasz(torch.cat([logits, perfect]), torch.cat([target, target]))
    assert both.item() == pytest.approx((2 * (1 - 1 / 3) + 0) / 2, abs=1e-6)
    # an ignored pixel, however wrong, takes no part
    ignored = lovasz(torch.tensor([[[[1.0, -1.0, 1.0, -1.0, 5.0]]]]),
                     torch.tensor([[[1, 1, 0, 0, IGNORE_INDEX]]]))
    assert ignored.item() == pytest.approx(2 * (1 - 1 / 3), abs=1e-6)


def test_lovasz_hinge_gradient_pushes_the_wrong_pixels() -> None:
    target = torch.tensor([[[1, 1, 0, 0]]])
    logits = torch.tensor([[[[1.0, -1.0, 1.0, -1.0]]]], requires_grad=True)
    build_loss("bce+lovasz", "binary")(logits, target).backward()
    grad = logits.grad.flatten()
    assert grad[1] < 0 < grad[2]  # raise the missed foreground, lower the false positive


def test_lovasz_softmax_averages_the_jaccard_loss_of_present_classes() -> None:
    target = torch.tensor([[[0, 0, 1, 1]]])
    predicted = torch.tensor([0, 1, 1, 2])
    logits = (F.one_hot(predicted, 3).T.float() * 2 * BIG - BIG)[None, :, None, :]
    # class 0: IoU 1/2; class 1: IoU 1/3; class 2 is not in the target (left out)
    expected = ((1 - 1 / 2) + (1 - 1 / 3)) / 2
    loss = build_loss("lovasz", "multiclass")(logits, target)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_loss_name_says_which_cross_entropy_runs() -> None:
    assert loss_name("ce+dice", "binary") == "bce+dice"
    assert loss_name("BCE + Dice", "multiclass") == "ce+dice"
    assert loss_name("ce", "multilabel") == "bce"
    assert loss_name("focal+lovasz", "binary") == "focal+lovasz"
