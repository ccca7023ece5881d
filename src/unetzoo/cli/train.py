"""`unetzoo train`: every TrainConfig field is a flag and a YAML key."""

from __future__ import annotations

import argparse

from ..config import TrainConfig, add_config_arguments, build_config, load_yaml
from .common import add_dataset_argument


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="train a model on a dataset folder",
        description="Train a model. Flags override the YAML file given with --config; every "
                    "flag is also a YAML key (dashes or underscores). Under torchrun, the "
                    "processes train together (--batch is per process).")
    parser.add_argument("--config", metavar="YAML", help="YAML file of options")
    add_dataset_argument(parser, "dataset folder", required=False, flag=False)
    add_config_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Train; a stop on SIGINT or SIGTERM exits with 128 + the signal (130, 143) once the
    checkpoint is written (the trainer prints how to resume)."""
    from ..api import train
    from ..engine.training.preemption import TrainingInterrupted

    names = set(TrainConfig.names())
    given = {k: v for k, v in vars(args).items() if k in names}
    config = build_config(given, args.config)
    explicit = set(given) | set(load_yaml(args.config) if args.config else {})
    try:
        train(config, given=given, explicit=explicit)
    except TrainingInterrupted as exc:
        raise SystemExit(exc.exit_code) from None
