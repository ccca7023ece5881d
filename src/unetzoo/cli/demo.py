"""`unetzoo demo`: the main job on the embedded dataset, end to end on a CPU."""

from __future__ import annotations

import argparse

from .common import add_out_argument, add_runtime_arguments, runtime_from


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="train, evaluate and predict on the embedded dataset (about 2 min on a CPU)",
        description="Generates the embedded nucleus dataset, trains a U-Net, evaluates it on "
                    "the held-out test split and writes checkpoint, metrics, curves and "
                    "overlays into a run folder.")
    add_out_argument(parser, "run folder (default runs/demo-<time>)")
    parser.add_argument("--epoch", "--epochs", type=int, default=None,
                        help="epochs (default: the demo's tuned budget)")
    parser.add_argument("--model", default="unet", metavar="NAME",
                        help="architecture to train: a registered model name")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run")
    add_runtime_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..demo import run_demo

    run_demo(out=args.out, epoch=args.epoch, model=args.model, overwrite=args.overwrite,
             runtime=runtime_from(args), progress=args.progress)
