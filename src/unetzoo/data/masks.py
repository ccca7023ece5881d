"""Turn stored mask values into targets for a task, and infer the task from the values.

Binary masks store background 0 and one foreground value (1, 255, 65535, ...). JPEG masks
carry compression noise and are thresholded at half their range. Multiclass masks store
class indices 0..K-1, with `IGNORE_INDEX` (255) for pixels that count nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..task import IGNORE_INDEX, Task
from .io import LOSSY_EXTENSIONS


def _values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return shown + (f", ... ({len(values)} distinct)" if len(values) > limit else "")


@dataclass(frozen=True)
class MaskEncoder:
    """Converts a stored mask (`H x W` integers) into the task's target array."""

    task: Task
    num_classes: int
    ignore_index: int = IGNORE_INDEX

    def encode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """The target as uint8 `H x W` (binary / multiclass); raises naming `path` on misfit."""
        if mask.ndim != 2:
            raise DataError(f"colour mask of shape {mask.shape} needs a class map "
                            "(gray index or 0/255 masks are read directly)", path)
        lossy = Path(path).suffix.lower() in LOSSY_EXTENSIONS
        if self.task == "binary" and lossy:
            top = np.iinfo(mask.dtype).max if np.issubdtype(mask.dtype, np.integer) else 1
            return (mask > top / 2).astype(np.uint8)
        self.check_values(np.unique(mask), path)
        return (mask > 0).astype(np.uint8) if self.task == "binary" else mask.astype(np.uint8)

    def check_values(self, values: np.ndarray, path: Path) -> None:
        """Raise naming `path` when the distinct stored values of a mask misfit the task."""
        lossy = Path(path).suffix.lower() in LOSSY_EXTENSIONS
        if self.task == "binary":
            if not lossy and (len(values) > 2 or values.min(initial=0) < 0):
                raise DataError(f"mask values {{{_values(values)}}} do not fit a binary task "
                                "(expected 0 and one foreground value, such as 0/255 or 0/1); "
                                "for index masks use --task multiclass", path)
        elif self.task == "multiclass":
            if lossy:
                raise DataError("JPEG compression changes class indices; store multiclass "
                                "masks as PNG or TIFF", path)
            bad = values[((values < 0) | (values >= self.num_classes))
                         & (values != self.ignore_index)]
            if len(bad):
                raise DataError(f"mask values {{{_values(bad)}}} are outside the classes "
                                f"0..{self.num_classes - 1} (ignore index {self.ignore_index})",
                                path)
        else:
            raise DataError("multilabel targets are built from one binary mask per class", path)


def infer_task(values: set[int], lossy: bool) -> tuple[Task, int]:
    """(task, num_classes) that fit the union of stored mask values of a dataset."""
    if lossy or values <= {0} or (len(values) == 2 and 0 in values):
        return "binary", 1
    if min(values) < 0 or max(values - {IGNORE_INDEX}, default=0) >= IGNORE_INDEX:
        raise DataError(f"mask values {{{_values(np.array(sorted(values)))}}} fit neither a "
                        "binary task (0 and one foreground value) nor class indices 0..254")
    return "multiclass", max(values - {IGNORE_INDEX}) + 1
