"""`unetzoo eval`: metrics of a checkpoint on a dataset split, with optional overlays."""

from __future__ import annotations

import argparse
import logging

from .common import (
    add_dataset_argument,
    add_inference_arguments,
    add_out_argument,
    add_trained_model_argument,
    inference_options,
    trained_model,
)

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("eval", help="evaluate a checkpoint on a dataset",
                            description="Dice, IoU, precision, recall, specificity, F1, "
                                        "accuracy, mDice per image and summarised.")
    add_dataset_argument(parser)
    parser.add_argument("--csvfile", metavar="F", help="CSV split (image,mask,split)")
    add_trained_model_argument(parser, " (INT8 included): an exported file evaluates like "
                                        "its checkpoint")
    parser.add_argument("--split", default=None,
                        help="split to evaluate: train, val, test or all (default: test when "
                             "the dataset has splits, else all images, and it says so)")
    add_out_argument(parser, "where metrics.json, per_image.csv and overlays go; {split} "
                             "becomes the split evaluated (default: eval-{split} in the "
                             "checkpoint's run folder, eval-NAME-{split} beside an exported "
                             "file)")
    parser.add_argument("--debug", action="store_true",
                        help="write image | ground truth | prediction overlays")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes")
    parser.add_argument("--report", default=True, action=argparse.BooleanOptionalAction,
                        help="write report.html beside the results (unetzoo report)")
    add_inference_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..artefacts.runs import evaluation_dir
    from ..engine.evaluate import evaluate_checkpoint, format_summary

    checkpoint = trained_model(args.model)
    out = args.out or str(evaluation_dir(checkpoint.path, checkpoint.name))
    result = evaluate_checkpoint(checkpoint, args.dataset, args.csvfile, args.split, out,
                                 debug=args.debug, options=inference_options(args),
                                 workers=args.workers, progress=args.progress)
    out = result.extra["out"]
    if "note" in result.extra:
        log.info(result.extra["note"])
    split = result.extra["split"]
    log.info(format_summary(result, f"{checkpoint.given} on {args.dataset} "
                                    f"({'all images' if split == 'all' else split}):"))
    log.info(f"results written to {out}" + (" (overlays in overlays/)" if args.debug else ""))
    if args.report:
        from ..report.page import write_page_safely, write_report

        write_page_safely("report.html", lambda: write_report(out))
