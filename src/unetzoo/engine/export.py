"""Export a model to ONNX, OpenVINO IR or TorchScript, with dynamic batch, height and width,
and check the exported graph against eager PyTorch before the file is written.

The graph is traced (the TorchScript-based tracer, opset 17: fast and faithful for these
convolutional models) around a wrapper that pads the input to the model's `size_divisor`
with traced sizes, so odd sizes work in the graph as they do in eager mode, and returns the
main logits. A model whose graph depends on the input size beyond that (the sparse-attention
region layout of `sparse_unet`) is detected by the parity check at a second size and
exported for one fixed height and width (batch stays dynamic); predictors pad smaller tiles
to it. The unetzoo metadata (the checkpoint without its weights) is embedded in the file:
ONNX metadata, OpenVINO runtime info, TorchScript extra file.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import ConfigError, ExportError, RunError, UnetzooError  # noqa: F401 (re-export)
from ..fileio import atomic_write, atomic_write_bytes
from .backends import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    METADATA_KEY,
    SUFFIXES,
    ExportedModule,
    onnxruntime_runner,
    openvino_runner,
    require,
    torchscript_runner,
)

log = logging.getLogger("unetzoo")

FORMATS: tuple[str, ...] = tuple(SUFFIXES)
SHARE_FORMATS: tuple[str, ...] = ("bioimageio", "folder")  # engine/bioimageio.py, folders.py
OPSET = 17
TOLERANCE = 1e-4  # max abs logit difference allowed in float32


class Exportable(nn.Module):
    """The model as exported: pads the input (with traced sizes) to the model's
    `size_divisor`, returns the main logits cropped back."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.divisor = int(getattr(model, "size_divisor", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        d = self.divisor
        out = self.model(F.pad(x, (0, (d - width % d) % d, 0, (d - height % d) % d)))
        out = out[0] if isinstance(out, (list, tuple)) else out
        return out[..., :height, :width]


@dataclass
class ExportResult:
    path: Path
    format: str
    max_abs_diff: float
    input_size: tuple[int, int] | None  # None: dynamic height and width
    seconds: float
    note: str = ""  # further checks, e.g. bioimageio.core's test


def _trace_onnx(model: nn.Module, sample: torch.Tensor, dynamic_size: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(Exportable(model).eval(), (sample,), buffer, dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"image": axes, "logits": axes})
    return buffer.getvalue()


