"""Export a trained model to a file that alone predicts (`unetzoo export`, `unetzoo.export`):
ONNX, OpenVINO IR (INT8 too: `quantize.py`), TorchScript (`files.py`), a BioImage Model Zoo
package (`bioimageio.py`) or a model folder, from anything a user names that holds weights.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ...artefacts.references import ModelReference, resolve_model, save_pretrained
from ...errors import ConfigError
from ..inference.graphs import checkpoint_for_export
from .bioimageio import export_bioimageio
from .files import SHARE_FORMATS, ExportResult, export_model
from .quantize import export_int8


def export_checkpoint(checkpoint: Path | str | ModelReference, fmt: str, out: Path | str,
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
    by `engine.export.bioimageio.export_bioimageio` and `artefacts.references.save_pretrained`.

    Args:
        checkpoint: a trained model with its weights: a checkpoint, a run folder, a model
            folder, a shipped name or a package unetzoo exported (`resolve_model`).
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
    reference = resolve_model(checkpoint)
    info = reference.checkpoint(f"an export to {fmt}")
    model, info = checkpoint_for_export(info, prune_depth)
    if not int8:
        return export_model(model, info, fmt, out, size, overwrite)
    if fmt != "openvino":
        raise ConfigError("--int8 writes OpenVINO IR: use --format openvino")
    return export_int8(model, info, Path(out), reference.path, size=size,
                       overwrite=overwrite, dataset=dataset, csvfile=csvfile,
                       accept_drop=accept_drop, max_dice_drop=max_dice_drop,
                       calibration_images=calibration_images, progress=progress)


def _export_shared(checkpoint: Path | str | ModelReference, fmt: str, out: Path, overwrite: bool,
                   prune_depth: int | None, share: dict[str, Any]) -> ExportResult:
    start = time.perf_counter()
    if fmt == "bioimageio":
        package = export_bioimageio(checkpoint, out, overwrite=overwrite,
                                    prune_depth=prune_depth, **share)
        return ExportResult(out, fmt, package.max_abs_diff, None, package.seconds,
                            f"bioimageio.core test {package.test_status}")
    if prune_depth is not None:
        raise ConfigError("--prune-depth applies to graph exports; a model folder keeps the "
                          "whole network (prune it when predicting)")
    save_pretrained(checkpoint, out, overwrite=overwrite, **share)
    return ExportResult(out, fmt, 0.0, None, time.perf_counter() - start,
                        f"weights {share.get('dtype', 'float32')}")

