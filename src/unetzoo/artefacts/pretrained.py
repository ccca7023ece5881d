"""The pretrained models shipped inside the package: their names, what they segment, and
where their folders are (loading them: `artefacts.references`; fine-tuning from them:
`artefacts.initialise`).

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


def pretrained_spec(name: str) -> dict[str, Any]:
    """The model spec (name, in_channels, num_classes, kwargs) of a shipped model."""
    if name not in PRETRAINED:
        raise ModelError(f"unknown pretrained model {name!r}; shipped: "
                         f"{', '.join(PRETRAINED) or 'none'} (`unetzoo models --pretrained`)")
    return PRETRAINED[name].config()["model"]
