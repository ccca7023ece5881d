"""Predict masks for new images and write them at each image's original size, from anything a
user names as a trained model; every input is accounted for, and an interrupted run
continues where it stopped.

- Before any work, what will not be read is named per kind (another format, a sub-folder
  without `--recursive`, a hidden or empty file), one line each.
- An image that cannot be read or predicted is named when it happens and the others go on;
  the run ends with a summary naming every failed file and a non-zero exit (`strict` stops
  at the first). A file that cannot be written stops the run at once.
- Every output is written atomically; with `skip_existing` a re-run after a kill skips the
  images whose outputs are all there and finishes the rest with identical outputs.
- Reading the next images and writing the last ones overlap with the model (bounded queues:
  at most a few images in memory), so a folder runs at the speed of the model.
- Under torchrun the inputs are sharded across the processes.
- An image of more than `large_megapixels` million pixels that can be read a region at a
  time (TIFF, OME-Zarr, .npy: `data.large.open_large`) is predicted region by region and
  written tile by tile (a tiled BigTIFF, or OME-Zarr): memory is bounded by bands of rows,
  never by the image (`Predictor.label_bands`); reading the regions, the model and writing
  overlap (a thread each side, bounded queues).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.references import ModelReference
from ...data.dataset import channel_evidence
from ...data.input_stats import InputStatistics, ShiftMonitor
from ...data.io import (
    FORMATS,
    NPY_EXTENSIONS,
    TIFF_EXTENSIONS,
    ImageHeader,
    Listed,
    classify_path,
    describe_skipped,
    image_stem,
    list_images,
    read_header,
    read_image,
)
from ...data.large import LargeImage, PixelSize, open_large, read_pixel_size
from ...data.writers import (
    label_dtype,
    write_label_png,
    write_label_tiff,
    write_ome_zarr,
    write_tiled_tiff,
)
from ...errors import ConfigError, DataError, RunError, UnetzooError
from ...fileio import atomic_write, atomic_write_text, stale_temporaries
from ...instances.objects import (
    object_table,
    outlines,
    write_geojson,
    write_imagej_rois,
    write_table,
)
from ...progress import progress_bar
from ...viz import class_colors, heatmap, save_png
from ..distributed import Distributed
from .predictor import InferenceOptions, Predictor

log = logging.getLogger("unetzoo")

READ_AHEAD = 2  # images decoded ahead of the model
WRITE_BEHIND = 2  # outputs queued for writing
FAILED_LIST = "unreadable.txt"  # in the output folder: every input that failed, with why
LARGE_MEGAPIXELS = 64.0  # larger images readable a region at a time are predicted so
LARGE_FORMATS = ("tiff", "ome-zarr")  # how such images' outputs are written


@dataclass
class PredictResult:
    """What `predict_paths` did.

    Attributes:
        written: the files this process wrote (all of them in a single process).
        images: the input images, over all processes.
        seconds: wall time of the prediction loop (this process).
        files: the files written, over all processes (each exists once).
        is_main: this is the only or the first process (the one that reports).
        skipped_existing: images whose outputs were there already (`skip_existing`).
        failed: (input, one-line reason) of every image that could not be read or
            predicted, over all processes.
        not_read: entries of the input folder that are not images unetzoo reads, with why.
    """

    written: list[Path]
    images: int
    seconds: float
    files: int = 0
    is_main: bool = True
    skipped_existing: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    not_read: list[Listed] = field(default_factory=list)


class PredictionFailures(DataError):
    """Some inputs could not be read or predicted; the others were written."""


def input_images(source: Path, recursive: bool = False) -> tuple[list[Path], list[Listed]]:
    """The image files of a file or folder (sorted; sub-folders with `recursive`) and the
    entries that will not be read, with why (`data.io.classify_path`).

    Raises:
        DataError: no such input, a single file that is not an image unetzoo reads, or a
            folder without images (naming what it holds).
    """
    if not source.exists() and not source.is_symlink():
        raise DataError("input not found", source)
    if not source.is_dir() or classify_path(source).readable:  # a file, or an OME-Zarr
        entry = classify_path(source)
        if not entry.readable:
            raise DataError(f"{entry.reason}; unetzoo reads {FORMATS}", source)
        return [source], []
    files, skipped = list_images(source, recursive)
    if not files:
        folders = [e.path.name for e in skipped if e.kind == "folder"]
        if folders:
            raise DataError(f"no image files in folder; it holds folders ({', '.join(folders[:5])}"
                            f"{', ...' if len(folders) > 5 else ''}): pass --recursive to "
                            "predict the images in them, or give one as --input", source)
        what = "; ".join(describe_skipped(skipped, source)) or "it is empty"
        raise DataError(f"no image files in folder ({what})", source)
    return files, skipped


def output_stems(files: list[Path], root: Path | None = None) -> dict[Path, str]:
    """The output name of each input, without suffix: its name without its format's
    suffixes (`scan.ome.tif` -> `scan`), under its sub-folder of `root` (`--recursive`:
    `a/scan`), unless another input has the same name ignoring case (`scan.png` and
    `scan.tif`, `case.JPG` and `case.jpg`); those are named by stem and lower-cased
    extension (`scan_png`, `scan_tif`), and a number is added where that still clashes
    (`case_jpg`, `case_jpg_2`, in input order). No two outputs differ only in case, so none
    overwrites another, on case-insensitive file systems too."""
    def base(path: Path) -> str:
        folder = path.parent.relative_to(root).as_posix() if root is not None and \
            path.parent != root and path.is_relative_to(root) else ""
        return f"{folder}/{image_stem(path)}" if folder else image_stem(path)

    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(base(path).lower(), []).append(path)
    stems = {p: base(p) for p in files}
    taken = {stem for stem, group in groups.items() if len(group) == 1}
    for group in (g for g in groups.values() if len(g) > 1):
        for path in group:
            suffix = path.name[len(image_stem(path)):].lstrip(".").replace(".", "_").lower()
            name = f"{base(path)}_{suffix}"
            candidate, count = name, 1
            while candidate.lower() in taken:
                count += 1
                candidate = f"{name}_{count}"
            taken.add(candidate.lower())
            stems[path] = candidate
    renamed = [p for p in files if stems[p] != base(p)]
    if renamed:
        shown = ", ".join(f"{p.name} -> {stems[p]}.png" for p in renamed[:4])
        log.info(f"{len(renamed)} inputs share a name apart from the extension or case; "
                 f"their outputs are named apart: {shown}"
                 f"{', ...' if len(renamed) > 4 else ''}")
    return stems


OBJECT_FILES: tuple[str, ...] = ("rois", "geojson", "table")  # what objects may also be written


@dataclass(frozen=True)
class Outputs:
    """What `predict` writes for each image, and where.

    - binary (and each multilabel class): a 0/255 PNG; multiclass: a palette PNG of class
      indices;
    - an instance model: a 16-bit label TIFF (`<stem>.tif`; 32-bit past 65,535 objects),
      or with `masks` the 0/255 PNG of its objects' foreground;
    - with `objects` (an instance or binary model: a binary model's objects are its mask's
      connected components): `rois` an ImageJ / Fiji ROI set (`<stem>_rois.zip`), `geojson`
      QuPath objects (`<stem>.geojson`), `table` one row of measurements per object
      (`<stem>_objects.csv`);
    - attention maps of gated models (`attention/<stem>_gate<k>.png`).
    An image predicted region by region (`large`) gives one file, written tile by tile:
    `<stem>.tif`, a tiled BigTIFF with OME metadata (`large_format` "tiff"), or
    `<stem>.ome.zarr` ("ome-zarr"), of the same values as the small outputs (binary and
    foreground masks 0/255 uint8, class indices uint8, object ids uint32).
    The input's pixel size is kept in every image written.
    """

    checkpoint: Checkpoint
    attention: int = 0
    masks: bool = False
    objects: tuple[str, ...] = ()
    large_format: str = "tiff"

    def __post_init__(self) -> None:
        unknown = set(self.objects) - set(OBJECT_FILES)
        if unknown:
            raise ConfigError(f"unknown object output(s) {', '.join(sorted(unknown))}; "
                              f"choose {', '.join(OBJECT_FILES)}")
        task = self.checkpoint.task
        if self.objects and task not in ("instance", "binary"):
            raise ConfigError(f"object outputs (--{' --'.join(self.objects)}) need an instance "
                              f"or a binary model; this one is {task}")
        if self.masks and task != "instance":
            raise ConfigError("--masks writes an instance model's foreground as a mask; this "
                              "model writes masks already")
        if self.large_format not in LARGE_FORMATS:
            raise ConfigError(f"--large-format {self.large_format!r}: choose "
                              f"{' or '.join(LARGE_FORMATS)}")

    @property
    def labels_file(self) -> bool:
        return self.checkpoint.task == "instance" and not self.masks

    def targets(self, stem: str, output: Path, large: bool = False) -> list[Path]:
        """Every file one image gives, the labels or masks first (`large`: the one file of
        an image predicted region by region)."""
        checkpoint = self.checkpoint
        if large:
            return [output / f"{stem}{'.ome.zarr' if self.large_format == 'ome-zarr' else '.tif'}"]
        if checkpoint.task == "multilabel":
            targets = [output / name / f"{stem}.png" for name in checkpoint.class_names]
        else:
            targets = [output / f"{stem}{'.tif' if self.labels_file else '.png'}"]
        names = {"rois": f"{stem}_rois.zip", "geojson": f"{stem}.geojson",
                 "table": f"{stem}_objects.csv"}
        targets += [output / names[kind] for kind in OBJECT_FILES if kind in self.objects]
        return targets + [output / "attention" / f"{stem}_gate{level + 1}.png"
                          for level in range(self.attention)]

    def write(self, targets: list[Path], labels: np.ndarray, image: Any,
              pixel_size: PixelSize | None, maps: np.ndarray | None) -> None:
        """Write one image's files (`targets` from `targets`)."""
        checkpoint = self.checkpoint
        if checkpoint.task == "multilabel":
            for target, layer in zip(targets, labels, strict=False):
                _write_mask(target, layer, pixel_size)
        elif self.labels_file:
            write_label_tiff(targets[0], labels, pixel_size)
        elif checkpoint.task == "instance" or checkpoint.task == "binary":
            _write_mask(targets[0], labels > 0, pixel_size)
        else:
            _write_palette(targets[0], labels, checkpoint, pixel_size)
        if self.objects:
            objects = labels if checkpoint.task == "instance" else \
                ndimage.label(labels > 0)[0]
            _write_objects(targets, objects, image, pixel_size, self.objects, checkpoint)
        if maps is not None:
            for target, amap in zip(targets[-self.attention:], maps, strict=True):
                save_png(target, heatmap(amap))


    def large_refusal(self, postprocess: bool, resize: bool) -> str | None:
        """Why an image cannot be predicted region by region with these outputs and
        options (the flag that resolves it), or None."""
        if self.checkpoint.task == "multilabel":
            return "a multilabel model's one mask per class"
        if self.objects or self.attention:
            return "--" + " --".join([*self.objects] + (["save-attention"] if self.attention
                                                         else [])) + " (these need the whole image)"
        if postprocess:
            return "--min-size / --fill-holes (post-processing needs the whole image)"
        if resize:
            return "a resize-mode model (it resizes the whole image)"
        return None

    def write_large(self, target: Path, bands: Any, shape: tuple[int, int],
                    pixel_size: PixelSize | None) -> None:
        """Write the label bands (uint8, or uint32 object ids) of an image predicted region
        by region as they come, into `target` (a tiled BigTIFF or OME-Zarr)."""
        task = self.checkpoint.task
        if self.labels_file:  # object ids: as many as pixels at most
            dtype = label_dtype(min(shape[0] * shape[1], int(np.iinfo(np.uint32).max)))
            values: Any = bands
        elif task in ("instance", "binary"):
            dtype, values = np.dtype(np.uint8), ((b > 0).astype(np.uint8) * 255 for b in bands)
        else:
            dtype, values = np.dtype(np.uint8), bands
        write = write_ome_zarr if self.large_format == "ome-zarr" else write_tiled_tiff
        write(target, values, shape, dtype, pixel_size=pixel_size, overwrite=True)


