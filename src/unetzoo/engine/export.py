"""Turn a model into a graph: ONNX, OpenVINO IR or TorchScript, with dynamic batch, height
and width, checked against eager PyTorch before anything is written.

This module makes graphs; `engine/backends.py` runs them. The graph is traced (the
TorchScript-based tracer, opset 17: fast and faithful for these convolutional models)
through the model's own padding to its `size_divisor` (`nn.padding.run_padded`, traced with
dynamic sizes), so odd sizes work in the graph as they do in eager mode. A model whose graph
depends on the input size beyond that (the sparse-attention region layout of `sparse_unet`)
is detected by the parity check at a second size and exported for one fixed height and width
(batch stays dynamic); predictors pad smaller tiles to it. The unetzoo metadata (the
checkpoint without its weights) is embedded in the file: ONNX metadata, OpenVINO runtime
info, TorchScript extra file.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import ConfigError, ExportError, RunError, UnetzooError  # noqa: F401 (re-export)
from ..fileio import atomic_write, atomic_write_bytes
from .backends import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    METADATA_KEY,
    SUFFIXES,
    Runner,
    onnxruntime_runner,
    openvino_core,
    openvino_runner,
    require,
    torchscript_runner,
)

log = logging.getLogger("unetzoo")

FORMATS: tuple[str, ...] = tuple(SUFFIXES)
SHARE_FORMATS: tuple[str, ...] = ("bioimageio", "folder")  # engine/bioimageio.py, folders.py
OPSET = 17
TOLERANCE = 1e-4  # max logit difference in float32, over max(1, max |logit|) (see _parity):
# float32 rounding grows with the logits (a trained model can give |logit| ~ 1e5 on noise)
LABEL_DISAGREEMENT = 1e-3  # share of pixels whose hard label may differ (logits near a tie)
Graph = TypeVar("Graph")


class Exportable(nn.Module):
    """The model as exported: its main logits (the model pads and crops itself)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out


@dataclass
class ExportResult:
    """What `export_model` wrote.

    Attributes:
        path: the file (`.xml` for OpenVINO; its `.bin` lies beside it).
        format: `onnx`, `openvino` or `torchscript`.
        max_abs_diff: the largest logit difference to eager PyTorch in float32.
        input_size: (height, width) of a graph fixed to one size; None when dynamic.
        seconds: wall time of the export.
        quality: for an INT8 export, the float and INT8 scores on the validation split
            (`engine.quantize.QuantizationReport.to_json()`); None otherwise.
    """

    path: Path
    format: str
    max_abs_diff: float
    input_size: tuple[int, int] | None
    seconds: float
    note: str = ""  # further checks, e.g. bioimageio.core's test
    quality: dict[str, Any] | None = None


def _trace_onnx(model: nn.Module, sample: torch.Tensor, dynamic_size: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(Exportable(model).eval(), (sample,), buffer, dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"image": axes, "logits": axes})
    return buffer.getvalue()


def with_onnx_metadata(onnx_bytes: bytes, metadata: str) -> bytes:
    """The ONNX graph with the unetzoo metadata added to its metadata_props."""
    onnx = require("onnx")
    proto = onnx.load_from_string(onnx_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    return proto.SerializeToString()


def export_metadata(info: Checkpoint, fixed: tuple[int, int] | None,
                    extra: dict[str, Any] | None = None) -> str:
    """The metadata every exported graph carries: the checkpoint without its weights and
    training state, the input size the graph is fixed to (None: dynamic), and `extra`
    (e.g. `int8`: the accuracy check of a quantised graph)."""
    payload = {**info.to_payload(), "state_dict": {}, "train_state": None}
    return json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                       "input_size": list(fixed) if fixed else None,
                       "opset": OPSET, "torch": torch.__version__, **(extra or {}),
                       "checkpoint": payload})


