"""Flags shared by several sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engine.backends import FORMAT_BACKEND, format_of
from ..engine.infer import TTA_MODES, InferenceOptions
from ..engine.postprocess import PostProcessing
from ..engine.runtime import BACKENDS, PRECISIONS, Runtime


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto uses bf16 where the hardware has it; fp32 turns that off")
    group.add_argument("--channels-last", default=None, action=argparse.BooleanOptionalAction,
                       help="NHWC memory format (default: on with bf16 and on GPUs)")
    group.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="hide progress bars")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="auto (default): OpenVINO on CPUs where it is installed and the "
                            "model converts (converted once, cached next to the checkpoint), "
                            "torch otherwise; an exported file runs in its format's backend. "
                            "torch, onnxruntime or openvino force one")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the model (torch backend; pays off on many images)")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Runtime, backend, tiling, test-time augmentation and post-processing flags."""
    add_runtime_arguments(parser)
    add_backend_arguments(parser)
    group = parser.add_argument_group("inference")
    group.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    group.add_argument("--overlap", type=float, default=0.25,
                       help="overlap of sliding-window tiles (0..1)")
    group.add_argument("--tta", default="none", choices=TTA_MODES,
                       help="test-time augmentation averaged as probabilities: flip (4 "
                            "flips) or flip-rot90 (also 90-degree rotations, 8 in all)")
    group.add_argument("--min-size", type=int, default=0, metavar="PIXELS",
                       help="remove predicted components smaller than this")
    group.add_argument("--fill-holes", action="store_true",
                       help="fill background regions enclosed by a class")
    group.add_argument("--prune-depth", type=int, default=None, metavar="K",
                       help="run only UNet++ L^K of a deep-supervised UNet++ (faster, "
                            "see benchmarks/unetpp_pruning.py)")


def runtime_from(args: argparse.Namespace, model: str | Path | None = None) -> Runtime:
    """The runtime the flags ask for (backend `auto` unless --backend says otherwise;
    commands without --backend run torch); an exported `model` file runs in its format's
    backend (TorchScript files in float32)."""
    backend = getattr(args, "backend", "torch")
    fmt = format_of(Path(model)) if model else None
    if backend == "auto" and fmt:
        backend = FORMAT_BACKEND[fmt]
    precision = "fp32" if fmt == "torchscript" else args.precision
    return Runtime.resolve(args.device, precision, args.channels_last, args.threads,
                           compile=getattr(args, "compile", False), backend=backend)


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    return InferenceOptions(runtime_from(args, args.model), batch_size=args.batch,
                            overlap=args.overlap, threshold=getattr(args, "threshold", 0.5),
                            tta=args.tta, postprocess=PostProcessing(args.min_size,
                                                                     args.fill_holes),
                            prune_depth=args.prune_depth)
