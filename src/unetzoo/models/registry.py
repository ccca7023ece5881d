"""Model registry: `register_model`, `create_model`, `list_models` and model cards."""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import ModelError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelCard:
    """What a registered model is: its paper, what it adds to U-Net, and its named presets.

    `presets` maps a preset name to keyword arguments. Every model has `reference` (the
    parity variant whose parameter count for in=3, out=1 is `reference_params["reference"]`)
    and `tiny` (a reduced width used by the generic tests). `reference_params` may list
    further presets; `param_tolerance` is the allowed relative deviation (0 = exact).
    """

    name: str
    builder: Builder
    paper: str
    year: int
    adds: str
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reference_params: Mapping[str, int] = field(default_factory=dict)
    param_tolerance: float = 0.0

    @property
    def summary(self) -> str:
        return (self.builder.__doc__ or "").strip().splitlines()[0] if self.builder.__doc__ else ""


_REGISTRY: dict[str, ModelCard] = {}


def register_model(
    *,
    paper: str,
    year: int,
    adds: str,
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    reference_params: Mapping[str, int] | None = None,
    param_tolerance: float = 0.0,
    name: str | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator registering a builder `f(in_channels, num_classes, **kwargs) -> nn.Module`.

    Args:
        paper: citation of the paper (and code) the model follows.
        year: publication year.
        adds: one line, what the model adds to U-Net.
        presets: preset name -> builder keyword arguments; every model has `reference`
            (the parity variant) and `tiny` (the reduced width the generic tests use).
        reference_params: preset -> parameter count for in=3, out=1 that tests check.
        param_tolerance: allowed relative deviation from those counts (0: exact).
        name: registry name (default: the builder's function name).

    Returns:
        The decorator, which returns the builder unchanged.

    Raises:
        ModelError: the name is registered already.

    Example:
        >>> @register_model(paper="...", year=2026, adds="...",  # doctest: +SKIP
        ...                 presets={"reference": {}, "tiny": {"width": 8}})
        ... def my_unet(in_channels=3, num_classes=1, width=64): ...
    """

    def decorate(builder: Builder) -> Builder:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ModelError(f"model {key!r} is registered twice")
        _REGISTRY[key] = ModelCard(key, builder, paper, year, adds, dict(presets or {}),
                                   dict(reference_params or {}), param_tolerance)
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered models matching a shell-style pattern, sorted.

    Args:
        pattern: shell-style filter, e.g. "*unet*" (default: every model).

    Returns:
        The matching names, e.g. `list_models("u2*") == ["u2net", "u2netp"]`.
    """
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_card(name: str) -> ModelCard:
    """The card of a registered model: paper, year, what it adds, presets, reference counts.

    Args:
        name: a registered model name.

    Returns:
        Its `ModelCard`, e.g. `model_card("unet").reference_params["reference"] == 34_527_041`.

    Raises:
        ModelError: `name` is not registered (the message lists the known models).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(list_models())
        raise ModelError(f"unknown model {name!r}; known models: {known}") from None


def resolve_kwargs(name: str, preset: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """The builder keyword arguments for `name` with `preset` applied, then `kwargs`."""
    card = model_card(name)
    merged: dict[str, Any] = {}
    if preset is not None:
        if preset not in card.presets:
            raise ModelError(f"model {name!r} has no preset {preset!r}; "
                             f"presets: {', '.join(card.presets) or 'none'}")
        merged.update(card.presets[preset])
    merged.update(kwargs)
    params = inspect.signature(card.builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(merged) - set(params) - {"in_channels", "num_classes"})
        if unknown:
            accepted = ", ".join(p for p in params if p not in ("in_channels", "num_classes"))
            raise ModelError(f"model {name!r} does not take {', '.join(unknown)}; "
                             f"it takes: {accepted}")
    return merged


def create_model(
    name: str,
    in_channels: int | None = None,
    num_classes: int | None = None,
    preset: str | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model returning logits with `num_classes` channels.

    Args:
        name: a registered model name (`list_models()`).
        in_channels: image channels C (3 for RGB, 1 for grey; default 3).
        num_classes: output channels K: 1 for a binary task, the number of classes for
            multiclass (background included), the number of labels for multilabel (default
            1).
        preset: named keyword arguments of the model card, e.g. "reference" or "tiny";
            `kwargs` override them.
        **kwargs: the builder's keyword arguments (see `help(unetzoo.models.<module>.<name>)`;
            they override preset ones). (Weights of a shipped model:
            `unetzoo.create_model(..., pretrained=NAME)`, which builds on this.)

    Returns:
        A `SegmentationModel` (an `nn.Module`) mapping `B x C x H x W` float images of any
        H x W to `B x K x H x W` logits (a list, main output first, in training mode for
        deep-supervised models). It carries `unetzoo_spec`, the dict that rebuilds it
        (name, in_channels, num_classes, kwargs), which checkpoints store.

    Raises:
        ModelError: unknown name, preset or keyword argument, or an invalid value.

    Example:
        >>> model = create_model("unet", in_channels=3, num_classes=1, preset="tiny")
        >>> model.eval()(torch.randn(2, 3, 37, 45)).shape
        torch.Size([2, 1, 37, 45])
    """
    in_channels = 3 if in_channels is None else in_channels
    num_classes = 1 if num_classes is None else num_classes
    merged = resolve_kwargs(name, preset, **kwargs)
    if in_channels < 1 or num_classes < 1:
        raise ModelError(f"in_channels and num_classes must be >= 1, got {in_channels}, "
                         f"{num_classes}")
    try:
        model = model_card(name).builder(in_channels=in_channels, num_classes=num_classes,
                                         **merged)
    except ModelError as exc:
        raise ModelError(f"model {name!r}: {exc.message}") from exc
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build model {name!r} with {merged}: {exc}") from exc
    model.unetzoo_spec = {"name": name, "in_channels": in_channels,
                          "num_classes": num_classes, "kwargs": merged}
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (only those with `requires_grad` if `trainable_only`).

    Example:
        >>> count_parameters(create_model("unet", preset="reference"))
        34527041
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
