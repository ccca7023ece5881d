"""Objects from an instance model's outputs: its representation's channels activated (softmax
groups, sigmoids, regressions as they are), then decoded into a label image by the
post-processing of `instances.labels` (seeds and a seeded watershed) with the thresholds the
run chose on its validation images, which the checkpoint carries.

The whole image's outputs are blended from tiles first (the predictor's sliding window), and
only then decoded: an object on a tile seam is one object, never cut in two or counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...errors import ConfigError
from ...instances.labels import Thresholds, decode
from ...instances.targets import Representation, get_representation


def activate(logits: torch.Tensor, representation: Representation) -> torch.Tensor:
    """The activated outputs (`... x C x H x W`): softmax over each softmax group, sigmoid
    on sigmoid channels, regressions as they are (float32)."""
    logits = logits.float()
    out = logits.clone()
    groups: dict[str, list[int]] = {}
    for index, channel in enumerate(representation.channels):
        if channel.activation == "sigmoid":
            out[..., index, :, :] = logits[..., index, :, :].sigmoid()
        elif channel.activation == "softmax":
            groups.setdefault(channel.group or "", []).append(index)
    for indices in groups.values():
        out[..., indices, :, :] = logits[..., indices, :, :].softmax(-3)
    return out


@dataclass(frozen=True)
class InstanceDecoding:
    """How an instance model's outputs become objects: its representation and thresholds
    (`Checkpoint.instance` as plain data: {"representation": ..., "thresholds": {...},
    "chosen": {...}}; `chosen` records the validation scores the thresholds were chosen by)."""

    representation: Representation
    thresholds: Thresholds = field(default_factory=Thresholds)
    chosen: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None, where: str = "the checkpoint"
                  ) -> InstanceDecoding:
        """From `Checkpoint.instance`.

        Raises:
            ConfigError: none recorded, or an unknown representation.
        """
        if not values or not values.get("representation"):
            raise ConfigError(f"{where} is an instance model without its representation "
                              "(retrain it, or export it again with this unetzoo)")
        return cls(get_representation(values["representation"]),
                   Thresholds(**values.get("thresholds", {})), values.get("chosen"))

    def to_dict(self) -> dict[str, Any]:
        return {"representation": self.representation.name,
                "thresholds": self.thresholds.to_dict(), "chosen": self.chosen}

    @property
    def vectors(self) -> tuple[tuple[int, int], ...]:
        """Channel pairs (x, y) that are offsets in the image plane (HoVer-Net's horizontal
        and vertical maps), which test-time augmentation maps back by each symmetry."""
        return self.representation.vectors

    def decode(self, outputs: np.ndarray, name: str | None = None) -> np.ndarray:
        """int32 `H x W` labels (0 background, objects 1..N) of activated `C x H x W`
        outputs."""
        return decode(outputs, self.representation, self.thresholds, name=name)
