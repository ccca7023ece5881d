"""`unetzoo inspect`: what a dataset holds and every problem in it, without training."""

from __future__ import annotations

import argparse
import logging

from ..config import DataOptions, RuntimeOptions, add_config_arguments, check_values
from .common import add_dataset_argument

log = logging.getLogger("unetzoo")

# how the dataset is read: the same flags (one declaration) as train and plan
INSPECT_OPTIONS = ("csvfile", "task", "class_map", "ignore_index", "instances", "mask_threshold")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect", help="check a dataset: counts, sizes, channels, classes, problems",
        description="Reads every header and (unless --sample) every image and mask of a "
                    "dataset folder and prints counts, sizes, channels, bit depths, how the "
                    "masks are read (task, classes and the evidence, as training reads them), "
                    "class pixel frequencies and every problem found. Exits 2 when there are "
                    "problems.")
    add_dataset_argument(parser)
    add_config_arguments(parser, DataOptions, only=INSPECT_OPTIONS)
    parser.add_argument("--sample", type=int, metavar="N",
                        help="read the pixels of N spread pairs only (headers: all)")
    add_config_arguments(parser, RuntimeOptions, only=("progress",), defaults=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.inspect import inspect_dataset
    from ..errors import DataError

    options = check_values({k: getattr(args, k) for k in INSPECT_OPTIONS if hasattr(args, k)},
                           DataOptions)
    found = inspect_dataset(args.dataset, sample=args.sample, progress=args.progress,
                            **options)
    log.info(found.format())
    if found.problems:
        raise DataError(f"{len(found.problems)} problem(s) found (listed above)", args.dataset)
