"""BioImage Model Zoo packages: writing them (`unetzoo export --format bioimageio`); running
them (`unetzoo predict --model model.zip`) is `engine.bioimageio_run`.

Written with the `bioimageio.spec` library (model description format 0.5) and checked with
`bioimageio.core`'s own test before the file is written. A package holds:

- `rdf.yaml`: inputs `batch, channel, y, x` of the stored pixel type (uint8 or uint16, as in
  the sample image) with the checkpoint's normalisation as bioimage.io preprocessing
  (`package_preprocessing`): `dataset` as `fixed_zero_mean_unit_variance` along the channel
  axis (mean and std scaled to the pixel range, so `(x / 255 - mean) / std` becomes
  `(x - 255 mean) / (255 std)`); `image` as `zero_mean_unit_variance` over `y, x` (each
  image, each channel). `percentile` (clip, then standardise) and any other normalisation
  are refused, naming it and why (`check_normalization`): bioimageio.core measures every
  per-image statistic on the input as given, so no step can standardise a clipped image.
  Outputs of the same size with `sigmoid` (binary, multilabel) or `softmax` (multiclass)
  as postprocessing, so the package gives probabilities; sizes `min + n * step` with
  step = the network's size divisor (fixed sizes for graphs exported for one size);
- TorchScript and ONNX weights (unetzoo exports, each checked against eager PyTorch);
- a test input (a crop of a real image: `sample_image`, else one from the run's dataset,
  else a generated one) and the output unetzoo computes for it in float32;
- a cover image (input | prediction), sample tensors, and a README model card;
- `config.unetzoo`: the checkpoint without its weights, so unetzoo runs its own packages
  exactly as the checkpoint (tiling, task, classes, threshold).
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint, portable
from ...artefacts.modelcard import (
    CardInfo,
    default_title,
    render_card,
)
from ...artefacts.references import PACKAGE_SUFFIX as SUFFIX
from ...artefacts.references import PACKAGE_WEIGHTS, as_checkpoint
from ...data.io import read_array, read_image
from ...data.transforms import Preprocessing
from ...errors import ConfigError, RunError
from ...fileio import atomic_write_bytes
from ...task import Task, probabilities
from ...viz import class_colors, comparison_panel, save_png
from ..inference.backends import EXPORT_FORMAT
from ..inference.graphs import OPSET
from ..inference.instance import InstanceDecoding, activate
from ..inference.packages import PIXEL_RANGES, spec_module
from .files import export_model

log = logging.getLogger("unetzoo")

TEST_SIZE = 256  # largest side of the test input


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
    from ...data.layouts import find_pairs

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
    from ...data.synthetic import synthesize

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
            built with `create_model` (see `unetzoo.artefacts.checkpoint.as_checkpoint`).
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
    v = spec_module()
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec._internal.version_type import Version

    start = time.perf_counter()
    out = Path(out)
    if out.suffix.lower() != SUFFIX:
        raise ConfigError(f"a bioimageio package is a {SUFFIX} file, got {out.name!r}", out)
    if out.exists() and not overwrite:
        raise RunError("exists; pass --overwrite to replace it", out)
    authors = [a.strip() for a in authors if a.strip()]
    needed = (([] if authors else ["--author NAME (repeat for several)"]) +
              ([] if license else ["--license SPDX-ID (e.g. MIT, BSD-3-Clause, CC-BY-4.0)"]))
    if needed:
        raise ConfigError("a bioimage.io package names its authors and the licence of its "
                          f"weights: pass {' and '.join(needed)}")
    try:
        license_id = v.LicenseId(license)
    except ValueError as exc:
        raise ConfigError(f"unknown licence {license!r}: give an SPDX identifier such as MIT, "
                          "BSD-3-Clause or CC-BY-4.0") from exc
    local = as_checkpoint(source)  # its dataset may give the test image
    checkpoint = local.portable()  # what the package says: no path of this machine
    model = checkpoint.build_model(prune_depth)
    if prune_depth is not None:
        spec = checkpoint.model_spec
        checkpoint = replace(checkpoint, model_spec={
            **spec, "kwargs": {**spec["kwargs"], "prune_depth": prune_depth}})
    arch_citation = _citation(v, checkpoint_paper(checkpoint))
    citations = [_citation(v, c) for c in cite]
    pre, task = checkpoint.preprocessing, checkpoint.task
    check_normalization(pre, Path(source) if isinstance(source, (str, Path)) else None)
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
        dtype, origin = _write_test_data(tmp, model, local, sample_image, divisor, fixed)
        origin = portable(origin)
        card = CardInfo(
            title=name, description=description, authors=tuple(authors), license=license,
            citations=tuple(cite),
            usage=(f"unetzoo predict --model {out.name} --input images/ --output masks/",
                   f"bioimageio test {out.name}"),
            sections=(_bioimageio_section(
                dtype, task, fixed, divisor, origin, pre.normalization != "dataset",
                _uniform_activation(checkpoint) if task == "instance" else None),
                      *([_objects_section(checkpoint)] if task == "instance" else [])))
        (tmp / "README.md").write_text(render_card(checkpoint, card), encoding="utf-8")
        inputs, outputs = _tensor_descrs(v, checkpoint, tmp, dtype, divisor, fixed)
        _write_weights(tmp / PACKAGE_WEIGHTS, checkpoint)
        metadata = {"format": EXPORT_FORMAT, "weights": PACKAGE_WEIGHTS, "checkpoint": {
            **checkpoint.to_payload(), "state_dict": {}, "train_state": None}}
        descr = v.ModelDescr(
            name=_package_name(name or default_title(checkpoint)),
            description=(description or f"{default_title(checkpoint)}, trained with unetzoo. "
                         "Outputs probabilities; threshold at 0.5 for masks.")[:1024],
            authors=[v.Author(name=a.replace("/", "-")) for a in authors],
            cite=[*citations, arch_citation], license=license_id,
            documentation=v.FileDescr(source=tmp / "README.md"),
            covers=[v.FileDescr(source=tmp / "cover.png")],
            attachments=[v.FileDescr(source=tmp / PACKAGE_WEIGHTS)],
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


def _write_weights(path: Path, checkpoint: Checkpoint) -> None:
    """The checkpoint's weights as safetensors (float32, as trained), attached to the
    package so that `export`, `train --init` and `save_pretrained` take the package as they
    take the checkpoint (`artefacts.references.PACKAGE_WEIGHTS`)."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in checkpoint.state_dict.items()},
              str(path))


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
    probs = _package_outputs(logits, checkpoint).numpy().astype(np.float32)
    np.save(tmp / "test_input.npy", np.ascontiguousarray(crop.transpose(2, 0, 1)[None]))
    np.save(tmp / "test_output.npy", probs)
    if task == "instance":  # the cover shows the objects' foreground
        decoding = InstanceDecoding.from_dict(checkpoint.instance)
        objects = decoding.decode(activate(logits, decoding.representation)[0].numpy())
        labels, task = (objects > 0).astype(np.uint8)[None], "binary"
    else:
        labels = (probs[0].argmax(0) if task == "multiclass" else probs[0] > 0.5
                  ).astype(np.uint8)
    colors = class_colors(max(len(checkpoint.class_names), 2) + 1, checkpoint.class_colors)
    shown = unit[..., :3] if unit.shape[2] >= 3 else unit[..., :1]
    save_png(tmp / "cover.png", comparison_panel(shown, None, labels[0] if task == "binary"
                                                 else labels, colors, task == "binary"))
    save_png(tmp / "sample_input.png", crop[..., 0] if crop.shape[2] == 1 else crop[..., :3])
    tifffile.imwrite(tmp / "sample_output.tif", probs[0])
    return dtype, origin


