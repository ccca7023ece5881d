"""Predict masks for new images and write them at each image's original size, from a
checkpoint or from an exported file alone (ONNX, OpenVINO IR, TorchScript); under torchrun
the inputs are sharded across the processes."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...artefacts.checkpoint import Checkpoint
from ...data.dataset import channel_evidence
from ...data.io import (
    ImageHeader,
    is_image_file,
    read_header,
    read_image,
)
from ...errors import DataError, RunError
from ...fileio import atomic_write
from ...progress import progress_bar
from ...viz import class_colors, heatmap, save_png
from ..distributed import Distributed
from .predictor import InferenceOptions, Predictor

log = logging.getLogger("unetzoo")


@dataclass
class PredictResult:
    """What `predict_paths` wrote.

    Attributes:
        written: the files this process wrote (all of them in a single process).
        images: the input images, over all processes.
        seconds: wall time of the prediction loop (this process).
        files: the files written, over all processes (each exists once).
        is_main: this is the only or the first process (the one that reports).
    """

    written: list[Path]
    images: int
    seconds: float
    files: int = 0
    is_main: bool = True


def input_images(source: Path) -> list[Path]:
    """The image files of a file or folder (sorted), with a clear error when there are none."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise DataError("input not found", source)
    files = sorted(p for p in source.iterdir() if p.is_file() and is_image_file(p))
    if not files:
        nested = sorted(p.name for p in source.iterdir()
                        if p.is_dir() and not p.name.startswith("."))
        if nested:
            raise DataError(f"no image files in folder; it holds folders ({', '.join(nested[:5])}"
                            f"{', ...' if len(nested) > 5 else ''}), which are not searched: "
                            "give one of them as --input", source)
        raise DataError("no image files in folder", source)
    return files


