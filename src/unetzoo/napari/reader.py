"""The plugin's reader: unetzoo runs, and the label images `unetzoo predict` writes, as
napari layers with their names and scales (the pixel size the file states, in
micrometres, as the layer's scale).

napari routes to it (npe2 reader contribution `unetzoo.get_reader`, napari.yaml) folders,
`*.tif`, `*.tiff`, `*.png`, `config.yaml` and `*.pt`. napari's own reader also takes the
first four, so File > Open asks which reader to use for them (and can remember the choice
per extension), while `viewer.open(path)` keeps napari's own unless `plugin="unetzoo"` is
given; the widget's "Open labels…" reads label images without asking. What it reads
(`get_reader` returns None for anything else, and napari's own reader takes over):

- a **training run** (its folder, `config.yaml` or `models/*.pt`): the first test image of the
  run's split (else the first validation, else the first image), as an image layer; its
  stored mask, read as the run read its masks (`dataset.json`), as the labels layer
  `<image> truth`; and the run's best model's prediction as `<image> labels` (the layer the
  widget fine-tunes from), predicted when the folder is opened.
- a **label image**: a 16- or 32-bit single-channel TIFF or a 16-bit PNG whose values are
  the object ids 0..N, every one present (as `unetzoo predict` writes an instance model's
  labels, renumbered); an 8-bit gray PNG holding only 0 and 255 (a binary model's mask:
  read as labels 0 / 1); a palette PNG (a multiclass model's class indices). Each becomes
  the labels layer `<stem> labels`, so that opening an image and its prediction pairs them
  for fine-tuning.
- any other **2D image** of these formats (gray or colour) as an image layer with its
  pixel size as scale, so that choosing unetzoo as the reader of `.tif` / `.png` files
  (napari asks when several readers match) never fails on a plain image; stacks and other
  files are left to napari's own reader. Each layer's metadata says how it was read
  (`read_as`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..artefacts.runs import DATASET_FILE, RUN_CONFIG, SPLIT_FILE, run_of
from ..data.io import read_header, read_mask, read_pixels
from ..data.large import read_pixel_size
from ..data.layouts import Pair, read_split_csv
from ..errors import DataError, UnetzooError
from .loop import labels_name, open_model, predict_layer

log = logging.getLogger("unetzoo")

LayerData = tuple[Any, dict[str, Any], str]
TIFF_SUFFIXES = (".tif", ".tiff")
MAX_CHECKED_PIXELS = 400_000_000  # label files read whole to check their values


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader of `path` (a run, a label image or a 2D image; a list of them), or None
    when unetzoo does not read it (napari then asks its other readers).

    Args:
        path: what napari was asked to open.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_kind(Path(p)) for p in paths):
        return None
    return read


def read(path: str | list[str]) -> list[LayerData]:
    """The layers of run folders and label images (see the module docstring).

    Raises:
        DataError, CheckpointError: naming the file, as unetzoo's readers do.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerData] = []
    for item in paths:
        item = Path(item)
        kind = _kind(item)
        model = item if kind == "run" and item.suffix.lower() == ".pt" else None
        layers += read_run(run_of_file(item) or item, model) if kind == "run" else \
            [read_labels(item)] if kind == "labels" else [read_plain_image(item)]
    return layers


def run_of_file(path: Path) -> Path | None:
    """The run a path opens: a run folder itself, the folder of its `config.yaml`, or the
    run of a checkpoint in its `models/`, where the run has what the reader needs (its
    `dataset.json` and `split.csv`); None otherwise."""
    if path.name == RUN_CONFIG and path.is_file():
        path = path.parent
    run = run_of(path)
    if run is None or not ((run / DATASET_FILE).is_file() and (run / SPLIT_FILE).is_file()):
        return None
    return run


def _kind(path: Path) -> str | None:
    """`run`, `labels`, `image` (a 2D image of a label file's format) or None (not
    unetzoo's)."""
    try:
        if run_of_file(path) is not None:
            return "run"
        if path.is_dir():
            return None
        if path.suffix.lower() not in (*TIFF_SUFFIXES, ".png") or not path.is_file():
            return None
        if label_values(path) is not None:
            return "labels"
        # a 2D gray or colour image (stacks of pages, and broken files, are napari's)
        return "image" if read_header(path).channels in (1, 3) else None
    except (UnetzooError, OSError, ValueError):
        return None


def label_values(path: Path) -> tuple[np.ndarray, str] | None:
    """The labels of a label image `unetzoo predict` could have written (module docstring),
    with how they were read: object ids, 0 / 1 for a 0 / 255 mask, or class indices; None
    for other files.

    Raises:
        DataError: an unreadable file of a label image's kind.
    """
    suffix = path.suffix.lower()
    if suffix not in (*TIFF_SUFFIXES, ".png") or not path.is_file():
        return None
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as image:
            mode = image.mode
        if mode == "P":
            return (read_pixels(path, palette=True).array.astype(np.uint8),
                    "labels: the class indices of a palette PNG")
        if mode not in ("L", "I;16", "I;16B", "I"):
            return None
    else:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            if np.dtype(series.dtype) not in (np.dtype(np.uint16), np.dtype(np.uint32)) or \
                    len(series.shape) != 2 or int(np.prod(series.shape)) > MAX_CHECKED_PIXELS:
                return None
    array = read_pixels(path).array
    if array.ndim != 2 or array.dtype.kind != "u":
        return None
    if array.dtype == np.uint8:  # a mask: 0 and 255 only
        if not np.isin(array, (0, 255)).all():
            return None
        return (array > 0).astype(np.uint8), "labels: a 0/255 mask, read as 0/1"
    present = np.unique(array)
    if present[0] != 0 or len(present) != int(present[-1]) + 1:  # ids 0..N, each present
        return None
    return array, f"labels: object ids 0..{int(present[-1])}, each present"


