"""The `unetzoo` command: thin sub-commands that parse flags and call the engine."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ..errors import UnetzooError
from . import (
    bench,
    compare,
    convert,
    demo,
    evaluate,
    export,
    inspect,
    models,
    predict,
    report,
    split,
    train,
)

COMMANDS = (demo, train, evaluate, predict, export, bench, split, convert, inspect, models,
            report, compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetzoo", description="The U-Net family: train, evaluate, predict, export.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class ConsoleHandler(logging.StreamHandler):
    """Plain messages to whatever `sys.stdout` is when a record is written."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging() -> None:
    logger = logging.getLogger("unetzoo")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs a sub-command; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    setup_logging()
    try:
        args.run(args)
    except UnetzooError as exc:
        print(f"unetzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"unetzoo {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
