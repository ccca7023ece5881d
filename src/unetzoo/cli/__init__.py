"""The `unetzoo` command: thin sub-commands that parse flags and call the engine."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ..errors import UnetzooError, one_line
from ..version import __version__
from . import (
    bench,
    compare,
    convert,
    demo,
    evaluate,
    export,
    inspect,
    models,
    plan,
    predict,
    report,
    serve,
    split,
    train,
)
from .common import settle_dataset

COMMANDS = (demo, train, plan, evaluate, predict, export, bench, split, convert, inspect,
            models, report, compare, serve)


DEBUG_ENV = "UNETZOO_DEBUG"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetzoo", description="The U-Net family: train, evaluate, predict, export. "
        f"Errors print one line; --traceback (or {DEBUG_ENV}=1) prints the traceback.")
    parser.add_argument("-V", "--version", action="version", version=f"unetzoo {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    for command_parser in {id(p): p for p in sub.choices.values()}.values():
        command_parser.add_argument("--traceback", action="store_true",
                                    help=f"print the traceback of an error (also: {DEBUG_ENV}=1)")
        command_parser.set_defaults(command_parser=command_parser)
    return parser


class ConsoleHandler(logging.StreamHandler):
    """Plain messages to whatever `sys.stdout` is when a record is written; a closed or full
    output raises (to `main`) instead of logging's own traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            raise error
        super().handleError(record)


def setup_logging() -> None:
    logger = logging.getLogger("unetzoo")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: runs a sub-command. Every failure is one line on stderr and a non-zero
    exit: 2 for a user error (the `UnetzooError` family), 1 for a system error (a file that
    cannot be written, a full disk) or an internal error, 141 when the output is closed early
    (`| head`), 130 on Ctrl-C. `--traceback` or UNETZOO_DEBUG=1 adds the traceback."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # the command's usage, not the top level's "unetzoo [-h] COMMAND ..."
        args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setup_logging()
    prefix = f"unetzoo {args.command}"
    debug = args.traceback or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    try:
        settle_dataset(args)
        args.run(args)
    except UnetzooError as exc:
        error: BaseException = exc
        code, message = 2, f"error: {one_line(exc)}"
    except KeyboardInterrupt as exc:
        error = exc
        code, message = 130, "interrupted"
    except BrokenPipeError as exc:
        error = exc
        # the reader (e.g. `head`) has gone: send what is still buffered nowhere
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code, message = 141, "output closed early (broken pipe)"
    except OSError as exc:
        error = exc
        where = f"{exc.filename}: " if exc.filename else ""
        code, message = 1, f"error: {where}{exc.strerror or one_line(exc)}"
    except Exception as exc:  # a bug: one line, the traceback on request
        error = exc
        code = 1
        message = (f"internal error: {type(exc).__name__}: {one_line(exc)} (run with "
                   f"--traceback or {DEBUG_ENV}=1 for the traceback)")
    else:
        return 0
    try:
        if debug:
            traceback.print_exception(error)
        print(f"{prefix}: {message}", file=sys.stderr)
        sys.stderr.flush()
    except BrokenPipeError:  # stderr went into the same closed pipe (`2>&1 | head`)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    return code
