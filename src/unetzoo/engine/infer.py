"""Inference on whole images of any size: resize or sliding-window tiling with Gaussian
blending, batched tiles, mixed precision; outputs at each input's original size."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpoint
from ..data.transforms import Preprocessing
from ..errors import ConfigError
from ..task import Task, labels_from_probabilities, probabilities
from .runtime import Runtime


@lru_cache(maxsize=8)
def gaussian_importance(height: int, width: int, sigma_scale: float = 0.125) -> torch.Tensor:
    """A tile weight peaking at the centre (sigma = sigma_scale x side), never zero, so tile
    borders, where context is missing, count less when tiles overlap."""
    def axis(n: int) -> torch.Tensor:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        return torch.exp(-0.5 * (coords / max(sigma_scale * n, 1e-3)) ** 2)

    weight = torch.outer(axis(height), axis(width))
    weight = weight / weight.max()
    return weight.clamp_min(1e-3)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length) with at least the given
    fractional overlap, the last tile flush with the end."""
    if length <= tile:
        return [0]
    stride = max(1, int(tile * (1 - overlap)))
    count = math.ceil((length - tile) / stride) + 1
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


@dataclass(frozen=True)
class InferenceOptions:
    """How inference runs, shared by evaluation, prediction and validation."""

    runtime: Runtime = field(default_factory=Runtime.resolve)
    batch_size: int = 4
    overlap: float = 0.25
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"--overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch_size}")


class Predictor:
    """Runs a model on normalised `C x H x W` images of any size and returns float32 logits
    `K x H x W` on the CPU.

    In `crop` mode an image larger than the patch size is tiled with patch-sized windows
    (overlap as given, Gaussian-weighted blending, `batch_size` tiles per forward pass);
    smaller images go through whole. In `resize` mode the image is resized to the patch size
    and the logits resized back.
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, task: Task,
                 options: InferenceOptions | None = None) -> None:
        self.options = options or InferenceOptions()
        self.runtime = self.options.runtime
        self.model = self.runtime.prepare_model(model).eval()
        self.preprocessing = preprocessing
        self.task = task
        self.model_seconds = 0.0

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, options: InferenceOptions | None = None
                        ) -> Predictor:
        return cls(checkpoint.build_model(), checkpoint.preprocessing, checkpoint.task, options)

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        with self.runtime.autocast():
            out = self.model(self.runtime.prepare_input(batch))
        out = (out[0] if isinstance(out, (list, tuple)) else out).float().cpu()
        self.model_seconds += time.perf_counter() - start
        return out

    def _tiles(self, height: int, width: int) -> Iterator[tuple[int, int, int, int]]:
        th, tw = min(self.preprocessing.img_size, height), min(self.preprocessing.img_size, width)
        for y in tile_starts(height, th, self.options.overlap):
            for x in tile_starts(width, tw, self.options.overlap):
                yield y, x, th, tw

    def _sliding_window(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        tiles = list(self._tiles(height, width))
        th, tw = tiles[0][2:]
        weight = gaussian_importance(th, tw)
        total = torch.zeros(self.model_num_classes, height, width)
        norm = torch.zeros(height, width)
        for i in range(0, len(tiles), self.options.batch_size):
            group = tiles[i: i + self.options.batch_size]
            batch = torch.stack([image[:, y: y + th, x: x + tw] for y, x, _, _ in group])
            for (y, x, _, _), logits in zip(group, self._forward(batch), strict=True):
                total[:, y: y + th, x: x + tw] += logits * weight
                norm[y: y + th, x: x + tw] += weight
        return total / norm

    @property
    def model_num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", 1))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Float32 logits `K x H x W` for one normalised `C x H x W` image."""
        _, height, width = image.shape
        size = self.preprocessing.img_size
        if self.preprocessing.resize_mode == "resize":
            small = F.interpolate(image[None], size=(size, size), mode="bilinear",
                                  align_corners=False, antialias=True)
            return F.interpolate(self._forward(small), size=(height, width), mode="bilinear",
                                 align_corners=False)[0]
        if height <= size and width <= size:
            return self._forward(image[None])[0]
        return self._sliding_window(image)

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        return probabilities(self.logits(image)[None], self.task)[0]

    def labels(self, image: torch.Tensor) -> torch.Tensor:
        """Hard labels: `H x W` (binary, multiclass) or `K x H x W` (multilabel)."""
        return labels_from_probabilities(self.probabilities(image)[None], self.task,
                                         self.options.threshold)[0]

    def labels_for_array(self, image: np.ndarray) -> torch.Tensor:
        """Hard labels for an `H x W x C` float image in [0, 1] as read from disk."""
        return self.labels(self.preprocessing.to_tensor(image))
