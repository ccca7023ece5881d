"""The one pad-and-crop rule: exact sizes, and a graph traced at one size works at others."""

from __future__ import annotations

import warnings

import pytest
import torch

from unetzoo.models import create_model
from unetzoo.nn.padding import crop_to, pad_to_multiple


@pytest.mark.parametrize("size, multiple, padded", [
    ((37, 45), 8, (40, 48)), ((32, 32), 8, (32, 32)), ((1, 9), 4, (4, 12)), ((5, 7), 1, (5, 7)),
])
def test_pads_bottom_right_to_the_next_multiple(size, multiple, padded) -> None:
    x = torch.randn(1, 2, *size)
    out = pad_to_multiple(x, multiple)
    assert out.shape[-2:] == padded
    assert torch.equal(out[..., : size[0], : size[1]], x)
    assert out[..., size[0]:, :].abs().sum() == 0 and out[..., size[1]:].abs().sum() == 0
    assert torch.equal(crop_to(out, *size), x)


@pytest.mark.parametrize("name", ["unet", "unetpp"])
def test_a_trace_at_a_divisible_size_pads_other_sizes(name: str) -> None:
    model = create_model(name, preset="tiny").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notices
        traced = torch.jit.trace(model, torch.randn(1, 3, 32, 32))
    x = torch.randn(2, 3, 37, 45)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x))
