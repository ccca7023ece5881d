"""Starting a model from trained weights where they fit: `train --init nuclei|RUN|CKPT`,
`create_model(name, pretrained=...)` (fine-tuning; a head for other classes starts anew)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError
from ..models import create_model as create_architecture
from .pretrained import pretrained_spec
from .references import load_checkpoint

log = logging.getLogger("unetzoo")


@dataclass(frozen=True)
class InitReport:
    """What `load_matching` did: tensors loaded, and the ones it left as initialised.

    Attributes:
        loaded: names of tensors copied from the source.
        shape_mismatch: names present in both with different shapes (e.g. a head for another
            number of classes), left as initialised.
        missing: names the source does not have, left as initialised.
        unused: names of the source the model does not have.
    """

    source: str
    loaded: tuple[str, ...]
    shape_mismatch: tuple[str, ...]
    missing: tuple[str, ...]
    unused: tuple[str, ...]

    def describe(self) -> str:
        """One line for the log."""
        total = len(self.loaded) + len(self.shape_mismatch) + len(self.missing)
        text = f"weights from {self.source}: loaded {len(self.loaded)} of {total} tensors"
        if self.shape_mismatch:
            shown = ", ".join(self.shape_mismatch[:4]) + (", ..." if len(
                self.shape_mismatch) > 4 else "")
            text += f"; {len(self.shape_mismatch)} re-initialised (shape differs: {shown})"
        if self.missing:
            text += f"; {len(self.missing)} not in the source (initialised)"
        if self.unused:
            text += f"; {len(self.unused)} source tensors unused"
        return text


def load_matching(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str
                  ) -> InitReport:
    """Copy the tensors of `state_dict` into `model` where name and shape match; the rest
    (e.g. the head when the number of classes differs) keeps its initialisation.

    Args:
        model: the model to initialise (changed in place).
        state_dict: source tensors (any dtype: cast to the model's).
        source: what to call the source in the report.

    Returns:
        The `InitReport` (also logged).

    Raises:
        ModelError: not a single tensor matches (another architecture or width).
    """
    own = model.state_dict()
    loaded, mismatch = [], []
    with torch.no_grad():
        for name, target in own.items():
            value = state_dict.get(name)
            if value is None:
                continue
            if value.shape != target.shape:
                mismatch.append(name)
                continue
            target.copy_(value.to(target.dtype))
            loaded.append(name)
    if not any(own[n].dim() > 0 for n in loaded):  # scalar counters alone are not weights
        raise ModelError(f"no tensor of {source} fits this model (another architecture or "
                         "width): nothing to initialise from")
    report = InitReport(source, tuple(loaded), tuple(mismatch),
                        tuple(n for n in own if n not in state_dict),
                        tuple(n for n in state_dict if n not in own))
    log.info(report.describe())
    return report


def init_from(model: nn.Module, source: str | Path) -> InitReport:
    """Initialise `model` from a pretrained name, a model folder or a checkpoint file, where
    shapes match (`load_matching`).

    Raises:
        CheckpointError: the source cannot be read. ModelError: nothing fits.
    """
    checkpoint = load_checkpoint(source, "--init")
    theirs = checkpoint.model_spec["name"]
    ours = getattr(model, "unetzoo_spec", {}).get("name")
    if ours and theirs != ours:
        log.info(f"--init {source}: a {theirs} initialises a {ours} where names and shapes "
                 "match")
    return load_matching(model, checkpoint.state_dict, str(source))


def create_model(name: str, in_channels: int | None = None, num_classes: int | None = None,
                 preset: str | None = None, pretrained: str | None = None,
                 **kwargs: Any) -> nn.Module:
    """`unetzoo.models.create_model`, optionally from a shipped pretrained model.

    Args:
        name: a registered model name (`list_models()`).
        in_channels: image channels C (default 3, or the pretrained model's).
        num_classes: output channels K (default 1, or the pretrained model's).
        preset: named keyword arguments of the model card, e.g. "reference" or "tiny".
        pretrained: a shipped pretrained model of this architecture (`unetzoo models
            --pretrained`, e.g. `nuclei`): built with its arguments, its weights loaded where
            shapes match; another `in_channels` or `num_classes` re-initialises the first
            layer or the head (logged), for fine-tuning.
        **kwargs: the builder's keyword arguments (they override preset and pretrained
            ones).

    Returns:
        The model (`B x C x H x W` images of any size -> `B x K x H x W` logits).

    Raises:
        ModelError: unknown name, preset or argument; a pretrained model of another
            architecture; no tensor of the pretrained model fits.

    Example:
        >>> tuned = create_model("unet", num_classes=3, pretrained="nuclei")  # doctest: +SKIP
    """
    if pretrained is None:
        return create_architecture(name, in_channels, num_classes, preset, **kwargs)
    spec = pretrained_spec(pretrained)
    if spec["name"] != name:
        raise ModelError(f"pretrained {pretrained!r} is a {spec['name']}, not a {name}: "
                         f"create_model({spec['name']!r}, pretrained={pretrained!r})")
    model = create_architecture(
        name, spec["in_channels"] if in_channels is None else in_channels,
        spec["num_classes"] if num_classes is None else num_classes, preset,
        **{**spec["kwargs"], **kwargs})
    init_from(model, pretrained)
    return model
