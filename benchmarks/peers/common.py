"""What the peer scripts (stardist_run.py, cellpose_run.py) share: flags, threads, data, output.

Each peer runs in its own virtual environment (see README.md), so this module needs only the
standard library, numpy and Pillow, and the heavy imports wait inside the functions: the
thread variables must be in the environment before numpy (and its BLAS) is first imported.
Outputs are written atomically with unetzoo's own `unetzoo.fileio` (standard library only),
found through the repository's `src/` folder, so a peer venv does not need unetzoo installed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from unetzoo.fileio import atomic_write, atomic_write_text  # noqa: E402  (stdlib only)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")


def parse_args(description: str, argv: list[str] | None = None,
               extra: list[tuple[tuple[str, ...], dict[str, Any]]] | None = None
               ) -> argparse.Namespace:
    """The flags both peers take: --data, --out, --minutes, --threads, --seed (+ `extra`).

    Raises:
        SystemExit: from argparse, for a wrong flag or a value out of range.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, required=True,
                        help="dataset folder with split.csv, images/ and labels/ "
                             "(e.g. ../shared/data/dsb2018 from the main checkout)")
    parser.add_argument("--out", type=Path, required=True,
                        help="output folder: labels/ (one 16-bit PNG per test image), run.json")
    parser.add_argument("--minutes", type=float, default=30.0,
                        help="training budget in minutes of wall clock (validation included)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for everything")
    parser.add_argument("--seed", type=int, default=0)
    for names, kwargs in extra or []:
        parser.add_argument(*names, **kwargs)
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"--minutes must be > 0, got {args.minutes}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    return args


def limit_threads(threads: int) -> dict[str, str]:
    """Put `threads` into every thread-count variable that numpy's BLAS, OpenMP, numba and
    TensorFlow read at import, and pin the process to `threads` of the CPUs it may use
    (Linux sched_setaffinity), so that helper threads a library starts on its own (Keras
    prefetches StarDist's data generator in a tf.data thread) share the same cores. Call
    before numpy is imported; returns what was set ("CPU_AFFINITY": the CPUs kept).

    Raises:
        RuntimeError: when numpy is already imported (its BLAS would ignore the setting).
    """
    if "numpy" in sys.modules:
        raise RuntimeError("limit_threads must run before numpy is imported")
    values = {name: str(threads) for name in THREAD_VARIABLES}
    values["TF_NUM_INTEROP_THREADS"] = "1"  # ops one after the other: at most `threads` busy
    os.environ.update(values)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:threads]
        os.sched_setaffinity(0, cpus)
        values["CPU_AFFINITY"] = ",".join(map(str, cpus))
    return values


@dataclass
class Split:
    """One split of the dataset: names (file stems), RGB images, and labels where read."""

    names: list[str] = field(default_factory=list)
    images: list[Any] = field(default_factory=list)   # H x W x 3 uint8
    labels: list[Any] = field(default_factory=list)   # H x W uint16, 0 = background


def read_split_rows(data: Path) -> dict[str, list[str]]:
    """Image file names (relative to `data`) per split of `data/split.csv`.

    Raises:
        FileNotFoundError: when split.csv is missing.
        ValueError: for a row whose mask is not `masks/X.png` or a split other than
            train/val/test.
    """
    rows: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    with open(data / "split.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["split"] not in rows:
                raise ValueError(f"{data / 'split.csv'}: unknown split {row['split']!r}")
            if Path(row["mask"]).parent.name != "masks":
                raise ValueError(f"{data / 'split.csv'}: mask {row['mask']!r} is not in masks/")
            rows[row["split"]].append(row["image"])
    return rows


def load_split(data: Path, images: list[str], with_labels: bool) -> Split:
    """Read `images` (RGB, H x W x 3 uint8) and, only if `with_labels`, their instance labels
    from `labels/` (same file name as the mask: split.csv's mask column names masks/X.png).

    Raises:
        FileNotFoundError: for a missing image or label file.
        ValueError: for a label file that is not one 2-D integer plane of the image's size.
    """
    import numpy as np
    from PIL import Image

    split = Split()
    for rel in images:
        name = Path(rel).stem
        with Image.open(data / rel) as im:
            image = np.asarray(im.convert("RGB"))
        split.names.append(name)
        split.images.append(image)
        if with_labels:
            path = data / "labels" / f"{name}.png"
            with Image.open(path) as im:
                label = np.asarray(im)
            if label.ndim != 2 or label.shape != image.shape[:2] or label.dtype.kind not in "ui":
                raise ValueError(f"{path}: expected a {image.shape[:2]} integer label image, "
                                 f"found {label.shape} {label.dtype}")
            split.labels.append(label.astype(np.uint16))
    return split


def write_label(folder: Path, name: str, label: Any) -> Path:
    """Write one instance label image (0 = background) as a 16-bit PNG `folder/name.png`,
    atomically. The peer's own ids are kept (no renumbering).

    Raises:
        ValueError: for a label that is not 2-D, negative, or has an id above 65535.
    """
    import numpy as np
    from PIL import Image

    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"{name}: a label image must be 2-D, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 65535):
        raise ValueError(f"{name}: label ids must be in 0..65535, got "
                         f"{label.min()}..{label.max()}")
    picture = Image.fromarray(label.astype(np.uint16))
    return atomic_write(folder / f"{name}.png", lambda fh: picture.save(fh, format="PNG"))


def write_run(out: Path, record: dict[str, Any]) -> Path:
    """Write `record` as `out/run.json` (atomically, indented, keys in insertion order)."""
    return atomic_write_text(out / "run.json", json.dumps(record, indent=2) + "\n")


def machine() -> dict[str, Any]:
    """Python, platform and CPU count of this machine, for run.json."""
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count()}


class Clock:
    """Named wall-clock sections in seconds: `with clock.section("train"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def section(self, name: str) -> _Section:
        return _Section(self, name)


class _Section:
    def __init__(self, clock: Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> _Section:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        spent = time.perf_counter() - self.start
        self.clock.seconds[self.name] = round(self.clock.seconds.get(self.name, 0.0) + spent, 3)