def _write_mask(path: Path, mask: np.ndarray, pixel_size: PixelSize | None) -> None:
    write_label_png(path, (np.asarray(mask) > 0).astype(np.uint8) * 255, pixel_size, bits=8)


def _write_palette(path: Path, labels: np.ndarray, checkpoint: Checkpoint,
                   pixel_size: PixelSize | None) -> None:
    """A palette PNG whose pixel values are the class indices."""
    image = Image.fromarray(np.asarray(labels).astype(np.uint8), mode="P")
    colors = class_colors(checkpoint.model_spec["num_classes"], checkpoint.class_colors)
    image.putpalette(colors.flatten().tolist())
    options: dict[str, Any] = {"format": "PNG"}
    if pixel_size is not None:
        options["dpi"] = (25_400 / pixel_size.x, 25_400 / pixel_size.y)
    atomic_write(path, lambda fh: image.save(fh, **options))


def _write_objects(targets: list[Path], objects: np.ndarray, image: Any,
                   pixel_size: PixelSize | None, kinds: tuple[str, ...],
                   checkpoint: Checkpoint) -> None:
    by_suffix = {t.name.rsplit("_", 1)[-1] if t.name.endswith(("_rois.zip", "_objects.csv"))
                 else t.suffix: t for t in targets}
    shapes = outlines(objects) if "rois" in kinds or "geojson" in kinds else None
    pixels = image if isinstance(image, np.ndarray) else None
    size = (pixel_size.x, pixel_size.y) if pixel_size is not None else None
    rows = object_table(objects, pixels, size) if "table" in kinds or "geojson" in kinds \
        else None
    name = checkpoint.class_names[0] if checkpoint.class_names else "object"
    if "rois" in kinds and shapes is not None:
        write_imagej_rois(by_suffix["rois.zip"], shapes)
    if "geojson" in kinds and shapes is not None:
        write_geojson(by_suffix[".geojson"], shapes, name.capitalize(), measurements=rows)
    if "table" in kinds and rows is not None:
        write_table(by_suffix["objects.csv"], rows)


