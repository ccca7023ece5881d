"""Write a model's graph to a file that alone predicts: ONNX, OpenVINO IR or TorchScript,
checked against eager PyTorch (`engine.inference.graphs` makes and checks the graphs) and
written atomically after the check. `exporter.export_checkpoint`, the public entry point,
builds on this with packages, model folders and INT8."""

from __future__ import annotations

import io
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...errors import ConfigError, RunError
from ...fileio import atomic_write, atomic_write_bytes
from ..inference.backends import METADATA_KEY, SUFFIXES, require, torchscript_runner
from ..inference.graphs import (
    Exportable,
    check_parity,
    export_metadata,
    parity_samples,
    save_openvino,
    trace_onnx,
    trace_openvino,
    with_onnx_metadata,
)

FORMATS: tuple[str, ...] = tuple(SUFFIXES)
SHARE_FORMATS: tuple[str, ...] = ("bioimageio", "folder")  # export/bioimageio.py, folders.py


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
        samples = parity_samples((side, side), int(info.model_spec["in_channels"]))
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
        diff = check_parity(torchscript_runner(path), model, samples, str(out))
    atomic_write(out, lambda fh: fh.write(buffer.getbuffer()))
    return diff