PACKAGE_NORMALIZATIONS = ("dataset", "image")  # what bioimage.io preprocessing can express
# Why others cannot be: bioimageio.core (0.11) measures every per-sample statistic on the input
# as given, before the first step (proc_setup puts UpdateStats first), so a standardisation
# after a clip uses the unclipped image's mean and std.
NOT_EXPRESSIBLE = {
    "percentile": "it standardises each image after clipping it to its own percentiles, and "
                  "bioimage.io tools (bioimageio.core) compute every per-image mean and std "
                  "on the unclipped input"}


def check_normalization(pre: Preprocessing, where: Path | None = None) -> None:
    """Raise unless bioimage.io preprocessing reproduces `pre.normalization`
    (`PACKAGE_NORMALIZATIONS`).

    Raises:
        ConfigError: one line naming the normalisation, why it cannot be expressed, and the
            formats that carry it (unetzoo runs those with the checkpoint's normalisation).
    """
    if pre.normalization in PACKAGE_NORMALIZATIONS:
        return
    why = NOT_EXPRESSIBLE.get(pre.normalization, "no bioimage.io preprocessing step does it")
    raise ConfigError(f"normalization {pre.normalization!r} cannot be written as bioimage.io "
                      f"preprocessing ({why}); export --format onnx, torchscript or folder "
                      "(unetzoo runs them with it), or train with --normalize image", where)