def large_inputs(files: Sequence[Path], megapixels: float) -> dict[Path, tuple[int, int]]:
    """(height, width) of each input predicted region by region: more than `megapixels`
    million pixels, in a format read a region at a time (TIFF, OME-Zarr, .npy: not those
    `open_large` reads whole); only metadata is read. A file that cannot be opened here is
    left to the ordinary reading, which names what is wrong with it."""
    found: dict[Path, tuple[int, int]] = {}
    for path in files:
        if not (path.is_dir() or path.suffix.lower() in TIFF_EXTENSIONS | NPY_EXTENSIONS):
            continue
        try:
            with open_large(path) as image:
                if image.reader != "whole" and image.height * image.width > megapixels * 1e6:
                    found[path] = image.shape
        except (UnetzooError, OSError, ValueError):
            continue
    return found


def _check_outputs(files: list[Path], stems: dict[Path, str], output: Path,
                   outputs: Outputs, overwrite: bool, skip_existing: bool,
                   large: Sequence[Path] | dict[Path, Any] = ()) -> set[Path]:
    """The inputs whose outputs are all there (to skip with `skip_existing`).

    Raises:
        RunError: outputs exist without `overwrite` or `skip_existing`; the output folder
            is an input folder.
    """
    if output.resolve() in {f.parent.resolve() for f in files}:
        raise RunError("output folder is the input folder; choose another --output", output)
    if overwrite:
        return set()
    exists = {f: [t.exists() for t in outputs.targets(stems[f], output, f in large)]
              for f in files}
    clashes = [f for f, there in exists.items() if any(there)]
    if clashes and not skip_existing:
        first = next(t for t in outputs.targets(stems[clashes[0]], output,
                                                clashes[0] in large) if t.exists())
        raise RunError(f"outputs of {len(clashes)} input(s) exist, e.g. {first}; pass "
                       "--skip-existing to finish an interrupted run, --overwrite to "
                       "replace them, or choose another --output", output)
    if skip_existing:  # a killed run's temporaries: never an output, removed
        stale = stale_temporaries(target for f in files
                                  for target in outputs.targets(stems[f], output))
        for temporary in stale:
            temporary.unlink(missing_ok=True)
        if stale:
            log.info(f"--skip-existing: removed {len(stale)} temporary file(s) an interrupted "
                     f"run left in {output} (e.g. {stale[0].name})")
    return {f for f, there in exists.items() if all(there)}


