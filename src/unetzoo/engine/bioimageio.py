"""BioImage Model Zoo packages: write them (`unetzoo export --format bioimageio`) and run them
(`unetzoo predict --model model.zip`), including packages written by other tools.

Written with the `bioimageio.spec` library (model description format 0.5) and checked with
`bioimageio.core`'s own test before the file is written. A package holds:

- `rdf.yaml`: inputs `batch, channel, y, x` of the stored pixel type (uint8 or uint16, as in
  the sample image) with the checkpoint's normalisation as `fixed_zero_mean_unit_variance`
  along the channel axis (mean and std scaled to the pixel range, so
  `(x / 255 - mean) / std` becomes `(x - 255 mean) / (255 std)`); outputs of the same size
  with `sigmoid` (binary, multilabel) or `softmax` (multiclass) as postprocessing, so the
  package gives probabilities; sizes `min + n * step` with step = the network's size
  divisor (fixed sizes for graphs exported for one size);
- TorchScript and ONNX weights (unetzoo exports, each checked against eager PyTorch);
- a test input (a crop of a real image: `sample_image`, else one from the run's dataset,
  else a generated one) and the output unetzoo computes for it in float32;
- a cover image (input | prediction), sample tensors, and a README model card;
- `config.unetzoo`: the checkpoint without its weights, so unetzoo runs its own packages
  exactly as the checkpoint (tiling, task, classes, threshold).

A package from another tool runs when its weights are TorchScript or ONNX and it has one 2D
input and one output (a batch axis, at most one channel axis, two space axes): the input is
pre-processed per image by `bioimageio.core` (fixed or per-image normalisations alike), the
network runs tile by tile in unetzoo's sliding window, and the output's postprocessing
(sigmoid, softmax, binarize, or none) decides how it becomes masks. Anything else is refused
with one line saying what was found.
"""

from __future__ import annotations

import io
import logging
import math
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpoint, as_checkpoint
from ..data.io import read_array, read_image
from ..data.transforms import Preprocessing
from ..errors import CheckpointError, ConfigError, DataError, ModelError, RunError
from ..fileio import atomic_write_bytes
from ..modelcard import CardInfo, default_title, render_card, with_run_metrics
from ..task import Task, probabilities
from ..viz import class_colors, comparison_panel, save_png
from .backends import (
    EXPORT_FORMAT,
    ExportedModule,
    onnxruntime_runner,
    open_exported,
    require,
)
from .export import OPSET, export_model

log = logging.getLogger("unetzoo")

SUFFIX = ".zip"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
PIXEL_RANGES: dict[str, float] = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}
TEST_SIZE = 256  # largest side of the test input


def _spec() -> Any:
    require("bioimageio.spec", "bioimageio")
    require("bioimageio.core", "bioimageio")
    import bioimageio.spec.model.v0_5 as v

    return v


def is_package(path: Path | str) -> bool:
    """A BioImage Model Zoo package: a `.zip` holding `rdf.yaml` (or `bioimageio.yaml`), or
    such a file itself."""
    path = Path(path)
    return path.suffix.lower() == SUFFIX or path.name in RDF_NAMES or \
        path.name.endswith(".bioimageio.yaml")


# -- writing ------------------------------------------------------------------------------
@dataclass
class PackageResult:
    """What `export_bioimageio` wrote and how it was checked."""

    path: Path
    max_abs_diff: float  # exported graphs vs eager PyTorch (float32 logits)
    test_status: str  # bioimageio.core's test: passed / failed / skipped
    seconds: float


def _identifier(text: str, fallback: str) -> str:
    """A bioimage.io identifier (letters, digits, underscores, not starting with a digit)."""
    ident = re.sub(r"\W+", "_", text).strip("_")
    return ident if ident and not ident[0].isdigit() else f"{fallback}{ident}"


def _channel_names(count: int) -> list[str]:
    return {1: ["gray"], 3: ["red", "green", "blue"]}.get(count, [f"c{i}" for i in
                                                                  range(count)])


def _citation(v: Any, text: str) -> Any:
    """A bioimage.io citation from free text: a DOI (10.x/...), an arXiv id or an http(s)
    URL found in it."""
    doi = re.search(r"\b(10\.\d{4,9}/[^\s,;]+[^\s,;.)])", text)
    if doi:
        return v.CiteEntry(text=text, doi=v.Doi(doi.group(1)))
    arxiv = re.search(r"arXiv[:\s]*(\d{4}\.\d{4,5})", text, re.IGNORECASE)
    if arxiv:  # arXiv papers have DOIs 10.48550/arXiv.<id>: no network needed to check
        return v.CiteEntry(text=text, doi=v.Doi(f"10.48550/arXiv.{arxiv.group(1)}"))
    url = re.search(r"https?://\S+", text)
    if url:
        return v.CiteEntry(text=text, url=url.group(0))
    raise ConfigError(f"citation {text!r} has no DOI (10.xxxx/...), arXiv id or URL; "
                      "bioimage.io needs one of them")


