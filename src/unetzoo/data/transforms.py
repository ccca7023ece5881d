"""Augmentation (albumentations, image and mask together) and the preprocessing stored with
a model: channels, normalisation, patch size and how inputs meet the patch size.

albumentations is imported when a training transform is first built, without its network
version check and without leaving anything set in the environment.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from ..errors import ConfigError
from ..task import IGNORE_INDEX

if TYPE_CHECKING:
    import albumentations as A

NO_UPDATE_CHECK = "NO_ALBUMENTATIONS_UPDATE"

ResizeMode = Literal["crop", "resize"]
RESIZE_MODES: tuple[str, ...] = ("crop", "resize")
AUGMENT_LEVELS: tuple[str, ...] = ("none", "light", "default", "strong")


@dataclass(frozen=True)
class Preprocessing:
    """What turns a read image into model input; stored in every checkpoint.

    resize_mode: `crop` trains on random `img_size` crops and predicts whole images (tiled
    when larger than a patch); `resize` resizes every image to `img_size` and resizes the
    prediction back to the image's size.
    """

    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int = 256
    resize_mode: ResizeMode = "crop"

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(f"normalisation needs {self.in_channels} means and stds, got "
                              f"{len(self.mean)} and {len(self.std)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode {self.resize_mode!r}; choose "
                              f"{' or '.join(RESIZE_MODES)}")

    def normalize(self, image: np.ndarray) -> np.ndarray:
        """`H x W x C` float in [0, 1] -> normalised float32."""
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return (image - mean) / std

    def to_tensor(self, image: np.ndarray) -> torch.Tensor:
        """`H x W x C` float in [0, 1] -> normalised `C x H x W` float32 tensor."""
        return torch.from_numpy(np.ascontiguousarray(self.normalize(image).transpose(2, 0, 1)))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


def albumentations() -> ModuleType:
    """The albumentations module, imported with its PyPI version check switched off for the
    import only (the environment is restored afterwards)."""
    if "albumentations" in sys.modules:
        return sys.modules["albumentations"]
    before = os.environ.get(NO_UPDATE_CHECK)
    os.environ[NO_UPDATE_CHECK] = "1"
    try:
        return importlib.import_module("albumentations")
    finally:
        if before is None:
            del os.environ[NO_UPDATE_CHECK]
        else:
            os.environ[NO_UPDATE_CHECK] = before


def train_transform(img_size: int, resize_mode: ResizeMode, augment: str = "default",
                    ignore_index: int = IGNORE_INDEX) -> A.Compose:
    """Random patches of `img_size` with flips, 90-degree rotations, scale/rotate and
    brightness/contrast; padding added to reach the patch size is ignored in the loss."""
    import cv2

    A = albumentations()
    if augment not in AUGMENT_LEVELS:
        raise ConfigError(f"unknown augment level {augment!r}; choose {', '.join(AUGMENT_LEVELS)}")
    if resize_mode == "resize":
        size: list[A.BasicTransform] = [A.Resize(img_size, img_size)]
    else:
        size = [A.PadIfNeeded(img_size, img_size, border_mode=cv2.BORDER_CONSTANT, fill=0,
                              fill_mask=ignore_index),
                A.RandomCrop(img_size, img_size)]
    if augment == "none":
        return A.Compose(size)
    strength = {"light": 0.5, "default": 1.0, "strong": 1.5}[augment]
    ops: list[A.BasicTransform] = [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]
    if augment != "light":
        ops.append(A.Affine(scale=(1 - 0.2 * strength, 1 + 0.2 * strength),
                            rotate=(-15 * strength, 15 * strength),
                            translate_percent=(-0.05 * strength, 0.05 * strength),
                            border_mode=cv2.BORDER_REFLECT_101, p=0.5))
    ops.append(A.RandomBrightnessContrast(0.2 * strength, 0.2 * strength, p=0.5))
    return A.Compose([*size, *ops])
