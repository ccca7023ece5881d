"""The examples in the models' docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from unetzoo.models import count_parameters, create_model

MODULES = ["registry", "unet", "attention_unet", "r2unet", "se_unet", "u2net", "dpsau2net",
           "unetpp", "sparse_unet"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"unetzoo.models.{name}")
    result = doctest.testmod(module, extraglobs={"torch": torch, "create_model": create_model,
                                                     "count_parameters": count_parameters},
                             optionflags=doctest.ELLIPSIS, report=False)
    assert result.attempted > 0 and result.failed == 0, result