def _sample_image(checkpoint: Checkpoint, given: Path | str | None
                  ) -> tuple[np.ndarray, str, str]:
    """(stored pixels H x W x C, pixel type, where it came from): `given`, else the first test
    (or any) image of the run's dataset, else a generated nucleus image."""
    from ..data.layouts import find_pairs

    channels = checkpoint.preprocessing.in_channels
    candidates: list[Path] = [Path(given)] if given else []
    dataset = checkpoint.config.get("dataset")
    if not given and dataset and Path(dataset).is_dir():
        try:
            pairs = find_pairs(dataset, checkpoint.config.get("csvfile"))
            tests = [p for p in pairs if p.split == "test"] or pairs
            candidates = [p.image for p in tests[:1]]
        except Exception:  # a moved or changed dataset: fall back to a generated image
            candidates = []
    for path in candidates:
        stored = read_array(path, palette=False)
        dtype = "uint16" if stored.dtype == np.uint16 else "uint8" if stored.dtype == np.uint8 \
            else "float32"
        unit = read_image(path, channels)  # channels converted as for prediction
        values = unit * PIXEL_RANGES[dtype]
        return (values if dtype == "float32" else np.round(values).astype(dtype)), dtype, \
            str(path)
    from ..data.synthetic import synthesize

    image, _ = synthesize(0, 0, TEST_SIZE)
    unit = image.astype(np.float32) / 255
    if channels == 1:
        unit = unit @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    elif channels != 3:
        unit = np.repeat(unit[..., :1], channels, axis=2)
    return (unit * 255).round().astype(np.uint8), "uint8", "a generated nucleus image"


