"""`unetzoo plan`: a training recipe from the dataset's and the machine's fingerprints."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..config import TrainConfig, add_config_arguments, check_values
from .common import add_dataset_argument

log = logging.getLogger("unetzoo")

# the train options that say how the dataset is read, and the budget: the same flags as train
PLAN_OPTIONS = ("csvfile", "task", "class_map", "ignore_index", "instances", "mask_threshold",
                "time_budget")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "plan", help="choose a training recipe from the dataset and the machine",
        description="Fingerprints the training split (sizes, channels, bit depth, intensity "
                    "statistics, foreground fraction, object sizes, class frequencies) and "
                    "this machine (cores, bf16, GPU), chooses model width, patch, batch, "
                    "patches per epoch, sampling, normalisation, augmentation, loss, schedule "
                    "and validation for the time budget (default 15 minutes), prints the "
                    "reasons and writes a YAML for `unetzoo train --config`. `unetzoo train "
                    "--time-budget M` plans the same way for every option not given.")
    add_dataset_argument(parser)
    add_config_arguments(parser, TrainConfig, only=PLAN_OPTIONS)
    parser.add_argument("--out", metavar="YAML", help="write the plan here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..data.prepare import prepare_data
    from ..engine.plan import plan_for, write_plan
    from ..errors import RunError

    options = check_values({k: getattr(args, k) for k in PLAN_OPTIONS if hasattr(args, k)})
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        raise RunError("exists; pass --overwrite to replace it or choose another --out", out)
    minutes = options.pop("time_budget", None)
    data = prepare_data(args.dataset, cache="off", **options)
    plan = plan_for(data, minutes)
    log.info(f"unetzoo plan: {args.dataset}")
    for reason in plan.reasons:
        log.info(f"  {reason}")
    if out is not None:
        write_plan(plan, out, str(args.dataset), options.get("csvfile"))
        log.info(f"plan written to {out}: unetzoo train --config {out}")
    else:
        log.info(plan.to_yaml(str(args.dataset), options.get("csvfile")))