def predict_paths(checkpoint_path: Path | str | ModelReference, source: Path | str,
                  output: Path | str, options: InferenceOptions | None = None,
                  save_attention: bool = False, overwrite: bool = False,
                  progress: bool = True, *, recursive: bool = False, strict: bool = False,
                  skip_existing: bool = False, masks: bool = False,
                  objects: Sequence[str] = (), large_megapixels: float = LARGE_MEGAPIXELS,
                  large_format: str = "tiff") -> PredictResult:
    """Write one mask per input image (multilabel: one folder per class) into `output`, at
    each image's original size.

    Args:
        checkpoint_path: a trained model as a user names it (a checkpoint, a run folder, a
            model folder, a shipped name, a package, an exported file: `resolve_model`).
        source: an image file or a folder of images (any size; tiled when larger than the
            model's patch).
        output: the output folder. Masks are PNGs named after the input's name without its
            suffixes: binary 0/255, multiclass palette PNGs whose values are class indices,
            multilabel one 0/255 PNG per class in `output/<class>/`; the input's pixel size
            is kept. Inputs whose names clash (`scan.png`, `scan.tif`) get distinct names
            (`scan_png.png`, `scan_tif.png`; logged); with `recursive`, sub-folders are
            mirrored.
        options: runtime and backend (default `auto`), tiling, TTA, threshold,
            post-processing.
        save_attention: also write each gate's attention map (gated models, torch backend)
            as a heat-map PNG `output/attention/<stem>_gate<k>.png`, tiled like the masks.
        overwrite: replace existing output files (otherwise refused before any work).
        progress: show a progress bar.
        recursive: also predict the images in sub-folders (hidden ones and OME-Zarr images
            are not entered).
        strict: stop at the first image that cannot be read or predicted (default: name it,
            go on, and fail at the end).
        skip_existing: skip the images whose outputs are all there (continue an interrupted
            run); outputs are written atomically, so each is whole or absent.
        masks: an instance model writes its objects' foreground as a 0/255 PNG instead of
            the label TIFF.
        objects: also write, per image, any of "rois" (a Fiji ROI set), "geojson" (QuPath
            objects), "table" (measurements per object): see `Outputs`.
        large_megapixels: an image of more million pixels than this, in a format read a
            region at a time (TIFF, OME-Zarr, .npy), is predicted region by region and
            written tile by tile, in memory bounded by bands of rows (`large_inputs`;
            logged in one line per image). Images whose outputs need the whole image
            (multilabel, object files, attention maps, post-processing, resize mode) are
            refused before any work, naming the flag.
        large_format: how those are written: "tiff" (`<stem>.tif`, a tiled, zlib-compressed
            BigTIFF with OME metadata) or "ome-zarr" (`<stem>.ome.zarr`, OME-NGFF 0.4 with
            a pyramid); the input's pixel size kept.

    Returns:
        A `PredictResult`: the files written (each exactly once), the images, seconds, the
        images skipped as done, and what was not read. Under torchrun each process predicts
        every N-th input and writes its own outputs; counts cover all processes.

    Raises:
        DataError: no input images, or a single unreadable image; `PredictionFailures`
            (a DataError) after the run when some inputs failed (every one named, their list
            written to `output/unreadable.txt`), or at the first with `strict`.
        RunError: outputs exist (without `overwrite` or `skip_existing`), output folder =
            input folder, attention maps asked of a model without them, an output that
            cannot be written.
        ConfigError: a large image whose outputs need the whole image (see above), a
            `large_megapixels` not above 0, an unknown `large_format`.
        CheckpointError, ConfigError: an unusable model file or option.

    Example:
        >>> result = predict_paths("runs/exp1", "scans/", "masks/")
        >>> result.files  # one H x W uint8 PNG per input image (binary task)
        12
    """
    options = options or InferenceOptions()
    torch_only = "--save-attention: attention maps come from the PyTorch model" \
        if save_attention else None
    source, output = Path(source), Path(output)
    if recursive and source.is_dir() and output.resolve().is_relative_to(source.resolve()):
        raise RunError(f"the output folder is inside the input folder {source}, whose "
                       "sub-folders --recursive reads: the next run would take these outputs "
                       "as inputs; choose an --output outside it", output)
    files, not_read = input_images(source, recursive)
    context = Distributed.start()
    level = log.level
    if not context.is_main:
        log.setLevel(logging.ERROR)
    try:
        for line in describe_skipped(not_read, source):
            log.warning(f"{source}: {line}")
        opened: list[Predictor] = []
        # rank 0 opens first (it makes the OpenVINO cache entry once), then every other rank
        context.shared(lambda: opened.append(
            Predictor.open(checkpoint_path, options, torch_only=torch_only)))
        predictor = context.agreed(lambda: opened[0] if opened else Predictor.open(
            checkpoint_path, options, torch_only=torch_only))
        checkpoint = predictor.checkpoint
        assert checkpoint is not None
        levels = predictor.attention_levels if save_attention else 0
        if save_attention and not levels:
            raise RunError(f"model {checkpoint.model_spec['name']!r} has no attention maps "
                           "here (only gated models in the torch backend have them; add "
                           "--backend torch)")
        stems = output_stems(files, source if source.is_dir() else None)
        # every rank checks before any rank writes (agreed waits for all of them)
        outputs = Outputs(checkpoint, levels, masks, tuple(objects), large_format)
        large = _large_inputs_for(predictor, files, outputs, large_megapixels)
        done = context.agreed(lambda: _check_outputs(files, stems, output, outputs,
                                                     overwrite, skip_existing, large))
        if done:
            log.info(f"--skip-existing: {len(done)} of {len(files)} image(s) have their "
                     "outputs already; predicting the other "
                     f"{len(files) - len(done)}")
        todo = [f for f in files if f not in done]
        shard = todo[context.rank::context.world_size]
        start = time.perf_counter()
        written, failed = _predict_files(predictor, shard, stems, output, outputs,
                                         progress and context.is_main, strict, large)
        seconds = time.perf_counter() - start
        counts = context.gather((len(written), failed))
    finally:
        log.setLevel(level)
        context.stop()
    failures = [f for _, part in counts for f in part]
    result = PredictResult(written, len(files), seconds, sum(c[0] for c in counts),
                           context.is_main, len(done), failures, not_read)
    if failures:
        _report_failures(result, output, context.is_main)
    return result