def _samples(size: tuple[int, int], in_channels: int) -> list[torch.Tensor]:
    """Parity inputs: batch 2 at the export size, batch 1 at an odd other size."""
    generator = torch.Generator().manual_seed(0)
    odd = (max(1, size[0] // 2 + 7), max(1, size[1] // 2 + 5))
    return [torch.randn(2, in_channels, *size, generator=generator),
            torch.randn(1, in_channels, *odd, generator=generator)]


class Parity(NamedTuple):
    """How an exported graph's logits compare with eager PyTorch's on one input.

    difference: the largest logit difference over max(1, the largest |logit|) (float32
        rounding scales with the logits, so an absolute bound would refuse correct graphs
        of models with large logits); inf when the graph fails to run or its shape differs.
    disagreement: the share of pixels whose hard label differs (the sign of a single
        channel, else the argmax over channels): the relative bound alone would let a pixel
        of small logits beside huge ones change its label.
    """

    difference: float
    disagreement: float

    @property
    def ok(self) -> bool:
        return self.difference <= TOLERANCE and self.disagreement <= LABEL_DISAGREEMENT

    def describe(self) -> str:
        if self.difference == float("inf"):
            return "fails to run"
        return (f"differs from eager PyTorch by {self.difference:.3g} (max logit difference "
                f"over max(1, max |logit|), float32; allowed {TOLERANCE:g}), with "
                f"{self.disagreement:.3%} of pixels labelled differently (allowed "
                f"{LABEL_DISAGREEMENT:.1%})")


def _labels(logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)


def _parity(run: Runner, model: nn.Module, x: torch.Tensor) -> Parity:
    """The `Parity` of `run` against eager PyTorch on `x` (`B x C x H x W`)."""
    with torch.inference_mode():
        expected = Exportable(model).eval()(x).numpy()
    try:
        got = run(x.numpy())
    except Exception:  # a graph fixed to another size fails in its runtime
        return Parity(float("inf"), 1.0)
    if got.shape != expected.shape:
        return Parity(float("inf"), 1.0)
    scale = max(1.0, float(np.abs(expected).max()))
    return Parity(float(np.abs(got - expected).max() / scale),
                  float(np.mean(_labels(got) != _labels(expected))))


def _check(run: Runner, model: nn.Module, samples: list[torch.Tensor], where: str) -> float:
    """The worst relative logit difference over `samples`.

    Raises:
        ExportError: the graph fails `Parity.ok` on a sample (nothing has been written).
    """
    results = [_parity(run, model, x) for x in samples]
    for parity in results:
        if not parity.ok:
            raise ExportError(f"{where}: the exported graph {parity.describe()}; the file "
                              "was not written")
    return max(p.difference for p in results)


def _traced(model: nn.Module, size: tuple[int, int], where: str,
            convert: Callable[[bytes], tuple[Graph, Runner]]
            ) -> tuple[Graph, tuple[int, int] | None, float]:
    """Trace `model` to ONNX, convert it (`convert(onnx) -> (graph, float32 runner)`) and
    check it against eager PyTorch: dynamic height and width when the graph matches at
    `size` and at a second, odd size; fixed to `size` when it matches at `size` only (a graph
    that differs at `size` itself is refused, not taken for a size-dependent one)."""
    model = model.float().cpu().eval()
    in_channels = int(getattr(model, "in_channels", 3))
    fixed, odd = _samples(size, in_channels)
    graph, run = convert(_trace_onnx(model, fixed[:1], dynamic_size=True))
    at_size = _check(run, model, [fixed], where)
    at_odd = _parity(run, model, odd)
    if at_odd.ok:
        return graph, None, max(at_size, at_odd.difference)
    log.info(f"{where}: the graph depends on the input size (at {odd.shape[-2]} x "
             f"{odd.shape[-1]} it {at_odd.describe()}); exported for {size[0]} x {size[1]} "
             f"inputs only (batch stays dynamic)")
    graph, run = convert(_trace_onnx(model, fixed[:1], dynamic_size=False))
    return graph, size, _check(run, model, [fixed], where)


def trace_onnx(model: nn.Module, size: tuple[int, int], where: str = "export"
               ) -> tuple[bytes, tuple[int, int] | None, float]:
    """An ONNX graph of `model` (eval mode, float32, CPU) checked in onnxruntime against
    eager PyTorch: (bytes, fixed input size or None when dynamic, relative max difference)."""
    return _traced(model, size, where, lambda g: (g, onnxruntime_runner(g)))


def trace_openvino(model: nn.Module, size: tuple[int, int], where: str = "export") -> tuple[
        Any, tuple[int, int] | None, float]:
    """An OpenVINO model (`openvino.Model`, float32 weights) of `model`, checked in OpenVINO
    float32 against eager PyTorch: (model, fixed input size or None, relative max difference).
    Needs openvino (and not onnxruntime)."""
    def convert(onnx_bytes: bytes) -> tuple[Any, Runner]:
        graph = openvino_core().read_model(onnx_bytes)
        return graph, openvino_runner(graph, "fp32")

    return _traced(model, size, where, convert)


def save_openvino(graph: Any, metadata: str, out: Path, atomic: bool = True) -> None:
    """Write an OpenVINO model with `metadata` as `out` (.xml) + `out.with_suffix('.bin')`,
    float32 weights kept. `atomic`: each file through a temporary file, weights first
    (a folder that is renamed into place as a whole passes False)."""
    ov = require("openvino")
    graph.set_rt_info(metadata, [METADATA_KEY])
    if not atomic:
        ov.save_model(graph, str(out), compress_to_fp16=False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / out.name
        ov.save_model(graph, str(xml), compress_to_fp16=False)
        atomic_write_bytes(out.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out, xml.read_bytes())


def export_model(model: nn.Module, info: Checkpoint, fmt: str, out: Path | str,
                 size: int | None = None, overwrite: bool = False) -> ExportResult:
    """Export `model` (with `info`'s task, classes and preprocessing as metadata) to `out`,
    checked against eager PyTorch (float32, max logit difference <= 1e-4 of
    max(1, max |logit|) and hard labels equal on 99.9 % of pixels: `Parity`; at the export
    size and, for dynamic graphs, at a second odd size) before anything is written.

    Raises:
        ConfigError: unknown format, a file name that does not fit it, a runtime missing.
        RunError: `out` exists (without `overwrite`) or is a folder.
        ExportError: the graph does not reproduce the model (nothing is written).
    """
    out = Path(out)
    check_target(fmt, out, overwrite)
    start = time.perf_counter()
    side = size or info.preprocessing.img_size
    if fmt == "openvino":
        graph, fixed, diff = trace_openvino(model, (side, side), where=str(out))
        save_openvino(graph, export_metadata(info, fixed), out)
        return ExportResult(out, fmt, diff, fixed, time.perf_counter() - start)
    onnx_graph, fixed, diff = trace_onnx(model, (side, side), where=str(out))
    metadata = export_metadata(info, fixed)
    if fmt == "onnx":
        atomic_write_bytes(out, with_onnx_metadata(onnx_graph, metadata))
    else:
        samples = _samples((side, side), int(info.model_spec["in_channels"]))
        diff = max(diff, _write_torchscript(model, metadata, out,
                                            samples[: 1 if fixed else 2]))
    return ExportResult(out, fmt, diff, fixed, time.perf_counter() - start)


def check_target(fmt: str, out: Path, overwrite: bool) -> None:
    """Refuse an unknown format, a mismatched suffix, an existing file (without
    `overwrite`) or a folder, and a missing runtime, before any work."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise ConfigError(f"an export to {fmt} is named *{SUFFIXES[fmt]}, got {out.name!r}", out)
    if out.exists() and not overwrite:
        raise RunError("exists; pass --overwrite to replace it", out)
    if out.is_dir():
        raise RunError("is a folder; give a file name", out)
    if fmt == "openvino":
        require("openvino")
    else:
        require("onnx")
        require("onnxruntime")


def _write_torchscript(model: nn.Module, metadata: str, out: Path,
                       samples: list[torch.Tensor]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export,
        # which cannot yet export these models with dynamic height and width
        traced = torch.jit.trace(Exportable(model.float().cpu().eval()).eval(),
                                 samples[0][:1], check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer, _extra_files={f"{METADATA_KEY}.json": metadata})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / out.name
        path.write_bytes(buffer.getvalue())
        diff = _check(torchscript_runner(path), model, samples, str(out))
    atomic_write(out, lambda fh: fh.write(buffer.getbuffer()))
    return diff


def checkpoint_for_export(checkpoint: Checkpoint, prune_depth: int | None = None
                          ) -> tuple[nn.Module, Checkpoint]:
    """The model to export and the checkpoint its metadata describes (a pruned UNet++
    records its prune depth, so the file rebuilds the network that was exported)."""
    model = checkpoint.build_model(prune_depth)
    if prune_depth is not None:
        spec = checkpoint.model_spec
        checkpoint = replace(checkpoint, model_spec={
            **spec, "kwargs": {**spec["kwargs"], "prune_depth": prune_depth}})
    return model, checkpoint


def export_checkpoint(checkpoint: Path | str, fmt: str, out: Path | str,
                      size: int | None = None, overwrite: bool = False,
                      prune_depth: int | None = None, int8: bool = False,
                      dataset: Path | str | None = None, csvfile: Path | str | None = None,
                      accept_drop: bool = False, max_dice_drop: float | None = None,
                      calibration_images: int | None = None,
                      progress: bool = False, **share: Any) -> ExportResult:
    """Export a checkpoint's model to a file that alone predicts
    (`unetzoo predict --model FILE`).

    `bioimageio` (a BioImage Model Zoo package, `share`: authors, license, cite, ...) and
    `folder` (config.json + model.safetensors + README.md, `share`: dtype, card) are written
    by `engine.bioimageio.export_bioimageio` and `folders.save_pretrained`.

    Args:
        checkpoint: a `.pt` checkpoint written by `unetzoo train`.
        fmt: `onnx` (`*.onnx`), `openvino` (`*.xml` + `*.bin`), `torchscript`,
            `bioimageio` or `folder`.
        out: the file to write.
        size: trace and check size in pixels (default: the checkpoint's patch size).
        overwrite: replace an existing `out`.
        prune_depth: export only UNet++ L^k of a deep-supervised UNet++ (1..depth).
        int8: (openvino only) quantise to INT8 with NNCF post-training quantisation,
            calibrated on training images, and write it only if the validation Dice drops
            by at most `max_dice_drop` (see `engine.quantize`).
        dataset, csvfile: the data for calibration and the accuracy check (default: the
            dataset and split the checkpoint was trained with).
        accept_drop: write the INT8 model even if its Dice drops by more.
        max_dice_drop: the allowed drop of the validation global Dice (default 0.01).
        calibration_images: training tiles used for calibration (default 300).
        progress: progress bars for the INT8 accuracy check.

    Returns:
        An `ExportResult` (path, format, max logit difference to eager float32 over
        max(1, max |logit|), fixed input size or None, seconds, and for INT8 the float and
        INT8 scores).

    Raises:
        CheckpointError: the checkpoint cannot be read.
        ConfigError, RunError, ExportError: see `export_model`; `engine.quantize` for INT8.

    Example:
        >>> result = export_checkpoint("runs/exp1/models/best.pt", "openvino", "unet.xml")
        >>> result.input_size is None  # dynamic: any B x C x H x W in, B x K x H x W out
        True
    """
    if fmt in SHARE_FORMATS:
        return _export_shared(checkpoint, fmt, Path(out), overwrite, prune_depth, share)
    info = load_checkpoint(checkpoint)
    model, info = checkpoint_for_export(info, prune_depth)
    if not int8:
        return export_model(model, info, fmt, out, size, overwrite)
    from .quantize import export_int8

    if fmt != "openvino":
        raise ConfigError("--int8 writes OpenVINO IR: use --format openvino")
    return export_int8(model, info, Path(out), Path(checkpoint), size=size,
                       overwrite=overwrite, dataset=dataset, csvfile=csvfile,
                       accept_drop=accept_drop, max_dice_drop=max_dice_drop,
                       calibration_images=calibration_images, progress=progress)


def _export_shared(checkpoint: Path | str, fmt: str, out: Path, overwrite: bool,
                   prune_depth: int | None, share: dict[str, Any]) -> ExportResult:
    start = time.perf_counter()
    if fmt == "bioimageio":
        from .bioimageio import export_bioimageio

        package = export_bioimageio(checkpoint, out, overwrite=overwrite,
                                    prune_depth=prune_depth, **share)
        return ExportResult(out, fmt, package.max_abs_diff, None, package.seconds,
                            f"bioimageio.core test {package.test_status}")
    from ..folders import save_pretrained

    if prune_depth is not None:
        raise ConfigError("--prune-depth applies to graph exports; a model folder keeps the "
                          "whole network (prune it when predicting)")
    save_pretrained(checkpoint, out, overwrite=overwrite, **share)
    return ExportResult(out, fmt, 0.0, None, time.perf_counter() - start,
                        f"weights {share.get('dtype', 'float32')}")

