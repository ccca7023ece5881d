"""`unetzoo compare`: runs side by side, on one page and in the console."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .report import add_report_arguments

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "compare", help="compare runs: configs, curves, metrics, images they disagree on",
        description="One page (and a console table) comparing runs: their configs side by "
                    "side with the differences highlighted, curves overlaid, metrics with "
                    "differences, and the images where the runs disagree most with both "
                    "predictions.")
    parser.add_argument("paths", nargs="+", metavar="RUN",
                        help="run folders or evaluation folders (two or more)")
    parser.add_argument("--out", metavar="HTML",
                        help="the page to write (default: compare-<runs>.html beside the "
                             "first run)")
    add_report_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..report import ReportOptions, write_comparison

    result = write_comparison(args.paths, Path(args.out) if args.out else None,
                              options=ReportOptions(args.gallery, args.overlays, args.metric),
                              overwrite=args.overwrite)
    log.info(result.console)
    log.info(f"comparison written to {result.page}")
