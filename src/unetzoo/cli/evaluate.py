"""`unetzoo eval`: metrics of a checkpoint on a dataset split, with optional overlays."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import add_inference_arguments, inference_options

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a checkpoint on a dataset",
                            description="Dice, IoU, precision, recall, specificity, F1, "
                                        "accuracy, mDice per image and summarised.")
    parser.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder")
    parser.add_argument("--csvfile", metavar="F", help="CSV split (image,mask,split)")
    parser.add_argument("--model", required=True, metavar="CKPT|FILE",
                        help="checkpoint, or a file written by `unetzoo export` (.onnx, .xml, "
                             ".torchscript, INT8 included)")
    parser.add_argument("--split", default="test",
                        help="split to evaluate (train, val, test, or all)")
    parser.add_argument("--out", metavar="DIR",
                        help="where metrics.json, per_image.csv and overlays go (default: "
                             "eval-<split> beside the checkpoint's run folder)")
    parser.add_argument("--debug", action="store_true",
                        help="write image | ground truth | prediction overlays")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    add_inference_arguments(parser)
    parser.set_defaults(run=run)


def default_out(model: Path, split: str) -> Path:
    """eval-<split> in the run folder of a checkpoint (runs/x/models/best.pt -> runs/x), or
    eval-<name>-<split> beside an exported file."""
    from ..engine.backends import format_of

    if format_of(model):
        return model.resolve().parent / f"eval-{model.stem}-{split}"
    return model.resolve().parent.parent / f"eval-{split}"


def run(args: argparse.Namespace) -> None:
    from ..engine.evaluate import evaluate_checkpoint, format_summary

    checkpoint = Path(args.model)
    split = None if args.split == "all" else args.split
    out = Path(args.out) if args.out else default_out(checkpoint, args.split)
    result = evaluate_checkpoint(checkpoint, args.dataset, args.csvfile, split, out,
                                 debug=args.debug, options=inference_options(args),
                                 workers=args.workers, progress=args.progress)
    log.info(format_summary(result, f"{checkpoint} on {args.dataset} "
                                    f"({result.extra['split'] or 'all images'}):"))
    log.info(f"results written to {out}" + (" (overlays in overlays/)" if args.debug else ""))
