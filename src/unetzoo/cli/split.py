"""`unetzoo split`: a reproducible CSV split of a paired dataset folder."""

from __future__ import annotations

import argparse
import logging
from collections import Counter

from .common import DeprecatedAlias, add_dataset_argument

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("split", help="write a train/val/test CSV split",
                            description="Shuffle the pairs of DIR/images + DIR/masks with a "
                                        "seed and write image,mask,split rows.")
    add_dataset_argument(parser)
    parser.add_argument("--train-size", "--size", dest="train_size", type=float, default=0.9,
                        action=DeprecatedAlias, deprecated=("--size",),
                        help="fraction for training (--size: deprecated spelling)")
    parser.add_argument("--val-size", type=float, default=0.0, help="fraction for validation")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed")
    parser.add_argument("--csvfile", metavar="F", default="split.csv",
                        help="output CSV, relative to the dataset (default split.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.split import split_dataset

    target, pairs = split_dataset(args.dataset, args.train_size, args.val_size, args.seed,
                                  args.csvfile, args.overwrite)
    counts = Counter(p.split for p in pairs)
    log.info(f"{target}: train {counts['train']}, val {counts['val']}, test {counts['test']} "
             f"(seed {args.seed})")
