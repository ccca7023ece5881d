"""Running BioImage Model Zoo packages (`unetzoo predict --model model.zip`): unetzoo's own,
exactly as their checkpoint, and packages written by other tools.

unetzoo's packages carry the checkpoint (without weights) in `config.unetzoo` and unetzoo
exports as weights, so they open like an exported file. A package of another tool runs
when its weights are TorchScript or ONNX and it has one 2D input and one output (a batch
axis, at most one channel axis, two space axes, any order and ids): its preprocessing is
applied per whole image by `bioimageio.core` (per-image statistics included), the network
runs tile by tile in unetzoo's sliding window (padded to sizes the package accepts), and
the output's postprocessing (sigmoid, softmax, binarize, or none: then the test output's
values decide) says how it becomes masks. Anything else is refused with one line saying
what was found.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...data.io import read_array, read_image
from ...data.transforms import Preprocessing
from ...errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelError,
)
from ...task import Task
from .backends import ExportedModule, onnxruntime_runner, open_exported, require

log = logging.getLogger("unetzoo")

PIXEL_RANGES: dict[str, float] = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


def spec_module() -> Any:
    """`bioimageio.spec.model.v0_5`, with a hint to install the extra when missing."""
    require("bioimageio.spec", "bioimageio")
    require("bioimageio.core", "bioimageio")
    import bioimageio.spec.model.v0_5 as v

    return v


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
    v = spec_module()
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


def package_metadata(path: Path | str, entry: dict[str, Any] | None = None) -> Checkpoint:
    """What a package says about its model without running it: unetzoo's own packages carry
    their checkpoint (`config.unetzoo`, `entry` when already read); another tool's package is
    opened to learn its task, classes and input (`open_package`).

    Raises:
        CheckpointError: unreadable; ModelError: a package unetzoo cannot run.
    """
    path = Path(path)
    if entry and isinstance(entry.get("checkpoint"), dict):
        return Checkpoint.from_payload({**entry["checkpoint"], "state_dict": {}}, path)
    return open_package(path).checkpoint


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
    expected = _test_array(out, path)
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
    from bioimageio.core.axis import Axis
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
    # axis ids without the package's size rule: the whole image is preprocessed at its own
    # size; the network then runs on tiles the package accepts
    dims = [Axis(a.id, a.type) for a in get_axes_infos(inp)]
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