def _test_crop(pixels: np.ndarray, divisor: int, fixed: tuple[int, int] | None
               ) -> np.ndarray:
    """The centre crop used as test input: the fixed size, else the largest multiple of the
    size divisor up to TEST_SIZE that fits (smaller images are padded with their edge)."""
    if fixed is None:
        sides = [max(divisor, min(TEST_SIZE, s) // divisor * divisor) for s in pixels.shape[:2]]
    else:
        sides = list(fixed)
    pad = [(0, max(0, want - have)) for want, have in zip(sides, pixels.shape[:2], strict=True)]
    pixels = np.pad(pixels, [*pad, (0, 0)], mode="edge")
    top = (pixels.shape[0] - sides[0]) // 2
    left = (pixels.shape[1] - sides[1]) // 2
    return pixels[top: top + sides[0], left: left + sides[1]]


def _space_axes(v: Any, divisor: int, fixed: tuple[int, int] | None) -> list[Any]:
    if fixed is not None:
        return [v.SpaceInputAxis(id=v.AxisId(a), size=s) for a, s in zip("yx", fixed,
                                                                         strict=True)]
    return [v.SpaceInputAxis(id=v.AxisId(a), size=v.ParameterizedSize(min=divisor, step=divisor))
            for a in "yx"]


def export_bioimageio(source: nn.Module | Checkpoint | Path | str, out: Path | str, *,
                      authors: Sequence[str], license: str | None,
                      cite: Sequence[str] = (),
                      name: str | None = None, description: str | None = None,
                      tags: Sequence[str] = (), sample_image: Path | str | None = None,
                      test: bool = True, overwrite: bool = False,
                      prune_depth: int | None = None) -> PackageResult:
    """Write a BioImage Model Zoo package (model description format 0.5) of a model.

    Args:
        source: a checkpoint file, model folder, pretrained name, `Checkpoint`, or a model
            built with `create_model` (see `unetzoo.checkpoint.as_checkpoint`).
        out: the `.zip` to write.
        authors: author names (at least one).
        license: an SPDX licence identifier, e.g. `MIT` or `CC-BY-4.0`.
        cite: references (free text with a DOI, arXiv id or URL); the architecture's paper
            is added.
        name, description, tags: shown on bioimage.io (defaults from the model).
        sample_image: the image the test input is cropped from (default: the first test image
            of the run's dataset, else a generated one); its pixel type (uint8, uint16) is
            the package's input type.
        test: run `bioimageio.core`'s test on the package before writing it.
        overwrite: replace an existing `out`.
        prune_depth: export only UNet++ L^k of a deep-supervised UNet++.

    Returns:
        A `PackageResult`.

    Raises:
        ConfigError: no authors, an unknown licence, a citation without DOI/URL, a missing
            library. RunError: `out` exists. ExportError: a graph differs from PyTorch, or
            the package fails its test (nothing is written then).
    """
    v = _spec()
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec._internal.version_type import Version

    start = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != SUFFIX:
        raise ConfigError(f"a bioimageio package is a {SUFFIX} file, got {out.name!r}", out)
    if out.exists() and not overwrite:
        raise RunError("exists; pass --overwrite to replace it", out)
    authors = [a.strip() for a in authors if a.strip()]
    if not authors:
        raise ConfigError("a bioimage.io package names its authors: pass --author NAME")
    if not license:
        raise ConfigError("a bioimage.io package states the licence of its weights: pass "
                          "--license SPDX-ID (e.g. MIT, BSD-3-Clause, CC-BY-4.0)")
    try:
        license_id = v.LicenseId(license)
    except ValueError as exc:
        raise ConfigError(f"unknown licence {license!r}: give an SPDX identifier such as MIT, "
                          "BSD-3-Clause or CC-BY-4.0") from exc
    checkpoint = with_run_metrics(as_checkpoint(source), source)
    model = checkpoint.build_model(prune_depth)
    if prune_depth is not None:
        spec = checkpoint.model_spec
        checkpoint = replace(checkpoint, model_spec={
            **spec, "kwargs": {**spec["kwargs"], "prune_depth": prune_depth}})
    arch_citation = _citation(v, checkpoint_paper(checkpoint))
    citations = [_citation(v, c) for c in cite]
    pre, task = checkpoint.preprocessing, checkpoint.task
    divisor = int(getattr(model, "size_divisor", 1))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        exports = [export_model(model, checkpoint, fmt, tmp / f"weights.{fmt}")
                   for fmt in ("torchscript", "onnx")]
        fixed = exports[0].input_size
        if fixed is None and pre.resize_mode == "resize":
            fixed = (pre.img_size, pre.img_size)
            log.info(f"{out}: the model resizes images to {pre.img_size} x {pre.img_size}; the "
                     "package takes inputs of that size (bioimage.io has no resize step)")
        dtype, origin = _write_test_data(tmp, model, checkpoint, sample_image, divisor, fixed)
        card = CardInfo(
            title=name, description=description, authors=tuple(authors), license=license,
            citations=tuple(cite),
            usage=(f"unetzoo predict --model {out.name} --input images/ --output masks/",
                   f"bioimageio test {out.name}"),
            sections=(_bioimageio_section(dtype, task, fixed, divisor, origin),))
        (tmp / "README.md").write_text(render_card(checkpoint, card), encoding="utf-8")
        inputs, outputs = _tensor_descrs(v, checkpoint, tmp, dtype, divisor, fixed)
        metadata = {"format": EXPORT_FORMAT, "checkpoint": {
            **checkpoint.to_payload(), "state_dict": {}, "train_state": None}}
        descr = v.ModelDescr(
            name=_package_name(name or default_title(checkpoint)),
            description=(description or f"{default_title(checkpoint)}, trained with unetzoo. "
                         "Outputs probabilities; threshold at 0.5 for masks.")[:1024],
            authors=[v.Author(name=a.replace("/", "-")) for a in authors],
            cite=[*citations, arch_citation], license=license_id,
            documentation=v.FileDescr(source=tmp / "README.md"),
            covers=[v.FileDescr(source=tmp / "cover.png")],
            tags=sorted({"unetzoo", "segmentation", "semantic-segmentation", "2d", "pytorch",
                         "onnx", "torchscript", checkpoint.model_spec["name"], task, *tags,
                         *[str(c).lower() for c in outputs.axes[1].channel_names]}),
            inputs=[inputs], outputs=[outputs],
            weights=v.WeightsDescr(
                torchscript=v.TorchscriptWeightsDescr(
                    source=tmp / "weights.torchscript",
                    pytorch_version=Version(torch.__version__.split("+")[0])),
                onnx=v.OnnxWeightsDescr(source=tmp / "weights.onnx", opset_version=OPSET,
                                        parent="torchscript")),
            config=v.Config(bioimageio=v.BioimageioConfig(
                architecture_type=checkpoint.model_spec["name"][:32],
                model_parameter_count=sum(p.numel() for p in model.parameters()),
                task="semantic segmentation"), unetzoo=metadata),
        )
        package = save_bioimageio_package(descr, output_path=tmp / "package.zip")
        status = "skipped"
        if test:
            status = _run_test(package, out)
        atomic_write_bytes(out, Path(package).read_bytes())
    return PackageResult(out, max(r.max_abs_diff for r in exports), status,
                         time.perf_counter() - start)


def _write_test_data(tmp: Path, model: nn.Module, checkpoint: Checkpoint,
                     sample_image: Path | str | None, divisor: int,
                     fixed: tuple[int, int] | None) -> tuple[str, str]:
    """Test input and expected output (float32 PyTorch), sample tensors and the cover into
    `tmp`; returns the input's pixel type and where the test image came from."""
    import tifffile

    pre, task = checkpoint.preprocessing, checkpoint.task
    pixels, dtype, origin = _sample_image(checkpoint, sample_image)
    crop = _test_crop(pixels, divisor, fixed)
    unit = crop.astype(np.float32) / PIXEL_RANGES[dtype]
    with torch.inference_mode():
        logits = model.float()(pre.to_tensor(unit)[None])
    probs = probabilities(logits, task).numpy().astype(np.float32)
    np.save(tmp / "test_input.npy", np.ascontiguousarray(crop.transpose(2, 0, 1)[None]))
    np.save(tmp / "test_output.npy", probs)
    labels = (probs[0].argmax(0) if task == "multiclass" else probs[0] > 0.5).astype(np.uint8)
    colors = class_colors(max(len(checkpoint.class_names), 2) + 1, checkpoint.class_colors)
    shown = unit[..., :3] if unit.shape[2] >= 3 else unit[..., :1]
    save_png(tmp / "cover.png", comparison_panel(shown, None, labels[0] if task == "binary"
                                                 else labels, colors, task == "binary"))
    save_png(tmp / "sample_input.png", crop[..., 0] if crop.shape[2] == 1 else crop[..., :3])
    tifffile.imwrite(tmp / "sample_output.tif", probs[0])
    return dtype, origin


def _tensor_descrs(v: Any, checkpoint: Checkpoint, tmp: Path, dtype: str, divisor: int,
                   fixed: tuple[int, int] | None) -> tuple[Any, Any]:
    """The input (stored pixels, the checkpoint's normalisation) and output (probabilities)
    tensor descriptions."""
    pre, task = checkpoint.preprocessing, checkpoint.task
    scale = PIXEL_RANGES[dtype]
    class_ids = [_identifier(c, "class_") for c in checkpoint.class_names]
    inputs = v.InputTensorDescr(
        id=v.TensorId("image"),
        description=f"{dtype} pixels as stored (normalised in preprocessing)",
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[
            v.Identifier(c) for c in _channel_names(pre.in_channels)]),
            *_space_axes(v, divisor, fixed)],
        test_tensor=v.FileDescr(source=tmp / "test_input.npy"),
        sample_tensor=v.FileDescr(source=tmp / "sample_input.png"),
        data=v.IntervalOrRatioDataDescr(type=dtype, range=(0, scale) if dtype != "float32"
                                        else (None, None)),
        preprocessing=[
            v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32")),
            v.FixedZeroMeanUnitVarianceDescr(kwargs=v.FixedZeroMeanUnitVarianceAlongAxisKwargs(
                mean=[m * scale for m in pre.mean], std=[s * scale for s in pre.std],
                axis=v.AxisId("channel"))),
            v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32"))])
    outputs = v.OutputTensorDescr(
        id=v.TensorId("probabilities"),
        description=f"{task} class probabilities; "
                    + ("argmax for labels" if task == "multiclass" else "threshold 0.5"),
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[
            v.Identifier(c) for c in (class_ids[:1] if task == "binary" else class_ids)]),
            *[v.SpaceOutputAxis(id=v.AxisId(a), size=v.SizeReference(
                tensor_id=v.TensorId("image"), axis_id=v.AxisId(a))) for a in "yx"]],
        test_tensor=v.FileDescr(source=tmp / "test_output.npy"),
        sample_tensor=v.FileDescr(source=tmp / "sample_output.tif"),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        postprocessing=[v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))]
        if task == "multiclass" else [v.SigmoidDescr()])
    return inputs, outputs


