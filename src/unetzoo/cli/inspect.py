"""`unetzoo inspect`: what a dataset holds and every problem in it, without training."""

from __future__ import annotations

import argparse
import logging

from ..config import TrainConfig, add_config_arguments
from ..task import TASKS

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect", help="check a dataset: counts, sizes, channels, classes, problems",
        description="Reads every header and (unless --sample) every image and mask of a "
                    "dataset folder and prints counts, sizes, channels, bit depths, how the "
                    "masks are read (task, classes and the evidence, as training reads them), "
                    "class pixel frequencies and every problem found. Exits 2 when there are "
                    "problems.")
    parser.add_argument("dataset", metavar="DIR", help="dataset folder")
    parser.add_argument("--csvfile", metavar="F", help="CSV split (image,mask,split)")
    parser.add_argument("--class-map", metavar="YAML",
                        help="class map (default: DIR/classes.yaml when present)")
    parser.add_argument("--task", choices=TASKS, help="task (default: inferred)")
    parser.add_argument("--ignore-index", type=int, help="stored mask value to ignore")
    parser.add_argument("--instances", action="store_true",
                        help="masks are instance label images: foreground = any label")
    parser.add_argument("--mask-threshold", type=float, metavar="T",
                        help="binary: stored values above T are foreground")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="read the pixels of N spread pairs only (headers: all)")
    add_config_arguments(parser, TrainConfig, only=("progress",), defaults=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.inspect import inspect_dataset
    from ..errors import DataError

    found = inspect_dataset(args.dataset, args.csvfile, class_map=args.class_map,
                            task=args.task, ignore_index=args.ignore_index,
                            instances=args.instances, mask_threshold=args.mask_threshold,
                            sample=args.sample, progress=args.progress)
    log.info(found.format())
    if found.problems:
        raise DataError(f"{len(found.problems)} problem(s) found (listed above)", args.dataset)
