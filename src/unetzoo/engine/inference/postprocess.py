"""Post-processing of hard label maps: remove small connected components, fill holes.

Components are 8-connected; a hole is a 4-connected region of pixels outside a class that
does not touch the image border (the complementary connectivity, so a diagonal gap in an
outline does not make its inside a hole). Runs with OpenCV on the whole map, which is the
size of the image in uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError
from ...task import Task


def remove_small_components(mask: np.ndarray, min_size: int) -> np.ndarray:
    """`mask` (bool `H x W`) without its 8-connected components of fewer than `min_size`
    pixels."""
    import cv2

    if min_size <= 1 or not mask.any():
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8),
                                                               connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False  # label 0 is everything outside the mask
    return keep[labels] if count > 1 else mask


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` (bool `H x W`) with every region it encloses (not touching the border) filled."""
    import cv2

    if not mask.any():
        return mask
    _, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    enclosed = np.ones(int(labels.max()) + 1, dtype=bool)
    enclosed[border] = False
    enclosed[0] = False  # label 0 is the mask itself
    return mask | enclosed[labels]


@dataclass(frozen=True)
class PostProcessing:
    """What happens to hard labels before they are scored or written.

    min_size: components of a class smaller than this many pixels become background
        (0 or 1 keeps everything).
    fill_holes: background regions enclosed by a class become that class.
    Binary and multilabel maps are processed per foreground channel, multiclass maps per
    class 1..K-1 (holes take the enclosing class only where they are background).
    """

    min_size: int = 0
    fill_holes: bool = False

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise ConfigError(f"--min-size must be >= 0, got {self.min_size}")

    @property
    def enabled(self) -> bool:
        return self.min_size > 1 or self.fill_holes

    def emptied_warning(self, emptied: int, images: int) -> str | None:
        """The one line that says post-processing removed every predicted pixel of
        `emptied` of `images` images (None when it removed none): scores and written masks
        of those images are empty because of `--min-size`, not because of the model."""
        if not emptied:
            return None
        return (f"post-processing (--min-size {self.min_size}) removed every predicted "
                f"foreground pixel of {emptied} of {images} image(s): their masks are empty "
                "because of it; lower --min-size or leave it out")

    def _mask(self, mask: np.ndarray) -> np.ndarray:
        mask = remove_small_components(mask, self.min_size)
        return fill_holes(mask) if self.fill_holes else mask

    def apply(self, labels: np.ndarray, task: Task) -> np.ndarray:
        """Processed copy of `labels`: `H x W` (binary, multiclass) or `K x H x W`
        (multilabel) integer labels."""
        if not self.enabled:
            return labels
        if task == "multilabel":
            return np.stack([self._mask(layer.astype(bool)) for layer in labels]).astype(
                labels.dtype)
        if task == "binary":
            return self._mask(labels.astype(bool)).astype(labels.dtype)
        out = labels.copy()
        for cls in np.unique(labels):
            if cls == 0:
                continue
            mask = labels == cls
            kept = remove_small_components(mask, self.min_size)
            out[mask & ~kept] = 0
            if self.fill_holes:
                out[fill_holes(kept) & (out == 0)] = cls
        return out
