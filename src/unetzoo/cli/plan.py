"""`unetzoo plan`: a training recipe from the dataset's and the machine's fingerprints."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..task import TASKS

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan", help="choose a training recipe from the dataset and the machine",
        description="Fingerprints the training split (sizes, channels, bit depth, intensity "
                    "statistics, foreground fraction, object sizes, class frequencies) and "
                    "this machine (cores, bf16, GPU), chooses model width, patch, batch, "
                    "patches per epoch, sampling, normalisation, augmentation, loss, schedule "
                    "and validation for the time budget, prints the reasons and writes a YAML "
                    "for `unetzoo train --config`. `unetzoo train --time-budget M` plans the "
                    "same way for every option not given.")
    parser.add_argument("dataset", metavar="DIR", help="dataset folder")
    parser.add_argument("--csvfile", metavar="F", help="CSV split (image,mask,split)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="MINUTES",
                        help="training time to plan for (default: 15)")
    parser.add_argument("--task", choices=TASKS, help="task (default: inferred)")
    parser.add_argument("--class-map", metavar="YAML",
                        help="class map (default: DIR/classes.yaml when present)")
    parser.add_argument("--ignore-index", type=int, help="stored mask value to ignore")
    parser.add_argument("--out", metavar="YAML", help="write the plan here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.prepare import prepare_data
    from ..engine.plan import plan_for, write_plan
    from ..errors import RunError

    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        raise RunError("exists; pass --overwrite to replace it or choose another --out", out)
    data = prepare_data(args.dataset, args.csvfile, task=args.task, class_map=args.class_map,
                        ignore_index=args.ignore_index, cache="off")
    plan = plan_for(data, args.time_budget)
    log.info(f"unetzoo plan: {args.dataset}")
    for reason in plan.reasons:
        log.info(f"  {reason}")
    if out is not None:
        write_plan(plan, out, str(args.dataset), args.csvfile)
        log.info(f"plan written to {out}: unetzoo train --config {out}")
    else:
        log.info(plan.to_yaml(str(args.dataset), args.csvfile))