def package_preprocessing(v: Any, pre: Preprocessing, dtype: str) -> list[Any]:
    """The bioimage.io preprocessing of stored `dtype` pixels that gives the network the
    input `pre.normalize` gives it (unetzoo scales pixels to [0, 1] first; the steps take
    the stored values):

    - `dataset`: `fixed_zero_mean_unit_variance` along the channel axis, mean and std
      scaled to the pixel range (`(x / 255 - mean) / std` = `(x - 255 mean) / (255 std)`);
    - `image`: `zero_mean_unit_variance` over axes `y, x`: each sample (the whole image,
      before any tiling) by its own mean and std per channel. Standardisation does not
      depend on the pixel range, except through eps: bioimage.io divides by `std + 1e-6`
      (bioimageio.core ignores a given eps), unetzoo by `max(std, 1e-3)` on [0, 1] values;
      equal within a relative 4e-6 (uint8), 1e-3 (float input) for every image whose std is
      above 1e-3 of the pixel range (a quarter of one 8-bit level); a nearly constant image
      has its odd pixels amplified more. unetzoo measures an image of more than
      `data.transforms.STAT_PIXELS` pixels on a strided sample of them, bioimage.io on all.

    Args:
        v: `bioimageio.spec.model.v0_5`.
        pre: the checkpoint's preprocessing.
        dtype: the input's stored pixel type (`PIXEL_RANGES`).

    Returns:
        The steps, starting and ending with `ensure_dtype` float32.

    Raises:
        ConfigError: a normalisation bioimage.io cannot express (`check_normalization`).
    """
    check_normalization(pre)
    to_float = v.EnsureDtypeDescr(kwargs=v.EnsureDtypeKwargs(dtype="float32"))
    if pre.normalization == "image":
        step = v.ZeroMeanUnitVarianceDescr(kwargs=v.ZeroMeanUnitVarianceKwargs(
            axes=[v.AxisId("y"), v.AxisId("x")]))
    else:
        scale = PIXEL_RANGES[dtype]
        step = v.FixedZeroMeanUnitVarianceDescr(kwargs=v.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=[m * scale for m in pre.mean], std=[s * scale for s in pre.std],
            axis=v.AxisId("channel")))
    return [to_float, step, to_float]


def _uniform_activation(checkpoint: Checkpoint) -> str | None:
    """An instance model's one activation when every output channel shares it ("sigmoid",
    or "softmax" over one group of all channels), else None (the package gives its raw
    outputs and the card says how to activate each channel)."""
    channels = InstanceDecoding.from_dict(checkpoint.instance).representation.channels
    kinds = {(c.activation, c.group) for c in channels}
    if len(kinds) == 1 and next(iter(kinds))[0] in ("sigmoid", "softmax"):
        return next(iter(kinds))[0]
    return None


def _package_outputs(logits: torch.Tensor, checkpoint: Checkpoint) -> torch.Tensor:
    """What the package outputs for `logits`: probabilities (its postprocessing), or for an
    instance model whose channels are activated differently the raw outputs."""
    if checkpoint.task != "instance":
        return probabilities(logits, checkpoint.task)
    activation = _uniform_activation(checkpoint)
    if activation == "sigmoid":
        return logits.sigmoid()
    if activation == "softmax":
        return logits.softmax(1)
    return logits.float()


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
        preprocessing=package_preprocessing(v, pre, dtype))
    if task == "instance":
        decoding = InstanceDecoding.from_dict(checkpoint.instance)
        class_ids = [_identifier(c.name, "channel_") for c in decoding.representation.channels]
        activation = _uniform_activation(checkpoint)
        post = [v.SigmoidDescr()] if activation == "sigmoid" else \
            [v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))] \
            if activation == "softmax" else []
        description = (f"the {decoding.representation.name} representation of the objects "
                       "(see the README: a seeded watershed gives their labels)")
    else:
        post = [v.SoftmaxDescr(kwargs=v.SoftmaxKwargs(axis=v.AxisId("channel")))] \
            if task == "multiclass" else [v.SigmoidDescr()]
        description = f"{task} class probabilities; " + (
            "argmax for labels" if task == "multiclass" else "threshold 0.5")
    outputs = v.OutputTensorDescr(
        id=v.TensorId("probabilities"),
        description=description,
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[
            v.Identifier(c) for c in (class_ids[:1] if task == "binary" else class_ids)]),
            *[v.SpaceOutputAxis(id=v.AxisId(a), size=v.SizeReference(
                tensor_id=v.TensorId("image"), axis_id=v.AxisId(a))) for a in "yx"]],
        test_tensor=v.FileDescr(source=tmp / "test_output.npy"),
        sample_tensor=v.FileDescr(source=tmp / "sample_output.tif"),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0) if post else
                                        (None, None)),
        postprocessing=post)
    return inputs, outputs