def _large_inputs_for(predictor: Predictor, files: list[Path], outputs: Outputs,
                      megapixels: float) -> dict[Path, tuple[int, int]]:
    """`large_inputs` for this predictor and outputs, refusing (before any work) what cannot
    be predicted region by region."""
    if not megapixels > 0:
        raise ConfigError(f"--large-megapixels must be above 0, got {megapixels:g}")
    if getattr(predictor.model, "read_input", None) is not None:
        return {}  # a package of another tool reads its files its own way, whole
    large = large_inputs(files, megapixels)
    if large:
        path, (height, width) = next(iter(large.items()))
        why = outputs.large_refusal(predictor.options.postprocess.enabled,
                                    predictor.preprocessing.resize_mode == "resize")
        if why is not None:
            raise ConfigError(f"{path}: {height} x {width} pixels ({height * width / 1e6:.0f} "
                              f"megapixels, {len(large)} such input(s)) is predicted region by "
                              f"region (more than --large-megapixels {megapixels:g}), where "
                              f"{why} cannot be written; raise --large-megapixels to predict "
                              "it whole, or leave that out")
    return large


def _report_failures(result: PredictResult, output: Path, is_main: bool) -> None:
    """Write `output/unreadable.txt` (every failed input and why) and raise the summary."""
    listing = output / FAILED_LIST
    if is_main:
        atomic_write_text(listing, "".join(f"{p}\t{why}\n" for p, why in result.failed))
    shown = "; ".join(f"{p.name} ({why})" for p, why in result.failed[:3])
    more = f"; and {len(result.failed) - 3} more" if len(result.failed) > 3 else ""
    predicted = result.images - result.skipped_existing - len(result.failed)
    raise PredictionFailures(f"{len(result.failed)} of {result.images} image(s) could not be "
                             f"read or predicted: {shown}{more} (all listed in {listing}); "
                             f"the other {predicted} were written to {output}; after fixing "
                             "or removing them, --skip-existing predicts only what is "
                             "missing")


