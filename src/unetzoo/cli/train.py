"""`unetzoo train`: every TrainConfig field is a flag and a YAML key."""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, build_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train", help="train a model on a dataset folder",
        description="Train a model. Flags override the YAML file given with --config; every "
                    "flag is also a YAML key (dashes or underscores).")
    parser.add_argument("--config", metavar="YAML", help="YAML file of options")
    add_config_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..engine.trainer import train

    given = {k: v for k, v in vars(args).items() if k not in ("config", "run", "command")}
    config = build_config(given, args.config)
    train(config, given=given)
