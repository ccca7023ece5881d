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
from functools import cache
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
# "stain": default, plus colour: H&E stain jitter, hue and saturation, grey (RGB images)
AUGMENT_LEVELS: tuple[str, ...] = ("none", "light", "default", "strong", "stain")
HED_SIGMA = 0.05  # stain jitter: each H, E, D channel scaled by 1 +- s and shifted by +- s
NORMALIZATIONS: tuple[str, ...] = ("dataset", "image", "percentile")
STAT_PIXELS = 1 << 18  # pixels per image enough for its statistics (a strided sample)
STD_FLOOR = 1e-3  # per-image std floor on [0, 1] values (a quarter of one 8-bit level)
PERCENTILES = (0.5, 99.5)  # clipping bounds of `percentile` normalisation
Statistics = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class Preprocessing:
    """What turns a read image into model input; stored in every checkpoint.

    resize_mode: `crop` trains on random `img_size` crops and predicts whole images (tiled
    when larger than a patch); `resize` resizes every image to `img_size` and resizes the
    prediction back to the image's size.
    normalization: `dataset` subtracts `mean` and divides by `std` (per channel, measured on
    the training images); `image` standardises each whole image per channel with its own
    mean and std (images of mixed brightness or modality); `percentile` first clips each
    channel of each image to its 0.5th..99.5th percentiles (microscopy, 16-bit data: hot
    pixels and saturated spots), then standardises it.
    """

    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    img_size: int = 256
    resize_mode: ResizeMode = "crop"
    normalization: str = "dataset"

    def __post_init__(self) -> None:
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            raise ConfigError(f"normalisation needs {self.in_channels} means and stds, got "
                              f"{len(self.mean)} and {len(self.std)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ConfigError(f"unknown resize mode {self.resize_mode!r}; choose "
                              f"{' or '.join(RESIZE_MODES)}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalization {self.normalization!r}; choose "
                              f"{', '.join(NORMALIZATIONS)}")

    def statistics(self, image: np.ndarray) -> Statistics:
        """(offset, scale, low, high) per channel that normalise `image`, a whole `H x W x C`
        image: computed before cropping or tiling, so that a patch or a tile is normalised
        as its image is. `low` and `high` (clipping bounds) are None except for
        `percentile`; the image's own values are used except for `dataset`."""
        if self.normalization == "dataset":
            return np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32), \
                None, None
        flat = image.reshape(-1, image.shape[-1])
        flat = flat[:: max(1, len(flat) // STAT_PIXELS)]
        low = high = None
        if self.normalization == "percentile":
            low, high = np.percentile(flat, PERCENTILES, axis=0).astype(np.float32)
            flat = np.clip(flat, low, high)
        std = np.maximum(flat.std(0), STD_FLOOR).astype(np.float32)
        return flat.mean(0).astype(np.float32), std, low, high

    def normalize(self, image: np.ndarray, stats: Statistics | None = None) -> np.ndarray:
        """`H x W x C` float in [0, 1] -> normalised float32, with `stats` from
        `statistics()` of the image it comes from (default: of `image` itself)."""
        offset, scale, low, high = stats if stats is not None else self.statistics(image)
        if low is not None:
            image = np.clip(image, low, high)
        return (image - offset) / scale

    def to_tensor(self, image: np.ndarray, stats: Statistics | None = None) -> torch.Tensor:
        """`H x W x C` float in [0, 1] -> normalised `C x H x W` float32 tensor (see
        `normalize`)."""
        return torch.from_numpy(np.ascontiguousarray(
            self.normalize(image, stats).transpose(2, 0, 1), dtype=np.float32))

    def describe_normalization(self) -> str:
        """How [0, 1] pixel values are normalised, in words (model cards)."""
        own = f"by the whole image's own mean and std ((x - mean) / max(std, {STD_FLOOR:g}))"
        if self.normalization == "dataset":
            return ("normalised per channel as (x - mean) / std with mean "
                    + ", ".join(f"{m:.4g}" for m in self.mean) + " and std "
                    + ", ".join(f"{s:.4g}" for s in self.std))
        if self.normalization == "image":
            return f"standardised per channel {own}"
        low, high = PERCENTILES
        return (f"clipped per channel to the whole image's own {low:g}th..{high:g}th "
                f"percentiles, then standardised {own}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """The preprocessing saved by `to_dict` (checkpoints from before `normalization`
        existed normalise with the dataset's statistics, as they were trained)."""
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


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """The image resize of `resize` mode, in training and at inference alike: `B x C x H x W`
    (or `C x H x W`) float to `size x size`, bilinear at pixel centres, antialiased when it
    shrinks (a triangle filter as wide as the scale, as PIL does). Without the antialiasing
    a 4x smaller image keeps about 1.8x the fine-detail energy of an antialiased one, so a
    model trained on one and shown the other sees different pixels."""
    batch = image if image.ndim == 4 else image[None]
    out = torch.nn.functional.interpolate(batch.float(), size=(size, size), mode="bilinear",
                                          align_corners=False, antialias=True)
    return out if image.ndim == 4 else out[0]


@dataclass(frozen=True)
class _Resized:
    """`H x W (x C)` array to `size x size`: an image with `resize_image`, a mask with the
    nearest pixel centre (torch's nearest-exact; plain nearest samples at pixel corners and
    shifts a mask down and right of its image by half a pixel). Picklable, for workers."""

    size: int
    mask: bool

    def __call__(self, array: np.ndarray, **_: Any) -> np.ndarray:
        planes = torch.from_numpy(np.ascontiguousarray(array))
        planes = (planes[None] if array.ndim == 2 else planes.permute(2, 0, 1))[None]
        if self.mask:
            out = torch.nn.functional.interpolate(planes.double(), size=(self.size,) * 2,
                                                  mode="nearest-exact")
        else:
            out = resize_image(planes, self.size)
        out = out[0, 0] if array.ndim == 2 else out[0].permute(1, 2, 0)
        return out.numpy().astype(array.dtype, copy=False)


def resize_transform(img_size: int) -> A.Lambda:
    """The resize of `resize` mode (`resize_image` for the image, the nearest pixel centre for
    the mask), done once per image by the sample cache and again (a no-op at that size) by
    `train_transform`."""
    return albumentations().Lambda(image=_Resized(img_size, mask=False),
                                   mask=_Resized(img_size, mask=True), p=1.0)


def train_transform(img_size: int, resize_mode: ResizeMode, augment: str = "default",
                    ignore_index: int = IGNORE_INDEX, fg_oversample: float = 0.0,
                    labels: bool = False) -> A.Compose:
    """Random patches of `img_size` with flips, 90-degree rotations, scale/rotate and
    brightness/contrast; padding added to reach the patch size is ignored in the loss.

    In crop mode a fraction `fg_oversample` of the patches contains foreground (centred
    near a random foreground pixel when the mask has one), as nnU-Net oversamples
    foreground for sparse objects (Isensee et al. 2021).

    `labels`: the targets are instance label images: what the scale/rotate step brings in
    from outside the image is void (`ignore_index`) rather than reflected, since a
    reflection would repeat an object under its own id."""
    import cv2

    A = albumentations()
    if augment not in AUGMENT_LEVELS:
        raise ConfigError(f"unknown augment level {augment!r}; choose {', '.join(AUGMENT_LEVELS)}")
    if resize_mode == "resize":
        size: list[A.BasicTransform] = [resize_transform(img_size)]
    else:
        crop: A.BasicTransform = A.RandomCrop(img_size, img_size)
        if fg_oversample > 0:
            crop = A.OneOf([A.CropNonEmptyMaskIfExists(img_size, img_size,
                                                       ignore_values=[ignore_index],
                                                       p=fg_oversample),
                            A.RandomCrop(img_size, img_size, p=1 - fg_oversample)], p=1)
        size = [A.PadIfNeeded(img_size, img_size, border_mode=cv2.BORDER_CONSTANT, fill=0,
                              fill_mask=ignore_index), crop]
    if augment == "none":
        return A.Compose(size)
    strength = {"light": 0.5, "default": 1.0, "strong": 1.5, "stain": 1.0}[augment]
    ops: list[A.BasicTransform] = [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]
    if augment != "light":
        ops.append(A.Affine(scale=(1 - 0.2 * strength, 1 + 0.2 * strength),
                            rotate=(-15 * strength, 15 * strength),
                            translate_percent=(-0.05 * strength, 0.05 * strength),
                            **({"border_mode": cv2.BORDER_CONSTANT, "fill": 0,
                                "fill_mask": ignore_index} if labels else
                               {"border_mode": cv2.BORDER_REFLECT_101}), p=0.5))
    ops.append(A.RandomBrightnessContrast(0.2 * strength, 0.2 * strength, p=0.5))
    if augment == "stain":
        ops += [_stain_jitter_class()(HED_SIGMA, p=0.5),
                A.HueSaturationValue(hue_shift_limit=10, sat_shift_limit=20, val_shift_limit=0,
                                     p=0.3),
                A.ToGray(p=0.1)]
    return A.Compose([*size, *ops])


@cache
def _stain_jitter_class() -> type:
    """The `StainJitter` transform class (albumentations is imported when first needed, so
    the class is made then; `unetzoo.data.transforms.StainJitter` names it, for pickling)."""
    A = albumentations()

    class StainJitter(A.ImageOnlyTransform):  # type: ignore[misc, name-defined]
        """H&E stain augmentation (Tellez et al., "Quantifying the effects of data
        augmentation and stain color normalization in convolutional neural networks for
        computational pathology", Medical Image Analysis 2019): the RGB image in the
        haematoxylin-eosin-DAB space of Ruifrok and Johnston (skimage.color.rgb2hed), each
        channel scaled by 1 + a and shifted by b, a and b uniform in [-sigma, sigma], and back.
        Images of other than 3 channels pass unchanged."""

        def __init__(self, sigma: float = HED_SIGMA, p: float = 0.5) -> None:
            super().__init__(p=p)
            self.sigma = sigma

        def get_params_dependent_on_data(self, params: dict, data: dict) -> dict:
            rng = self.random_generator
            return {"scale": 1 + rng.uniform(-self.sigma, self.sigma, 3),
                    "shift": rng.uniform(-self.sigma, self.sigma, 3)}

        def apply(self, img: np.ndarray, scale: np.ndarray, shift: np.ndarray,
                  **params: object) -> np.ndarray:
            if img.ndim != 3 or img.shape[2] != 3:
                return img
            from skimage.color import hed2rgb, rgb2hed

            hed = rgb2hed(np.clip(img, 0, 1)) * scale + shift
            return np.clip(hed2rgb(hed), 0, 1).astype(img.dtype)

    StainJitter.__module__ = __name__
    StainJitter.__qualname__ = "StainJitter"
    return StainJitter


def __getattr__(name: str) -> Any:
    if name == "StainJitter":  # made with albumentations on first use (see above)
        return _stain_jitter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