@dataclass
class _Read:
    path: Path
    image: Any = None
    header: ImageHeader | None = None
    pixel_size: PixelSize | None = None
    error: str | None = None

    @property
    def large(self) -> bool:
        return isinstance(self.image, LargeImage)


def _reader(predictor: Predictor, wanted: int, large: Sequence[Path] | dict[Path, Any] = ()
            ) -> Callable[[Path], _Read]:
    """What reads one input (in a thread, ahead of the model): the pixels as the model
    takes them, the header (for the channel summary) and the pixel size; an input in
    `large` is only opened (`open_large`: its regions are read as the model needs them)."""
    package_reader = getattr(predictor.model, "read_input", None)  # packages of other tools

    def read(path: Path) -> _Read:
        try:
            if package_reader is not None:
                return _Read(path, package_reader(path))
            if path in large:
                image = open_large(path, wanted)
                return _Read(path, image, pixel_size=image.pixel_size)
            return _Read(path, read_image(path, wanted), read_header(path),
                         _pixel_size(path))
        except UnetzooError as exc:
            return _Read(path, error=exc.message)
        except (OSError, ValueError, MemoryError) as exc:
            return _Read(path, error=f"cannot read ({type(exc).__name__}: {exc})")
    return read


def _pixel_size(path: Path) -> PixelSize | None:
    try:
        return read_pixel_size(path)
    except UnetzooError:
        return None  # the image itself read: a size we cannot tell is left out