def checkpoint_paper(checkpoint: Checkpoint) -> str:
    from ...models import model_card

    card = model_card(checkpoint.model_spec["name"])
    return f"{card.paper} ({card.year})"


def _package_name(text: str) -> str:
    """A bioimage.io name: letters, digits, `_+- ()`, 5 to 128 characters."""
    name = re.sub(r"[^A-Za-z0-9_+\- ()]+", " ", text)
    name = re.sub(r"\s+", " ", name).strip()[:128]
    return name if len(name) >= 5 else f"unetzoo {name}".strip()


PER_IMAGE_NOTE = (", computed per whole image: give the tool the whole image, not tiles "
                  "normalised one by one")


def _bioimageio_section(dtype: str, task: Task, fixed: tuple[int, int] | None, divisor: int,
                        origin: str, per_image: bool, activation: str | None = None) -> str:
    """The card's section for bioimage.io tools; `activation`: an instance model's uniform
    output activation (`_uniform_activation`), None where its channels differ."""
    sizes = (f"exactly {fixed[0]} x {fixed[1]} pixels" if fixed else
             f"any height and width that are multiples of {divisor}")
    output = "softmax over classes (take the argmax)" if task == "multiclass" else \
        "sigmoid per channel (threshold at 0.5)"
    if task == "instance":
        output = {"sigmoid": "sigmoid per channel (objects: see below)",
                  "softmax": "softmax over the channels (objects: see below)"}.get(
            activation or "", "identity: the raw outputs, as each channel of the representation "
            "needs them (a probability channel's sigmoid is taken when objects are drawn, "
            "below)")
    return (
        "## In bioimage.io tools (deepImageJ, QuPath, ilastik, napari)\n\n"
        f"- Input `image`: axes batch, channel, y, x; {dtype} pixel values as stored in the "
        f"image file; {sizes} (larger images: tile them). The package's preprocessing "
        f"applies unetzoo's normalisation{PER_IMAGE_NOTE if per_image else ''}.\n"
        f"- Output `probabilities`: the same size; postprocessing is the {output}.\n"
        f"- Test input: a crop of {origin}; its expected output was computed by unetzoo "
        "(float32 PyTorch), and the TorchScript and ONNX weights reproduce it "
        "(`bioimageio test`).\n")


def _objects_section(checkpoint: Checkpoint) -> str:
    """How an instance model's outputs become objects, for tools that run the package."""
    decoding = InstanceDecoding.from_dict(checkpoint.instance)
    rep, t = decoding.representation, decoding.thresholds
    channels = "; ".join(f"`{c.name}` ({c.activation}): {c.target}" for c in rep.channels)
    return (
        "## Objects (labels) from the outputs\n\n"
        f"The output is the `{rep.name}` representation ({rep.source}): {channels}.\n\n"
        f"To get one label per object: foreground = {rep.foreground} > {t.foreground:g}; "
        f"seeds = the connected components of ({rep.seeds} > {t.seed:g}) within the "
        f"foreground; a seeded watershed of -(seed score) restricted to the foreground gives "
        f"every foreground pixel its seed; objects under {t.min_size} pixels are removed. "
        "These thresholds were chosen on the run's validation images.\n\n"
        "`unetzoo predict --model <this package> --input images/ --output labels/` does all "
        "of it and writes 16-bit label TIFFs (`--rois` for Fiji, `--geojson` for QuPath).\n")


def _run_test(package: Path, out: Path) -> str:
    """bioimageio.core's own test of the package (validation, reproducing the test output
    with every weights format, inference at other sizes and batch sizes)."""
    from bioimageio.core import test_model

    from ..inference.graphs import ExportError

    summary = test_model(package)
    if summary.status != "passed":
        failed = [d for d in summary.details if d.status == "failed"]
        detail = failed[0] if failed else None
        errors = detail.errors[0].msg.splitlines()[0] if detail and detail.errors else ""
        raise ExportError(f"bioimageio.core's test failed ({detail.name if detail else '?'}: "
                          f"{errors}); the package was not written", out)
    return "passed"