def _scale(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(napari layer options, metadata) for the pixel size a file states (none: pixels)."""
    try:
        size = read_pixel_size(path)
    except DataError:
        size = None
    if size is None:
        return {}, {}
    return ({"scale": (size.y, size.x), "units": ("micrometer", "micrometer")},
            {"pixel_size": str(size)})


def read_labels(path: Path | str) -> LayerData:
    """A label image as the labels layer `<stem> labels`, with its pixel size as scale.

    Raises:
        DataError: naming `path`, for a file that is not a label image.
    """
    path = Path(path)
    found = label_values(path)
    if found is None:
        raise DataError("not a label image unetzoo writes (object ids 0..N in a 16/32-bit "
                        "TIFF or PNG, a 0/255 mask or a palette PNG of classes)", path)
    values, how = found
    scale, meta = _scale(path)
    meta.update(source=str(path), read_as=how)
    return values, {"name": labels_name(path.stem), **scale, "metadata": meta}, "labels"


def read_plain_image(path: Path | str) -> LayerData:
    """A 2D image that is not a label image, as an image layer named by its stem, with its
    pixel size as scale.

    Raises:
        DataError: naming `path`, for unreadable files and stacks.
    """
    path = Path(path)
    pixels = read_pixels(path)
    array = pixels.array
    scale, meta = _scale(path)
    rgb = array.ndim == 3 and array.shape[2] in (3, 4)
    meta.update(source=str(path), read_as="image: not a label image (see unetzoo.napari.reader)")
    return array, {"name": path.stem, "rgb": rgb, **scale, "metadata": meta}, "image"


def _first_pair(run: Path) -> tuple[Pair, dict[str, Any]]:
    """The run's first test pair (else validation, else any) and its dataset.json."""
    try:
        facts = json.loads((run / DATASET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the run's {DATASET_FILE} ({exc}); the reader needs it to "
                        "find the run's dataset", run) from exc
    root = Path(facts.get("dataset_path") or facts.get("dataset") or "")
    if not (run / SPLIT_FILE).is_file():
        raise DataError(f"the run has no {SPLIT_FILE}: which images it used is unknown", run)
    if not root.is_dir():
        raise DataError(f"the run's dataset folder {root} is gone (moved or deleted); open "
                        "its images directly", run)
    pairs = [p for p in read_split_csv(root, run / SPLIT_FILE, problems=[])
             if p.image.is_file()]
    if not pairs:
        raise DataError(f"none of the images of the run's {SPLIT_FILE} is in {root}", run)
    for split in ("test", "val"):
        chosen = [p for p in pairs if p.split == split]
        if chosen:
            return chosen[0], facts
    return pairs[0], facts


def _truth(pair: Pair, facts: dict[str, Any]) -> np.ndarray | None:
    """The pair's mask as the run read it (void pixels as 0), or None without one."""
    from ..data.masks.reading import MaskReading

    if pair.mask is None or not pair.mask.is_file() or not facts.get("masks"):
        return None
    reading = MaskReading.from_dict(facts["masks"])
    target = reading.encode(read_mask(pair.mask, rgb=reading.reads_rgb), pair.mask)
    if reading.task == "instance":
        return np.maximum(target, 0).astype(np.int32)
    return np.where(target == 255, 0, target).astype(np.uint8)


def read_run(run: Path | str, model: Path | str | None = None) -> list[LayerData]:
    """A training run folder's layers: its first test image, that image's mask as the run
    read it (`<image> truth`) and the prediction (`<image> labels`) of `model` (default:
    the run's best checkpoint).

    Raises:
        DataError: the run's dataset or split is missing (named); CheckpointError: a run
            without `models/best.pt`.
    """
    run = Path(run)
    pair, facts = _first_pair(run)
    pixels = read_pixels(pair.image).array
    rgb = pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    name = f"{run.name}: {pair.image.stem}"
    scale, meta = _scale(pair.image)
    meta.update(source=str(pair.image), run=str(run), split=pair.split)
    layers: list[LayerData] = [(pixels, {"name": name, "rgb": rgb, **scale, "metadata": meta},
                                "image")]
    truth = _truth(pair, facts)
    if truth is not None:
        layers.append((truth, {"name": f"{name} truth", **scale, "visible": False,
                               "metadata": dict(meta)}, "labels"))
    opened = open_model(str(model or run))
    labels = predict_layer(opened.predictor, pixels, rgb)
    meta = {**meta, "unetzoo": {"model": str(model or run), "task": opened.task,
                                "image": name}}
    if opened.task == "multilabel":
        for cls, plane in zip(opened.class_names, labels, strict=True):
            layers.append((plane, {"name": f"{labels_name(name)} {cls}", **scale,
                                   "metadata": dict(meta)}, "labels"))
    else:
        layers.append((labels, {"name": labels_name(name), **scale, "metadata": meta},
                       "labels"))
    log.info(f"{run}: the run's {pair.split or 'first'} image {pair.image.name} with its "
             f"mask and the run's prediction")
    return layers
