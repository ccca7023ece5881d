"""The contract every registered model keeps, checked at reduced width over `list_models()`."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from unetzoo.models import count_parameters, create_model, list_models, model_card

ODD_SIZE = (37, 45)


def tiny(name: str, in_channels: int = 3, num_classes: int = 1) -> torch.nn.Module:
    return create_model(name, in_channels=in_channels, num_classes=num_classes, preset="tiny")


def main_output(out: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    return out[0] if isinstance(out, (list, tuple)) else out


@pytest.mark.parametrize("name", list_models())
def test_card_has_reference_and_tiny_presets(name: str) -> None:
    card = model_card(name)
    assert {"reference", "tiny"} <= set(card.presets)
    assert "reference" in card.reference_params
    assert card.paper and card.year and card.adds and card.builder.__doc__


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("num_classes", [1, 3])
def test_forward_backward_any_size(name: str, num_classes: int) -> None:
    model = tiny(name, in_channels=2, num_classes=num_classes).train()
    x = torch.randn(2, 2, *ODD_SIZE, requires_grad=True)
    out = model(x)
    outputs = out if isinstance(out, (list, tuple)) else [out]
    for o in outputs:
        assert o.shape == (2, num_classes, *ODD_SIZE)
    sum(o.float().mean() for o in outputs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters not used by forward: {no_grad[:5]}"


@pytest.mark.parametrize("name", list_models())
def test_eval_is_deterministic_and_returns_main_logits(name: str) -> None:
    model = tiny(name)
    x = torch.randn(1, 3, 40, 52)
    model.train()
    train_out = model(x)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    assert isinstance(a, torch.Tensor), "eval mode returns the main logits only"
    assert torch.equal(a, b)
    assert a.shape == main_output(train_out).shape == (1, 1, 40, 52)


@pytest.mark.parametrize("name", list_models())
def test_state_dict_round_trip_with_weights_only(name: str) -> None:
    model = tiny(name).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    rebuilt = create_model(**{k: v for k, v in model.unetzoo_spec.items() if k != "kwargs"},
                           **model.unetzoo_spec["kwargs"]).eval()
    rebuilt.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))


@pytest.mark.parametrize("name", list_models())
def test_overfits_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    model = tiny(name).train()
    x = torch.randn(2, 3, 32, 32)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    target = (((yy - 16) ** 2 + (xx - 12) ** 2) < 64).float().expand(2, 1, 32, 32)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss_of(out: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        outputs = out if isinstance(out, (list, tuple)) else [out]
        return sum(F.binary_cross_entropy_with_logits(o, target) for o in outputs) / len(outputs)

    first = loss_of(model(x)).item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = loss_of(model(x))
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first


@pytest.mark.parametrize("name", list_models())
def test_reference_parameter_counts(name: str) -> None:
    card = model_card(name)
    for preset, expected in card.reference_params.items():
        with torch.device("meta"):
            model = create_model(name, in_channels=3, num_classes=1, preset=preset)
        count = count_parameters(model)
        assert abs(count - expected) <= card.param_tolerance * expected, (preset, count, expected)