def checkpoint_paper(checkpoint: Checkpoint) -> str:
    from ..models import model_card

    card = model_card(checkpoint.model_spec["name"])
    return f"{card.paper} ({card.year})"


def _package_name(text: str) -> str:
    """A bioimage.io name: letters, digits, `_+- ()`, 5 to 128 characters."""
    name = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", text)
    name = re.sub(r"\s+", " ", name).strip()[:128]
    return name if len(name) >= 5 else f"unetzoo {name}".strip()


def _bioimageio_section(dtype: str, task: Task, fixed: tuple[int, int] | None, divisor: int,
                        origin: str) -> str:
    sizes = (f"exactly {fixed[0]} x {fixed[1]} pixels" if fixed else
             f"any height and width that are multiples of {divisor}")
    output = "softmax over classes (take the argmax)" if task == "multiclass" else \
        "sigmoid per channel (threshold at 0.5)"
    return (
        "## In bioimage.io tools (deepImageJ, QuPath, ilastik, napari)\n\n"
        f"- Input `image`: axes batch, channel, y, x; {dtype} pixel values as stored in the "
        f"image file; {sizes} (larger images: tile them). The package's preprocessing "
        "applies unetzoo's normalisation.\n"
        f"- Output `probabilities`: the same size; postprocessing is the {output}.\n"
        f"- Test input: a crop of {origin}; its expected output was computed by unetzoo "
        "(float32 PyTorch), and the TorchScript and ONNX weights reproduce it "
        "(`bioimageio test`).\n")


