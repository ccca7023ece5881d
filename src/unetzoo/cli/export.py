"""`unetzoo export`: a checkpoint as ONNX, OpenVINO IR or TorchScript, parity-checked."""

from __future__ import annotations

import argparse
import logging

from .common import (
    add_img_size_argument,
    add_out_argument,
    add_trained_model_argument,
    trained_model,
)

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export", help="export a checkpoint to ONNX, OpenVINO or TorchScript",
        description="Writes a graph with dynamic batch, height and width (fixed height and "
                    "width for models whose graph depends on the size, e.g. sparse_unet) "
                    "carrying the checkpoint's task, classes and preprocessing, after checking "
                    "it against eager PyTorch (float32, max abs logit difference <= 1e-4). "
                    "`unetzoo predict --model FILE` then needs nothing else.")
    add_trained_model_argument(parser, "; export takes the checkpoint")
    parser.add_argument("--format", required=True, choices=("onnx", "openvino", "torchscript"),
                        help="onnx (*.onnx), openvino (*.xml + *.bin) or torchscript "
                             "(*.torchscript)")
    add_out_argument(parser, "file to write", required=True, metavar="PATH")
    add_img_size_argument(parser, "trace and check size (default: the checkpoint's patch "
                                  "size)")
    parser.add_argument("--prune-depth", type=int, default=None, metavar="K",
                        help="export only UNet++ L^K of a deep-supervised UNet++ (1..depth)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..engine.export import export_checkpoint

    result = export_checkpoint(trained_model(args.model), args.format, args.out,
                               args.img_size, args.overwrite, args.prune_depth)
    shape = ("dynamic height and width" if result.input_size is None
             else f"fixed {result.input_size[0]} x {result.input_size[1]} inputs")
    log.info(f"{args.model} -> {result.path} ({args.format}, dynamic batch, {shape}; max abs "
             f"difference to eager PyTorch {result.max_abs_diff:.2g}, {result.seconds:.1f} s)")
