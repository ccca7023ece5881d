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
    parser.add_argument("--model", required=True, metavar="CKPT|DIR|NAME",
                        help="checkpoint file, model folder or pretrained name (with --backend "
                             "onnxruntime|openvino it is exported on the fly)")
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


def run(args: argparse.Namespace) -> None:
    from ..engine.backends import format_of
    from ..engine.evaluate import evaluate_checkpoint, format_summary
    from ..errors import ConfigError

    checkpoint = Path(args.model)
    if format_of(checkpoint):
        raise ConfigError("eval takes the checkpoint (add --backend onnxruntime or openvino "
                          "to evaluate its exported graph); exported files run with predict",
                          checkpoint)
    split = None if args.split == "all" else args.split
    out = Path(args.out) if args.out else (
        checkpoint.resolve().parent.parent / f"eval-{args.split}" if checkpoint.is_file()
        else Path(f"eval-{checkpoint.name}-{args.split}"))  # a folder or pretrained name
    result = evaluate_checkpoint(checkpoint, args.dataset, args.csvfile, split, out,
                                 debug=args.debug, options=inference_options(args),
                                 workers=args.workers, progress=args.progress)
    log.info(format_summary(result, f"{checkpoint} on {args.dataset} "
                                    f"({result.extra['split'] or 'all images'}):"))
    log.info(f"results written to {out}" + (" (overlays in overlays/)" if args.debug else ""))