def _run_test(package: Path, out: Path) -> str:
    """bioimageio.core's own test of the package (validation, reproducing the test output
    with every weights format, inference at other sizes and batch sizes)."""
    from bioimageio.core import test_model

    from .export import ExportError

    summary = test_model(package)
    if summary.status != "passed":
        failed = [d for d in summary.details if d.status == "failed"]
        detail = failed[0] if failed else None
        errors = detail.errors[0].msg.splitlines()[0] if detail and detail.errors else ""
        raise ExportError(f"bioimageio.core's test failed ({detail.name if detail else '?'}: "
                          f"{errors}); the package was not written", out)
    return "passed"


# -- reading ------------------------------------------------------------------------------
@dataclass
class OpenedPackage:
    """A package opened for prediction: the module (`B x C x H x W` -> logits `B x K x H x
    W`), the checkpoint it stands for (without weights), and, for packages of other tools,
    how an image file becomes the module's input (`read`: path -> normalised `C x H x W`)."""

    module: nn.Module
    checkpoint: Checkpoint
    read: Callable[[Path], torch.Tensor] | None
    weights: str


def _load_descr(path: Path) -> Any:
    v = _spec()
    from bioimageio.spec import load_model_description

    if not path.exists():
        raise CheckpointError("bioimageio package not found", path)
    try:
        descr = load_model_description(path, format_version="latest", perform_io_checks=False)
    except Exception as exc:  # the spec library raises many types for broken packages
        raise CheckpointError(f"not a readable bioimage.io model package: "
                              f"{str(exc).splitlines()[0]}", path) from exc
    if not isinstance(descr, v.ModelDescr):
        raise CheckpointError(f"not a bioimage.io model ({type(descr).__name__})", path)
    return descr


def _weights_bytes(entry: Any, path: Path) -> bytes:
    from bioimageio.spec.utils import get_reader

    source = entry.source
    if str(source).startswith(("http://", "https://")):
        raise CheckpointError(f"the weights are at {source}; download the package (.zip) "
                              "first: unetzoo does not fetch files while predicting", path)
    try:
        return get_reader(source).read()
    except Exception as exc:
        raise CheckpointError(f"cannot read the weights {source}: {exc}", path) from exc


def _pick_weights(descr: Any, backend: str, path: Path) -> str:
    available = [name for name, entry in descr.weights if entry is not None]
    usable = [w for w in ("torchscript", "onnx") if w in available]
    if not usable:
        raise ModelError(f"weights formats {', '.join(available)}: unetzoo runs bioimage.io "
                         "packages with TorchScript or ONNX weights", path)
    preferred = "torchscript" if backend == "torch" else "onnx"
    return preferred if preferred in usable else usable[0]


def open_package(path: Path | str, backend: str = "torch", precision: str = "fp32"
                 ) -> OpenedPackage:
    """Open a BioImage Model Zoo package for `unetzoo predict`.

    Args:
        path: the package `.zip` (or its `rdf.yaml`).
        backend: `torch` runs TorchScript weights (else ONNX), `onnxruntime` / `openvino` run
            ONNX weights (else TorchScript).
        precision: OpenVINO inference precision.

    Returns:
        An `OpenedPackage`.

    Raises:
        CheckpointError: unreadable, or weights outside the package. ModelError: not a 2D
            single-input, single-output model with TorchScript or ONNX weights, or outputs
            unetzoo cannot turn into masks.
    """
    path = Path(path)
    descr = _load_descr(path)
    weights = _pick_weights(descr, backend, path)
    data = _weights_bytes(getattr(descr.weights, weights), path)
    own = (descr.config.model_extra or {}).get("unetzoo")
    if own:
        with tempfile.TemporaryDirectory() as tmp:
            file = Path(tmp) / f"weights.{weights}"
            file.write_bytes(data)
            run_with = "torch" if weights == "torchscript" else \
                ("onnxruntime" if backend == "torch" else backend)
            try:
                opened = open_exported(file, run_with, precision)
            except CheckpointError:
                opened = None  # not a unetzoo export after all: read it as any package
        if opened is not None:
            log.info(f"{path}: unetzoo package, {weights} weights ({opened.backend})")
            return OpenedPackage(opened.module, opened.checkpoint, None, weights)
    return _foreign(descr, weights, data, backend, path)