def _read_ahead(read: Callable[[Path], _Read], files: list[Path]) -> Iterator[_Read]:
    """The inputs, decoded by a thread up to READ_AHEAD images ahead of the caller."""
    with ThreadPoolExecutor(1, thread_name_prefix="unetzoo-read") as pool:
        pending = [pool.submit(read, p) for p in files[:READ_AHEAD]]
        for index in range(len(files)):
            if index + READ_AHEAD < len(files):
                pending.append(pool.submit(read, files[index + READ_AHEAD]))
            yield pending.pop(0).result()


class _Abandoned(Exception):
    """The bands of an image stopped coming (its error is reported where it happened): the
    output being written is dropped (the atomic write leaves none), the run goes on."""


class _Writer:
    """Writes outputs in a thread, at most WRITE_BEHIND queued; the first error stops the
    run (raised by `put` or `close`): a file that cannot be written is not worth going on."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[Callable[[], None] | None] = queue.Queue(WRITE_BEHIND)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="unetzoo-write", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.error is None:
                try:
                    job()
                except _Abandoned:
                    pass
                except BaseException as exc:  # handed to the caller's thread
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            if isinstance(error, OSError):
                where = Path(error.filename) if error.filename else None
                raise RunError(f"cannot write an output ({error.strerror or error})",
                               where) from error
            raise error

    def put(self, job: Callable[[], None]) -> None:
        self._raise()
        self.jobs.put(job)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        self._raise()


class _Bands:
    """Bands of rows handed from the model's thread (`put`, `end`, `abandon`) to a job of
    the writer's (iterating), at most WRITE_BEHIND waiting: the model computes the next
    band while the writer compresses the last."""

    _END = object()

    def __init__(self, writer: _Writer) -> None:
        self.writer = writer
        self.items: queue.Queue[Any] = queue.Queue(WRITE_BEHIND)
        self.stopped = threading.Event()  # the writer no longer takes bands

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            while (item := self.items.get()) is not self._END:
                if isinstance(item, _Abandoned):
                    raise item
                yield item
        finally:
            self.stopped.set()

    def _hand(self, item: Any) -> bool:
        """Queue `item`, unless the writer stopped taking bands (False)."""
        while not self.stopped.is_set() and self.writer.error is None:
            try:
                self.items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def put(self, item: Any) -> None:
        """Hand on `item`; raises the writer's error if it stopped."""
        if not self._hand(item):
            self.writer._raise()
            raise RunError("the writer stopped before the image's last band")

    def end(self) -> None:
        self.put(self._END)

    def abandon(self) -> None:
        """Drop the output (the writer's own error, if any, is raised by its close)."""
        self._hand(_Abandoned())