def output_stems(files: list[Path]) -> dict[Path, str]:
    """The output name (stem) of each input: its own stem, unless another input has the same
    stem ignoring case (`scan.png` and `scan.tif`, `case.JPG` and `case.jpg`); those are
    named by stem and lower-cased extension (`scan_png`, `scan_tif`), and a number is added
    where that still clashes (`case_jpg`, `case_jpg_2`, in input order). No two outputs differ
    only in case, so none overwrites another, on case-insensitive file systems too."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(path.stem.lower(), []).append(path)
    stems = {p: p.stem for p in files}
    taken = {stem.lower() for stem, group in groups.items() if len(group) == 1}
    for group in (g for g in groups.values() if len(g) > 1):
        for path in group:
            base = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
            name, count = base, 1
            while name.lower() in taken:
                count += 1
                name = f"{base}_{count}"
            taken.add(name.lower())
            stems[path] = name
    renamed = [p for p in files if stems[p] != p.stem]
    if renamed:
        shown = ", ".join(f"{p.name} -> {stems[p]}.png" for p in renamed[:4])
        log.info(f"{len(renamed)} inputs share a name apart from the extension or case; "
                 f"their outputs are named apart: {shown}"
                 f"{', ...' if len(renamed) > 4 else ''}")
    return stems


def _write_labels(path: Path, labels: np.ndarray, checkpoint: Checkpoint) -> None:
    """Binary (and each multilabel class): 0/255 PNG. Multiclass: a palette PNG whose pixel
    values are the class indices."""
    if checkpoint.task != "multiclass":
        save_png(path, (labels * 255).astype(np.uint8))
        return
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    colors = class_colors(checkpoint.model_spec["num_classes"], checkpoint.class_colors)
    image.putpalette(colors.flatten().tolist())
    atomic_write(path, lambda fh: image.save(fh, format="PNG"))


def _targets(stem: str, output: Path, checkpoint: Checkpoint, attention: int) -> Iterator[Path]:
    if checkpoint.task == "multilabel":
        for name in checkpoint.class_names:
            yield output / name / f"{stem}.png"
    else:
        yield output / f"{stem}.png"
    for level in range(attention):
        yield output / "attention" / f"{stem}_gate{level + 1}.png"


def _check_outputs(files: list[Path], stems: dict[Path, str], output: Path,
                   checkpoint: Checkpoint, levels: int, overwrite: bool) -> None:
    clashes = [t for f in files for t in _targets(stems[f], output, checkpoint, levels)
               if t.exists()]
    if clashes and not overwrite:
        raise RunError(f"{len(clashes)} output file(s) exist, e.g. {clashes[0]}; pass "
                       "--overwrite to replace them or choose another --output", output)
    if output.resolve() in {f.parent.resolve() for f in files}:
        raise RunError("output folder is the input folder; choose another --output", output)


def predict_paths(checkpoint_path: Path | str, source: Path | str, output: Path | str,
                  options: InferenceOptions | None = None, save_attention: bool = False,
                  overwrite: bool = False, progress: bool = True) -> PredictResult:
    """Write one mask per input image (multilabel: one folder per class) into `output`, at
    each image's original size.

    Args:
        checkpoint_path: a checkpoint (`.pt`), a model folder or pretrained name, a file
            written by `unetzoo export`, or a BioImage Model Zoo package (`.zip`).
        source: an image file or a folder of images (any size; tiled when larger than the
            model's patch).
        output: the output folder. Masks are PNGs named after the input's stem: binary 0/255,
            multiclass palette PNGs whose values are class indices, multilabel one 0/255 PNG
            per class in `output/<class>/`. Inputs whose stems clash (`scan.png`,
            `scan.tif`) get distinct names (`scan_png.png`, `scan_tif.png`; logged).
        options: runtime and backend (default `auto`: OpenVINO where installed, converted
            once and cached next to the checkpoint; torch otherwise), tiling, TTA,
            threshold, post-processing.
        save_attention: also write each gate's attention map (gated models, torch backend)
            as a heat-map PNG `output/attention/<stem>_gate<k>.png`, tiled like the masks.
        overwrite: replace existing output files (otherwise refused before any work).
        progress: show a progress bar.

    Returns:
        A `PredictResult`: the files written (each exactly once), the number of images and
        the seconds spent. Under torchrun each process predicts every N-th input and writes
        its own outputs; `files` and `images` count all processes.

    Raises:
        DataError: no input images, an unreadable image.
        RunError: outputs exist (without `overwrite`), output folder = input folder,
            attention maps asked of a model without them.
        CheckpointError, ConfigError: an unusable model file or option.

    Example:
        >>> result = predict_paths("runs/exp1/models/best.pt", "scans/", "masks/")
        >>> result.files  # one H x W uint8 PNG per input image (binary task)
        12
    """
    options = options or InferenceOptions()
    torch_only = "--save-attention: attention maps come from the PyTorch model" \
        if save_attention else None
    files = input_images(Path(source))
    output = Path(output)
    context = Distributed.start()
    level = log.level
    if not context.is_main:
        log.setLevel(logging.ERROR)
    try:
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
        stems = output_stems(files)
        # every rank checks before any rank writes (agreed waits for all of them)
        context.agreed(lambda: _check_outputs(files, stems, output, checkpoint, levels,
                                              overwrite))
        shard = files[context.rank::context.world_size]
        start = time.perf_counter()
        written = _predict_files(predictor, shard, stems, output, levels,
                                 progress and context.is_main)
        seconds = time.perf_counter() - start
        counts = context.gather((len(written), len(shard)))
    finally:
        log.setLevel(level)
        context.stop()
    return PredictResult(written, sum(c[1] for c in counts), seconds,
                         sum(c[0] for c in counts), context.is_main)


def _predict_files(predictor: Predictor, files: list[Path], stems: dict[Path, str],
                   output: Path, levels: int, progress: bool) -> list[Path]:
    checkpoint = predictor.checkpoint
    assert checkpoint is not None
    written: list[Path] = []
    predictor.emptied = 0  # counted for these files only (a predictor may be reused)
    reader = getattr(predictor.model, "read_input", None)  # packages of other tools
    wanted = checkpoint.preprocessing.in_channels
    headers: list[ImageHeader] = []
    for path in progress_bar(files, "predict", "image", enabled=progress, leave=True):
        image = reader(path) if reader else read_image(path, wanted)
        if not reader:
            headers.append(read_header(path))
        labels = np.asarray(predictor.labels(image))  # numpy or tensor, as the input
        targets = list(_targets(stems[path], output, checkpoint, levels))
        layers = labels if checkpoint.task == "multilabel" else [labels]
        for target, layer in zip(targets[: len(layers)], layers, strict=True):
            _write_labels(target, layer, checkpoint)
        if levels:
            maps = np.asarray(predictor.attention(image))
            for target, amap in zip(targets[-levels:], maps, strict=True):
                save_png(target, heatmap(amap))
        written += targets
    if warning := predictor.options.postprocess.emptied_warning(predictor.emptied, len(files)):
        log.warning(warning)
    images = channel_evidence(headers, wanted)
    if ";" in images:  # something was converted or dropped: say it
        log.info(f"images: {images}")
    return written