def _axis_kinds(axes: Sequence[Any], where: str, path: Path) -> list[str]:
    kinds = [a.type for a in axes]
    space = kinds.count("space")
    others = [k for k in kinds if k not in ("batch", "channel", "space")]
    if others or space != 2 or kinds.count("channel") > 1:
        found = ", ".join(f"{a.id} ({a.type})" for a in axes)
        raise ModelError(f"{where} axes {found}: unetzoo runs 2D models (batch, channel, y, x)",
                         path)
    return kinds


def _valid_size(size: Any) -> Callable[[int], int]:
    """The smallest valid axis size >= n for an axis size description."""
    if isinstance(size, int):
        return lambda n: size
    minimum, step = int(size.min), int(size.step)
    return lambda n: minimum + max(0, math.ceil((n - minimum) / step)) * step


class PackageModule(ExportedModule):
    """A foreign package's network as `B x C x H x W` -> logits `B x K x H x W`: the input is
    zero-padded to a size the package accepts and put in its axis order; the output is put
    back, cropped and turned into logits (`output`: probabilities and binarize thresholds are
    mapped so that unetzoo's sigmoid / softmax and 0.5 threshold give the package's result).
    `read_input` turns an image file into the normalised `C x H x W` input (the package's
    preprocessing, per whole image).
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], in_kinds: list[str],
                 out_kinds: list[str], sizes: list[Callable[[int], int]], num_classes: int,
                 output: Callable[[torch.Tensor], torch.Tensor], per_sample: bool,
                 name: str) -> None:
        super().__init__(run, num_classes, None, name)
        self.in_kinds, self.out_kinds, self.sizes = in_kinds, out_kinds, sizes
        self.output, self.per_sample = output, per_sample
        self.read_input: Callable[[Path], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        want = [size(n) for size, n in zip(self.sizes, (height, width), strict=True)]
        if want[0] < height or want[1] < width:
            raise ConfigError(f"{self.name} takes at most {want[0]} x {want[1]} inputs; got "
                              f"{height} x {width}")
        x = F.pad(x.float(), (0, want[1] - width, 0, want[0] - height)).numpy()
        chunks = [x[i: i + 1] for i in range(len(x))] if self.per_sample else [x]
        outputs = [_from_layout(np.asarray(self.run(np.ascontiguousarray(
            _to_layout(chunk, self.in_kinds))), np.float32), self.out_kinds) for chunk in chunks]
        return self.output(torch.from_numpy(np.concatenate(outputs))[..., :height, :width])


def _to_layout(arr: np.ndarray, kinds: list[str]) -> np.ndarray:
    """`B x C x H x W` -> the package's axis order (`kinds`: batch, channel, space, space in
    any order; a missing batch or channel axis must have size 1 here)."""
    spaces = iter((2, 3))
    order = [{"batch": 0, "channel": 1}[k] if k != "space" else next(spaces) for k in kinds]
    missing = tuple(d for d in (0, 1) if d not in order)
    arr = arr[:, :1] if 1 in missing else arr
    arr = np.squeeze(arr, axis=missing) if missing else arr
    remaining = sorted(order)
    return arr.transpose([remaining.index(d) for d in order])


def _from_layout(arr: np.ndarray, kinds: list[str]) -> np.ndarray:
    """The package's axis order -> `B x K x H x W` (missing batch / channel axes added)."""
    spaces = iter((2, 3))
    dims = [{"batch": 0, "channel": 1}[k] if k != "space" else next(spaces) for k in kinds]
    for missing in (0, 1):
        if missing not in dims:
            arr, dims = arr[None], [missing, *dims]
    return arr.transpose(np.argsort(dims))