def _predict_large(predictor: Predictor, item: _Read, target: Path, outputs: Outputs,
                   writer: _Writer) -> str | None:
    """Predict a `LargeImage` band by band and hand the bands to the writer as they come
    (the region reads run ahead in the predictor's thread); says so in one line. Returns
    why the image could not be predicted (its output then is not written), or None; an
    error of the writer is raised (it stops the run)."""
    image = item.image
    height, width = image.shape
    normalization = predictor.preprocessing.normalization
    statistics = "" if normalization == "dataset" else \
        f"; {normalization} normalisation by statistics of the image's overview"
    log.info(f"{item.path}: {height} x {width} ({height * width / 1e6:.0f} megapixels): "
             f"predicted region by region (tiles read as needed, memory bounded by bands of "
             f"rows{statistics}) -> {target}")
    bands = _Bands(writer)
    writer.put(partial(outputs.write_large, target, bands, (height, width), item.pixel_size))
    produced = predictor.label_bands(image)
    try:
        while True:
            try:
                _, band = next(produced)
            except StopIteration:
                break
            except UnetzooError as exc:  # the image's own problem: the others go on
                bands.abandon()
                return exc.message
            bands.put(band)
        bands.end()
    except BaseException:
        bands.abandon()
        raise
    finally:
        produced.close()
        image.close()
    return None


def _predict_files(predictor: Predictor, files: list[Path], stems: dict[Path, str],
                   output: Path, outputs: Outputs, progress: bool, strict: bool,
                   large: Sequence[Path] | dict[Path, Any] = ()
                   ) -> tuple[list[Path], list[tuple[Path, str]]]:
    checkpoint = predictor.checkpoint
    assert checkpoint is not None
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    predictor.emptied = 0  # counted for these files only (a predictor may be reused)
    constant: list[Path] = []  # constant images, labelled background (Predictor._constant)
    wanted = checkpoint.preprocessing.in_channels
    headers: list[ImageHeader] = []
    shift = shift_monitor(checkpoint)
    writer = _Writer()
    try:
        inputs = _read_ahead(_reader(predictor, wanted, large), files)
        for item in progress_bar(inputs, "predict", "image", enabled=progress, leave=True,
                                 total=len(files)):
            if item.error is None and item.large:
                targets = outputs.targets(stems[item.path], output, large=True)
                item.error = _predict_large(predictor, item, targets[0], outputs, writer)
                if item.error is None:
                    written += targets
                    continue
            if item.error is None:
                try:
                    before = predictor.constant
                    labels = predictor.labels(item.image)
                    if predictor.constant > before:
                        constant.append(item.path)
                    maps = np.asarray(predictor.attention(item.image)) \
                        if outputs.attention else None
                except UnetzooError as exc:
                    item.error = exc.message
            if item.error is not None:
                log.warning(f"{item.path}: not predicted: {item.error}")
                failed.append((item.path, item.error))
                if strict:
                    raise PredictionFailures(f"not predicted: {item.error} (--strict stops "
                                             "at the first image that fails)", item.path)
                continue
            if item.header is not None:
                headers.append(item.header)
                shift.observe(item.image, item.path.name, item.path)
            targets = outputs.targets(stems[item.path], output)
            writer.put(partial(outputs.write, targets, np.asarray(labels), item.image,
                               item.pixel_size, maps))
            written += targets
    finally:
        writer.close()
    if warning := predictor.options.postprocess.emptied_warning(predictor.emptied,
                                                                len(files) - len(failed)):
        log.warning(warning)
    if constant:
        shown = ", ".join(p.name for p in constant[:5]) + (", ..." if len(constant) > 5 else "")
        log.info(f"{len(constant)} constant image(s) (one value in every pixel) written as "
                 f"background: {shown}")
    images = channel_evidence(headers, wanted)
    if ";" in images:  # something was converted or dropped: say it
        log.info(f"images: {images}")
    if warning := shift.summary():
        log.warning(warning)
    return written, failed


def shift_monitor(checkpoint: Checkpoint) -> ShiftMonitor:
    """What names the images far from the model's training images (`data.input_stats`)."""
    pre = checkpoint.preprocessing
    return ShiftMonitor(InputStatistics.from_dict(checkpoint.input_stats), pre.normalization,
                        pre.normalize if pre.normalization != "dataset" else None)
