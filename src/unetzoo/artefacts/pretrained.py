"""Pretrained weights shipped inside the package, and loading weights into a model where
they fit (fine-tuning: `train --init nuclei|CKPT`, `create_model(name, pretrained=...)`).

Each shipped model is a model folder (`unetzoo.artefacts.folders`: config.json + fp16
model.safetensors + README.md model card) under `unetzoo/weights/<name>/`, installed as
package data: nothing is downloaded, and loading unpickles nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelError

log = logging.getLogger("unetzoo")

WEIGHTS_ROOT = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class PretrainedModel:
    """A shipped model: its name, what it segments, and where its folder is.

    Attributes:
        name: what `--model` / `--init` / `pretrained=` take.
        summary: one line on what it segments and from what data.
        folder: the model folder inside the installed package.
    """

    name: str
    summary: str
    folder: Path

    def config(self) -> dict[str, Any]:
        """The folder's config.json (architecture, task, classes, metrics)."""
        return json.loads((self.folder / "config.json").read_text(encoding="utf-8"))


PRETRAINED: dict[str, PretrainedModel] = {
    "nuclei": PretrainedModel(
        "nuclei", "cell nuclei in fluorescence, brightfield and H&E microscopy (RGB or gray); "
        "trained on 2018 Data Science Bowl stage1 images (CC0) at native resolution",
        WEIGHTS_ROOT / "nuclei"),
}


def list_pretrained() -> list[PretrainedModel]:
    """The shipped pretrained models whose weights are installed, by name."""
    return [m for _, m in sorted(PRETRAINED.items()) if (m.folder / "config.json").is_file()]


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
    from .checkpoint import load_checkpoint

    checkpoint = load_checkpoint(source)
    theirs = checkpoint.model_spec["name"]
    ours = getattr(model, "unetzoo_spec", {}).get("name")
    if ours and theirs != ours:
        log.info(f"--init {source}: a {theirs} initialises a {ours} where names and shapes "
                 "match")
    return load_matching(model, checkpoint.state_dict, str(source))


def pretrained_spec(name: str) -> dict[str, Any]:
    """The model spec (name, in_channels, num_classes, kwargs) of a shipped model."""
    if name not in PRETRAINED:
        raise ModelError(f"unknown pretrained model {name!r}; shipped: "
                         f"{', '.join(PRETRAINED) or 'none'} (`unetzoo models --pretrained`)")
    return PRETRAINED[name].config()["model"]