def _output_rule(descr: Any, path: Path) -> tuple[Task, int, Callable[[torch.Tensor],
                                                                      torch.Tensor], str]:
    """How the package's output becomes logits for unetzoo's task: (task, classes, transform,
    what was decided)."""
    out = descr.outputs[0]
    _axis_kinds(out.axes, f"output {out.id!r}", path)
    channel = next((a for a in out.axes if a.type == "channel"), None)
    classes = len(channel.channel_names) if channel is not None else 1
    ops = [p for p in out.postprocessing if p.id != "ensure_dtype"]
    names = [p.id for p in ops]
    threshold = None
    if names and names[-1] == "binarize":
        kwargs = ops[-1].kwargs
        if not isinstance(getattr(kwargs, "threshold", None), (int, float)):
            raise ModelError(f"output {out.id!r} is binarized per channel; unetzoo takes one "
                             "threshold", path)
        threshold = float(kwargs.threshold)
        names = names[:-1]
    unknown = [n for n in names if n not in ("sigmoid", "softmax")]
    if unknown or len(names) > 1:
        raise ModelError(f"output {out.id!r} has postprocessing {', '.join(names)}: unetzoo "
                         "turns probabilities or logits (sigmoid, softmax, binarize) into masks, "
                         "not this output", path)
    if names == ["softmax"]:
        if threshold is not None:
            raise ModelError(f"output {out.id!r} binarizes softmax probabilities per class: "
                             "not a multiclass map unetzoo can take", path)
        return "multiclass", classes, lambda t: t, "softmax postprocessing: multiclass logits"
    if names == ["sigmoid"]:
        shift = 0.0 if threshold is None else math.log(threshold / (1 - threshold))
        task: Task = "binary" if classes == 1 else "multilabel"
        return task, classes, (lambda t: t - shift), "sigmoid postprocessing: logits"
    expected = _test_output(descr, path)
    low, high = float(expected.min()), float(expected.max())
    if low >= 0 and high <= 1:
        task = "binary" if classes == 1 else "multilabel"
        cut = 0.5 if threshold is None else threshold
        if classes > 1 and np.allclose(expected.sum(axis=_channel_dim(out.axes)), 1, atol=1e-3):
            task = "multiclass"
            return task, classes, lambda t: torch.log(t.clamp_min(1e-7)), (
                f"no postprocessing; the test output's values lie in [{low:.2f}, {high:.2f}] "
                "and sum to 1 over channels: class probabilities")
        shift = math.log(cut / (1 - cut))
        return task, classes, (lambda t: torch.logit(t.clamp(1e-6, 1 - 1e-6)) - shift), (
            f"no postprocessing; the test output's values lie in [{low:.2f}, {high:.2f}]: "
            f"probabilities, threshold {cut:g}")
    if classes == 1:
        shift = 0.0 if threshold is None else threshold
        return "binary", 1, (lambda t: t - shift), (
            f"no postprocessing; the test output's values lie in [{low:.2f}, {high:.2f}]: "
            f"logits, threshold {shift:g}")
    raise ModelError(f"output {out.id!r} has {classes} channels, no sigmoid or softmax and "
                     f"test values in [{low:.2f}, {high:.2f}]: cannot tell multiclass from "
                     "multilabel logits", path)


def _channel_dim(axes: Sequence[Any]) -> int:
    return next(i for i, a in enumerate(axes) if a.type == "channel")


def _test_output(descr: Any, path: Path) -> np.ndarray:
    return _test_array(descr.outputs[0], path)


def _test_array(tensor: Any, path: Path) -> np.ndarray:
    from bioimageio.spec.utils import load_array

    if tensor.test_tensor is None:
        raise ModelError(f"tensor {tensor.id!r} has no test tensor to tell what its values "
                         "are", path)
    return np.asarray(load_array(tensor.test_tensor))


