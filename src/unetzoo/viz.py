"""Pictures for people: overlays of image, ground truth and prediction; training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .fileio import atomic_write

# Distinct colours for classes 1.. (class 0, background, stays transparent in overlays).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)


def class_colors(num_colors: int, given: Sequence[Sequence[int]] | None = None
                 ) -> np.ndarray:
    """`num_colors x 3` uint8 colours: the given ones, else the palette (cycled)."""
    if given:
        return np.asarray(given, np.uint8)
    return np.asarray([PALETTE[i % len(PALETTE)] for i in range(num_colors)], np.uint8)


def to_display(image: np.ndarray) -> np.ndarray:
    """`H x W x C` float in [0, 1] (C = 1 or 3; other C shows the first) -> RGB uint8."""
    image = np.clip(image, 0, 1)
    image = image[..., :1] if image.shape[2] not in (1, 3) else image
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return (image * 255).round().astype(np.uint8)


def overlay(rgb: np.ndarray, labels: np.ndarray, colors: np.ndarray, alpha: float = 0.45
            ) -> np.ndarray:
    """Tint labelled pixels (labels > 0, `H x W`; or `K x H x W` multilabel) with their colour."""
    out = rgb.astype(np.float32)
    layers = labels if labels.ndim == 3 else [labels == k for k in range(1, len(colors))]
    for k, layer in enumerate(layers, start=1 if labels.ndim == 2 else 0):
        color = colors[k % len(colors)] if labels.ndim == 2 else colors[k]
        out[layer.astype(bool)] = (1 - alpha) * out[layer.astype(bool)] + alpha * color
    return out.round().astype(np.uint8)


TN, TP, FP, FN, IGNORED = 0, 1, 2, 3, 4
ERROR_COLORS = np.array([(0, 0, 0), (40, 200, 60), (230, 40, 40), (40, 90, 240),
                         (90, 90, 90)], np.uint8)  # indexed by the codes above


def error_codes(target: np.ndarray, pred: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Per-pixel outcome `H x W` uint8: TN 0, TP 1 (foreground right), FP 2 (foreground
    predicted on background), FN 3 (foreground missed or given the wrong class), IGNORED 4.

    Label maps `H x W` (binary 0/1 or multiclass 0..K-1, class 0 background) or multilabel
    `K x H x W` (a pixel is FN when a label is missed, else FP when one is added, else TP
    when it has any label).
    """
    if target.ndim == 3:  # multilabel
        valid = (target != ignore_index).all(0)
        truth, guess = target == 1, pred.astype(bool)
        missed, added = (truth & ~guess).any(0), (guess & ~truth).any(0)
        right = truth.any(0) & ~missed & ~added
    else:
        valid = target != ignore_index
        missed = (target > 0) & (pred != target)
        added = (pred > 0) & (target == 0)
        right = (target > 0) & (pred == target)
    codes = np.zeros(target.shape[-2:], np.uint8)
    codes[right] = TP
    codes[added] = FP
    codes[missed] = FN
    codes[~valid] = IGNORED
    return codes


def error_map(target: np.ndarray, pred: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Errors as RGB: true positives green, false positives red, false negatives (and wrong
    classes) blue, ignored grey, true negatives black (see `error_codes`)."""
    return ERROR_COLORS[error_codes(target, pred, ignore_index)]


def heatmap(values: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """`H x W` values in [0, 1] (clipped) -> `H x W x 3` uint8 through a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[colormap](np.clip(values, 0, 1))[..., :3] * 255).astype(np.uint8)


def _titled(panel: np.ndarray, title: str) -> np.ndarray:
    band = Image.new("RGB", (panel.shape[1], 14), (20, 20, 20))
    ImageDraw.Draw(band).text((3, 1), title, fill=(235, 235, 235))
    return np.concatenate([np.asarray(band), panel], axis=0)


def comparison_panel(image: np.ndarray, target: np.ndarray | None, pred: np.ndarray,
                     colors: np.ndarray, binary: bool) -> np.ndarray:
    """Side by side: image | ground truth | prediction | (binary) error map."""
    rgb = to_display(image)
    panels = [_titled(rgb, "image")]
    if target is not None:
        shown = np.where(target == 255, 0, target)
        panels.append(_titled(overlay(rgb, shown, colors), "ground truth"))
    panels.append(_titled(overlay(rgb, pred, colors), "prediction"))
    if binary and target is not None:
        panels.append(_titled(error_map(target, pred), "TP green FP red FN blue"))
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    row: list[np.ndarray] = []
    for panel in panels:
        row += [panel, gap]
    return np.concatenate(row[:-1], axis=1)


def save_png(path: Path, array: np.ndarray) -> Path:
    """Write a PNG atomically."""
    return atomic_write(path, lambda fh: Image.fromarray(array).save(fh, format="PNG"))


def save_curves(path: Path, history: Sequence[dict[str, float]]) -> Path:
    """Training loss and validation metrics per epoch as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.legend()
    for key in ("val_dice", "val_iou"):
        points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
        if points:
            right.plot(*zip(*points, strict=True), marker=".", label=key.replace("_", " "))
    right.set_xlabel("epoch")
    right.set_ylim(0, 1)
    if right.lines:
        right.legend()
    else:
        right.text(0.5, 0.5, "no validation yet", ha="center", va="center",
                   transform=right.transAxes)
    fig.tight_layout()
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=100))
    finally:
        plt.close(fig)
