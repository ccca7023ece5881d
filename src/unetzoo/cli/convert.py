"""`unetzoo convert`: a public dataset as distributed -> the paired layout with a split."""

from __future__ import annotations

import argparse
import logging
from collections import Counter

from .common import DeprecatedAlias

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..data.convert import CONVERTERS

    listing = "; ".join(f"{name}: {m.SUMMARY}" for name, m in CONVERTERS.items())
    parser = sub.add_parser(
        "convert", help="convert a public dataset (folder or zip) to images/ + masks/ + split",
        description=f"Reads SRC as distributed (never modifying it) and writes DEST/images, "
                    f"DEST/masks, DEST/split.csv and DEST/classes.yaml. Datasets: {listing}.")
    parser.add_argument("name", choices=sorted(CONVERTERS), metavar="NAME",
                        help=", ".join(sorted(CONVERTERS)))
    parser.add_argument("src", metavar="SRC", help="the dataset folder or zip as downloaded")
    parser.add_argument("dest", metavar="DEST", help="output folder (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DEST")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the 80/10/10 split where the dataset has none")
    parser.add_argument("--write-instances", "--instances", dest="instances", nargs=0,
                        const=True, default=False, action=DeprecatedAlias,
                        deprecated=("--instances",),
                        help="dsb2018: also write 16-bit instance label maps to instances/ "
                             "(--instances: deprecated spelling)")
    parser.add_argument("--no-fov", dest="fov", action="store_false", default=None,
                        help="drive: no field-of-view ROI (evaluate the whole image)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.convert import convert_dataset

    options = {k: v for k, v in (("instances", args.instances or None), ("fov", args.fov))
               if v is not None}
    pairs = convert_dataset(args.name, args.src, args.dest, overwrite=args.overwrite,
                            seed=args.seed, **options)
    counts = Counter(p.split for p in pairs)
    log.info(f"{args.name}: {len(pairs)} images -> {args.dest} (" + ", ".join(
        f"{k} {counts[k]}" for k in ("train", "val", "test") if counts[k]) + ")")
    log.info(f"train with: unetzoo train --dataset {args.dest} --csvfile split.csv")