def _with_metadata(onnx_bytes: bytes, metadata: str) -> bytes:
    onnx = require("onnx")
    proto = onnx.load_from_string(onnx_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    return proto.SerializeToString()


def _samples(size: tuple[int, int], in_channels: int) -> list[torch.Tensor]:
    """Parity inputs: batch 2 at the export size, batch 1 at an odd other size."""
    generator = torch.Generator().manual_seed(0)
    odd = (max(1, size[0] // 2 + 7), max(1, size[1] // 2 + 5))
    return [torch.randn(2, in_channels, *size, generator=generator),
            torch.randn(1, in_channels, *odd, generator=generator)]


def _max_diff(run, model: nn.Module, x: torch.Tensor) -> float:
    with torch.inference_mode():
        expected = Exportable(model).eval()(x).numpy()
    try:
        got = run(x.numpy())
    except Exception:  # a graph fixed to another size fails in its runtime
        return float("inf")
    return float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")


def _check(run, model: nn.Module, samples: list[torch.Tensor], where: str) -> float:
    worst = max(_max_diff(run, model, x) for x in samples)
    if not worst <= TOLERANCE:
        raise ExportError(f"{where}: the exported graph differs from eager PyTorch by "
                          f"{worst:.3g} (max abs logit, float32; allowed {TOLERANCE:g}); "
                          "the file was not written")
    return worst


def trace_onnx(model: nn.Module, size: tuple[int, int], where: str = "export"
               ) -> tuple[bytes, tuple[int, int] | None, float]:
    """An ONNX graph of `model` (eval mode, float32, CPU) checked against eager PyTorch:
    (bytes, fixed input size or None when dynamic, max abs difference)."""
    model = model.float().cpu().eval()
    in_channels = int(getattr(model, "in_channels", 3))
    fixed, odd = _samples(size, in_channels)
    graph = _trace_onnx(model, fixed[:1], dynamic_size=True)
    run = onnxruntime_runner(graph)
    if _max_diff(run, model, odd) <= TOLERANCE:
        return graph, None, _check(run, model, [fixed, odd], where)
    log.info(f"{where}: the graph depends on the input size; exported for {size[0]} x "
             f"{size[1]} inputs only (batch stays dynamic)")
    graph = _trace_onnx(model, fixed[:1], dynamic_size=False)
    return graph, size, _check(onnxruntime_runner(graph), model, [fixed], where)


def export_model(model: nn.Module, info: Checkpoint, fmt: str, out: Path | str,
                 size: int | None = None, overwrite: bool = False) -> ExportResult:
    """Export `model` (with `info`'s task, classes and preprocessing as metadata) to `out`,
    checked against eager PyTorch (float32, max abs logit difference <= 1e-4, at the
    export size and, for dynamic graphs, at a second odd size) before anything is written."""
    out = Path(out)
    _check_target(fmt, out, overwrite)
    start = time.perf_counter()
    side = size or info.preprocessing.img_size
    graph, fixed, diff = trace_onnx(model, (side, side), where=str(out))
    payload = {**info.to_payload(), "state_dict": {}, "train_state": None}
    metadata = json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                           "input_size": list(fixed) if fixed else None,
                           "opset": OPSET, "torch": torch.__version__, "checkpoint": payload})
    samples = _samples((side, side), int(info.model_spec["in_channels"]))[: 1 if fixed else 2]
    if fmt == "onnx":
        atomic_write_bytes(out, _with_metadata(graph, metadata))
    elif fmt == "openvino":
        diff = max(diff, _write_openvino(graph, metadata, out, model, samples))
    else:
        diff = max(diff, _write_torchscript(model, metadata, out, samples, fixed))
    return ExportResult(out, fmt, diff, fixed, time.perf_counter() - start)


def _check_target(fmt: str, out: Path, overwrite: bool) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    if out.suffix.lower() != SUFFIXES[fmt]:
        raise ConfigError(f"a {fmt} export is named *{SUFFIXES[fmt]}, got {out.name!r}", out)
    if out.exists() and not overwrite:
        raise RunError("exists; pass --overwrite to replace it", out)
    if out.is_dir():
        raise RunError("is a folder; give a file name", out)
    require("onnx")
    require("onnxruntime")
    if fmt == "openvino":
        require("openvino")


def _write_openvino(graph: bytes, metadata: str, out: Path, model: nn.Module,
                    samples: list[torch.Tensor]) -> float:
    """Convert the ONNX graph to IR (.xml + .bin, float32 weights), check it in float32,
    then write both files atomically (weights first)."""
    ov = require("openvino")
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(graph)
        ir = ov.convert_model(str(onnx_path))
        ir.set_rt_info(metadata, [METADATA_KEY])
        xml = Path(tmp) / out.name
        ov.save_model(ir, str(xml), compress_to_fp16=False)
        diff = _check(openvino_runner(xml, "fp32"), model, samples, str(out))
        atomic_write_bytes(out.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out, xml.read_bytes())
    return diff


def _write_torchscript(model: nn.Module, metadata: str, out: Path,
                       samples: list[torch.Tensor], fixed: tuple[int, int] | None) -> float:
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


def export_checkpoint(checkpoint: Path | str, fmt: str, out: Path | str,
                      size: int | None = None, overwrite: bool = False,
                      prune_depth: int | None = None, **share: Any) -> ExportResult:
    """Export a checkpoint's model (a deep-supervised UNet++ optionally pruned to
    `prune_depth`); the file alone then predicts (`unetzoo predict --model FILE`).

    `bioimageio` (a BioImage Model Zoo package, `share`: authors, license, cite, ...) and
    `folder` (config.json + model.safetensors + README.md, `share`: dtype, card) are written
    by `engine.bioimageio.export_bioimageio` and `folders.save_pretrained`."""
    if fmt in SHARE_FORMATS:
        return _export_shared(checkpoint, fmt, Path(out), overwrite, prune_depth, share)
    info = load_checkpoint(checkpoint)
    model = info.build_model(prune_depth)
    if prune_depth is not None:  # the metadata rebuilds the network that was exported
        spec = info.model_spec
        info = replace(info, model_spec={**spec, "kwargs": {**spec["kwargs"],
                                                            "prune_depth": prune_depth}})
    return export_model(model, info, fmt, out, size, overwrite)


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


def to_backend(model: nn.Module, backend: str, size: int, precision: str = "fp32"
               ) -> ExportedModule:
    """`model` exported on the fly (in memory / a temporary folder, parity-checked in
    float32) and opened in `backend` (`onnxruntime` or `openvino`)."""
    name = type(model).__name__
    graph, fixed, _ = trace_onnx(model, (size, size), where=f"{name} for {backend}")
    return open_graph(graph, backend, precision, int(getattr(model, "num_classes", 1)), fixed,
                      name)


def open_graph(graph: bytes, backend: str, precision: str, num_classes: int,
               fixed: tuple[int, int] | None = None, name: str = "graph") -> ExportedModule:
    """An in-memory ONNX graph opened in `backend` (`onnxruntime` or `openvino`)."""
    if backend == "onnxruntime":
        return ExportedModule(onnxruntime_runner(graph), num_classes, fixed, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(graph)
        return ExportedModule(openvino_runner(path, precision), num_classes, fixed, name)