def _foreign(descr: Any, weights: str, data: bytes, backend: str, path: Path
             ) -> OpenedPackage:
    if len(descr.inputs) != 1 or len(descr.outputs) != 1:
        raise ModelError(f"{len(descr.inputs)} input(s) and {len(descr.outputs)} output(s): "
                         "unetzoo runs packages with one input image and one output", path)
    inp, out = descr.inputs[0], descr.outputs[0]
    in_kinds = _axis_kinds(inp.axes, f"input {inp.id!r}", path)
    channel = next((a for a in inp.axes if a.type == "channel"), None)
    channels = len(channel.channel_names) if channel is not None else 1
    space = [a for a in inp.axes if a.type == "space"]
    if any(not isinstance(a.size, int) and not hasattr(a.size, "step") for a in space):
        raise ModelError("an input space axis has a size given relative to another axis: "
                         "not supported", path)
    sizes = [_valid_size(a.size) for a in space]
    task, classes, output, decided = _output_rule(descr, path)
    if weights == "torchscript":
        script = torch.jit.load(io.BytesIO(data), map_location="cpu").eval()

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode(), torch.autocast("cpu", enabled=False):
                result = script(torch.from_numpy(x))
            return (result[0] if isinstance(result, (list, tuple)) else result).numpy()
    else:
        run = onnxruntime_runner(data)
    fixed = [a.size for a in space if isinstance(a.size, int)]
    tile = min(fixed) if len(fixed) == 2 else max(256, sizes[0](1), sizes[1](1))
    batch = next((a for a in inp.axes if a.type == "batch"), None)
    per_sample = batch is None or batch.size == 1
    module = PackageModule(run, in_kinds, [a.type for a in out.axes], sizes, classes, output,
                           per_sample, path.name)
    out_channel = next((a for a in out.axes if a.type == "channel"), None)
    class_names = tuple(str(c) for c in out_channel.channel_names) if out_channel is not None \
        else ("foreground",)
    checkpoint = Checkpoint(
        model_spec={"name": str(descr.name), "in_channels": channels, "num_classes": classes,
                    "kwargs": {}},
        task=task, class_names=class_names[:1] if task == "binary" else class_names,
        preprocessing=Preprocessing(channels, (0.0,) * channels, (1.0,) * channels, tile),
        state_dict={})
    log.info(f"{path}: bioimage.io package {descr.name!r} ({weights} weights), {task}, "
             f"{classes} class(es); {decided}")
    module.read_input = _reader(descr, channels, path)
    return OpenedPackage(module, checkpoint, module.read_input, weights)


_INVARIANT = ("zero_mean_unit_variance", "scale_range")  # unchanged by scaling the input


def _reader(descr: Any, channels: int, path: Path) -> Callable[[Path], torch.Tensor]:
    """path -> the package's preprocessing applied to the whole image (bioimageio.core's
    operators, per-image statistics included) -> `C x H x W` float32.

    The input is the image's stored pixel values (what bioimage.io tools feed), except for a
    float input with a fixed normalisation whose test input lies in [0, 1]: then values are
    scaled to [0, 1] (said once, with the evidence)."""
    from bioimageio.core import Sample, Tensor
    from bioimageio.core.digest_spec import get_axes_infos
    from bioimageio.core.proc_setup import setup_pre_and_postprocessing

    inp = descr.inputs[0]
    try:
        procs = setup_pre_and_postprocessing(descr, dataset_for_initial_statistics=[]).pre
    except Exception as exc:
        raise ModelError(f"the package's preprocessing needs dataset statistics unetzoo "
                         f"does not have ({str(exc).splitlines()[0]})", path) from exc
    steps = [p.id for p in inp.preprocessing if p.id != "ensure_dtype"]
    invariant = bool(steps) and steps[0] in _INVARIANT
    declared = np.dtype(inp.dtype)
    test_max = float(_test_array(inp, path).max()) if inp.test_tensor is not None else None
    dims = get_axes_infos(inp)
    kinds = [a.type for a in inp.axes]
    announced: list[str] = []

    def read(image_path: Path) -> torch.Tensor:
        kind = read_array(image_path, palette=False).dtype
        scale = float(np.iinfo(kind).max) if np.issubdtype(kind, np.integer) else 1.0
        unit = read_image(image_path, channels)  # channels converted as for any model
        values, note = unit * scale, f"stored {kind} values"
        if np.issubdtype(declared, np.integer) and not invariant and \
                np.issubdtype(kind, np.integer) and np.iinfo(kind).max > np.iinfo(declared).max:
            raise DataError(f"holds {kind} pixels; the package takes {declared} input with a "
                            "fixed normalisation: convert the image first", image_path)
        if np.issubdtype(declared, np.floating) and not invariant and test_max is not None \
                and test_max <= 1.0 and scale > 1:
            values, note = unit, (f"{kind} values scaled to [0, 1] (the package's test input "
                                  f"lies in [0, {test_max:.2g}])")
        if note not in announced:
            log.info(f"{path.name}: input read as {note}, then the package's preprocessing "
                     f"({', '.join(steps) or 'none'})")
            announced.append(note)
        chw = np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)
        arr = _to_layout(chw[None], kinds)
        sample = Sample(members={inp.id: Tensor.from_numpy(arr, dims=dims)}, stat={}, id=None)
        for proc in procs:
            proc(sample)
        result = sample.members[inp.id].data.to_numpy().astype(np.float32)
        return torch.from_numpy(np.ascontiguousarray(_from_layout(result, kinds)[0]))

    return read
