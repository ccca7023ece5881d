"""Turn stored masks into targets for a task, and infer the task from the values.

Binary masks store background 0 and one foreground value (1, 255, 65535, ...). JPEG masks
carry compression noise and are thresholded at half their range. Multiclass masks store
class indices 0..K-1, with `IGNORE_INDEX` (255) for pixels that count nowhere, or any values
or colours that a class map names. Class-folder layouts give one binary mask per class:
a multiclass target when the masks are exclusive, a `H x W x K` multilabel target otherwise.
A region-of-interest mask (e.g. DRIVE's field of view) turns the pixels outside it into
ignored pixels, so losses and metrics count only the inside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..task import IGNORE_INDEX, Task
from .classmap import ClassMap
from .io import LOSSY_EXTENSIONS, read_mask
from .layouts import Pair


def _values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


def is_lossy(path: Path) -> bool:
    return Path(path).suffix.lower() in LOSSY_EXTENSIONS


def binarize(mask: np.ndarray, path: Path) -> np.ndarray:
    """A {0, 1} uint8 mask of a stored binary mask: any non-zero value is foreground, except
    in JPEG masks, whose compression noise is thresholded at half the range."""
    if mask.ndim != 2:
        raise DataError(f"expected a one-channel binary mask, got shape {mask.shape}", path)
    if is_lossy(path):
        top = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.integer) else 1
        return (mask > top / 2).astype(np.uint8)
    return (mask > 0).astype(np.uint8)


@dataclass(frozen=True)
class MaskEncoder:
    """Converts stored masks into the task's target array.

    `ignore_index` is the stored value of ignored pixels; by default 255 in index masks and
    none in binary masks (where 255 is the usual foreground). A `class_map` maps stored
    values or colours instead.
    """

    task: Task
    num_classes: int
    ignore_index: int | None = None
    class_map: ClassMap | None = None

    @property
    def reads_rgb(self) -> bool:
        return self.class_map is not None and self.class_map.by_color

    def encode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """The target as uint8 `H x W` (binary / multiclass); raises naming `path` on misfit."""
        if self.class_map is not None:
            return self.class_map.encode(mask, path)
        if mask.ndim != 2:
            raise DataError(f"colour mask of shape {mask.shape} needs a class map "
                            "(gray index or 0/255 masks are read directly)", path)
        if self.task == "binary" and is_lossy(path):
            return binarize(mask, path)
        self.check_values(np.unique(mask), path)
        ignored = mask == self._stored_ignore if self._stored_ignore is not None else None
        target = (mask > 0).astype(np.uint8) if self.task == "binary" else mask.astype(np.uint8)
        if ignored is not None:
            target[ignored] = IGNORE_INDEX
        return target

    @property
    def _stored_ignore(self) -> int | None:
        if self.ignore_index is not None:
            return self.ignore_index
        return IGNORE_INDEX if self.task == "multiclass" else None

    def encode_classes(self, masks: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
        """The target of one binary mask per class: binary `H x W`, multiclass `H x W`
        (class k + 1 where mask k is set, 0 elsewhere) or multilabel `H x W x K`."""
        layers = [binarize(m, p) for m, p in zip(masks, paths, strict=True)]
        if any(layer.shape != layers[0].shape for layer in layers):
            sizes = ", ".join(f"{p.name} {m.shape[1]}x{m.shape[0]}"
                              for m, p in zip(layers, paths, strict=True))
            raise DataError(f"class masks differ in size: {sizes}", paths[0])
        if self.task == "multilabel":
            return np.stack(layers, axis=-1)
        if self.task == "binary":
            return layers[0]
        stack = np.stack(layers)
        overlap = stack.sum(0) > 1
        if overlap.any():
            both = [p.parent.name for p, layer in zip(paths, layers, strict=True)
                    if (layer.astype(bool) & overlap).any()]
            raise DataError(f"class masks {', '.join(both)} overlap at {int(overlap.sum())} "
                            "pixel(s); a multiclass target needs exclusive masks (use --task "
                            "multilabel)", paths[0])
        return (stack * np.arange(1, len(layers) + 1, dtype=np.uint8)[:, None, None]).sum(
            0).astype(np.uint8)

    def check_values(self, values: np.ndarray, path: Path) -> None:
        """Raise naming `path` when the distinct stored values of a mask misfit the task."""
        if self.class_map is not None:
            return
        values = values[values != self.ignore_index] if self.ignore_index is not None else values
        if self.task == "binary":
            if not is_lossy(path) and (len(values) > 2 or values.min(initial=0) < 0):
                raise DataError(f"mask values {{{_values(values)}}} do not fit a binary task "
                                "(expected 0 and one foreground value, such as 0/255 or 0/1); "
                                "for index masks use --task multiclass", path)
        elif self.task == "multiclass":
            if is_lossy(path):
                raise DataError("JPEG compression changes class indices; store multiclass "
                                "masks as PNG or TIFF", path)
            bad = values[((values < 0) | (values >= self.num_classes))
                         & (values != self._stored_ignore)]
            if len(bad):
                raise DataError(f"mask values {{{_values(bad)}}} are outside the classes "
                                f"0..{self.num_classes - 1} (ignore index "
                                f"{self._stored_ignore})", path)
        else:
            raise DataError("multilabel targets are built from one binary mask per class "
                            "(class-folder layout)", path)


def load_target(pair: Pair, encoder: MaskEncoder, size: tuple[int, int] | None = None
                ) -> np.ndarray:
    """The target of a labelled pair: read, encoded, checked against the image `size`
    (height, width), with pixels outside its region of interest set to `IGNORE_INDEX`."""
    if pair.class_masks:
        target = encoder.encode_classes([read_mask(p) for p in pair.class_masks],
                                        list(pair.class_masks))
        where = pair.class_masks[0]
    elif pair.mask is not None:
        target = encoder.encode(read_mask(pair.mask, rgb=encoder.reads_rgb), pair.mask)
        where = pair.mask
    else:
        raise DataError("has no mask", pair.image)
    if size is not None and target.shape[:2] != tuple(size):
        raise DataError(f"mask is {target.shape[1]}x{target.shape[0]} (W x H) but its image "
                        f"{pair.image} is {size[1]}x{size[0]}", where)
    if pair.roi is not None:
        roi = binarize(read_mask(pair.roi), pair.roi)
        if roi.shape != target.shape[:2]:
            raise DataError(f"region-of-interest mask is {roi.shape[1]}x{roi.shape[0]} but its "
                            f"mask is {target.shape[1]}x{target.shape[0]}", pair.roi)
        target[roi == 0] = IGNORE_INDEX
    return target


def infer_task(values: set[int], lossy: bool) -> tuple[Task, int]:
    """(task, num_classes) that fit the union of stored mask values of a dataset."""
    if lossy or values <= {0} or (len(values) == 2 and 0 in values):
        return "binary", 1
    if min(values) < 0 or max(values - {IGNORE_INDEX}, default=0) >= IGNORE_INDEX:
        raise DataError(f"mask values {{{_values(np.array(sorted(values)))}}} fit neither a "
                        "binary task (0 and one foreground value) nor class indices 0..254")
    return "multiclass", max(values - {IGNORE_INDEX}) + 1
