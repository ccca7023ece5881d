"""Flags shared by several sub-commands."""

from __future__ import annotations

import argparse

from ..engine.infer import InferenceOptions
from ..engine.runtime import PRECISIONS, Runtime


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    group.add_argument("--precision", default="auto", choices=PRECISIONS,
                       help="auto uses bf16 where the hardware has it; fp32 turns that off")
    group.add_argument("--channels-last", default=None, action=argparse.BooleanOptionalAction,
                       help="NHWC memory format (default: on with bf16 and on GPUs)")
    group.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    group.add_argument("--batch", type=int, default=4, help="tiles per forward pass")
    group.add_argument("--overlap", type=float, default=0.25,
                       help="overlap of sliding-window tiles (0..1)")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="hide progress bars")


def runtime_from(args: argparse.Namespace) -> Runtime:
    return Runtime.resolve(args.device, args.precision, args.channels_last, args.threads)


def inference_options(args: argparse.Namespace) -> InferenceOptions:
    return InferenceOptions(runtime_from(args), batch_size=args.batch, overlap=args.overlap,
                            threshold=getattr(args, "threshold", 0.5))
