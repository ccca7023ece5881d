"""Write a converted dataset: the paired layout (images/, masks/, optional roi/ and
instances/), split.csv and classes.yaml, into a staging folder that replaces DEST only when
everything is written. DEST is refused when it is not empty, unless `overwrite`."""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import DataError, RunError
from ...fileio import atomic_write_bytes, atomic_write_text
from ..classmap import CLASS_MAP_FILE, ClassMap
from ..layouts import Pair
from ..split import default_split, write_split_csv

log = logging.getLogger("unetzoo")

SPLIT_FILE = "split.csv"


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 or uint16 `H x W` array."""
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def check_destination(source: Path, dest: Path, overwrite: bool) -> None:
    """Refuse a DEST that holds files (unless `overwrite`) or that overlaps the source."""
    src, dst = source.resolve(), dest.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        raise RunError(f"the destination must lie outside the source {source} (and the other "
                       "way round)", dest)
    if dest.exists() and not dest.is_dir():
        raise RunError("destination exists and is not a folder", dest)
    if dest.is_dir() and any(dest.iterdir()) and not overwrite:
        raise RunError("destination is not empty; pass --overwrite to replace it", dest)


@dataclass
class DatasetWriter:
    """Collects samples into a staging folder beside `dest`; `commit()` moves it into place."""

    dest: Path
    seed: int = 0
    pairs: list[Pair] = field(default_factory=list)
    stems: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.partial-",
                                             dir=self.dest.parent))

    def add(self, image_name: str, image: bytes, mask: np.ndarray | None, split: str | None,
            roi: np.ndarray | None = None, instances: np.ndarray | None = None) -> None:
        """One sample: the image's bytes as distributed (kept under its own file name), its
        mask (0/255 or index values), and optional ROI and instance label map."""
        name = Path(image_name).name
        key = Path(name).stem
        if key in self.stems:
            raise DataError(f"two images share the stem {key!r}; the converter cannot name "
                            "them apart", Path(image_name))
        self.stems.add(key)
        image_path = atomic_write_bytes(self.staging / "images" / name, image)
        mask_path = roi_path = None
        if mask is not None:
            mask_path = atomic_write_bytes(self.staging / "masks" / f"{key}.png", png_bytes(mask))
        if roi is not None:
            roi_path = atomic_write_bytes(self.staging / "roi" / f"{key}.png", png_bytes(roi))
        if instances is not None:
            atomic_write_bytes(self.staging / "instances" / f"{key}.png", png_bytes(instances))
        self.pairs.append(Pair(image_path, mask_path, split, roi=roi_path))

    def commit(self, class_map: ClassMap | None = None) -> list[Pair]:
        """Write split.csv (a seeded 80/10/10 split where the source has none) and
        classes.yaml, then move the staging folder to `dest`. Returns the pairs written."""
        if not self.pairs:
            raise DataError("no samples found; is this the right source and dataset name?")
        pairs = sorted(self.pairs, key=lambda p: str(p.image))
        if all(p.split is None for p in pairs):
            pairs = default_split(pairs, self.seed)
        write_split_csv(pairs, self.staging, self.staging / SPLIT_FILE)
        if class_map is not None:
            atomic_write_text(self.staging / CLASS_MAP_FILE, class_map.to_yaml())
        old = None
        if self.dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.old-", dir=self.dest.parent))
            self.dest.rename(old / "previous")
        self.staging.rename(self.dest)
        if old is not None:
            shutil.rmtree(old)
        return [Pair(self.dest / p.image.relative_to(self.staging),
                     self.dest / p.mask.relative_to(self.staging) if p.mask else None, p.split,
                     roi=self.dest / p.roi.relative_to(self.staging) if p.roi else None)
                for p in pairs]

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
