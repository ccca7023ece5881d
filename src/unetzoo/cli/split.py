"""`unetzoo split`: a reproducible CSV split of a paired dataset folder."""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("split", help="write a train/val/test CSV split",
                            description="Shuffle the pairs of DIR/images + DIR/masks with a "
                                        "seed and write image,mask,split rows.")
    parser.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder")
    parser.add_argument("--size", type=float, default=0.9, help="fraction for training")
    parser.add_argument("--val-size", type=float, default=0.0, help="fraction for validation")
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed")
    parser.add_argument("--csvfile", metavar="F", default="split.csv",
                        help="output CSV, relative to the dataset (default split.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.layouts import find_folder_pairs
    from ..data.split import make_split, write_split_csv

    root = Path(args.dataset)
    pairs = make_split(find_folder_pairs(root), args.size, args.val_size, args.seed)
    target = Path(args.csvfile)
    target = target if target.is_absolute() else root / target
    write_split_csv(pairs, root, target, overwrite=args.overwrite)
    counts = Counter(p.split for p in pairs)
    log.info(f"{target}: train {counts['train']}, val {counts['val']}, test {counts['test']} "
             f"(seed {args.seed})")
