"""Export a trained model to a file that alone predicts: ONNX, OpenVINO IR (INT8 too),
TorchScript, a BioImage Model Zoo package or a model folder (`unetzoo export`).

Graphs are made and checked against eager PyTorch by `engine.inference.graphs`; this module
writes them, atomically, after the check.
"""

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

from ...artefacts.checkpoint import Checkpoint, load_checkpoint
from ...errors import ConfigError, RunError
from ...fileio import atomic_write, atomic_write_bytes
from ..inference.backends import METADATA_KEY, SUFFIXES, require, torchscript_runner
from ..inference.graphs import (
    Exportable,
    check_parity,
    checkpoint_for_export,
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
    from ...artefacts.folders import save_pretrained

    if prune_depth is not None:
        raise ConfigError("--prune-depth applies to graph exports; a model folder keeps the "
                          "whole network (prune it when predicting)")
    save_pretrained(checkpoint, out, overwrite=overwrite, **share)
    return ExportResult(out, fmt, 0.0, None, time.perf_counter() - start,
                        f"weights {share.get('dtype', 'float32')}")

