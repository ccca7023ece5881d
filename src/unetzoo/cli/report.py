"""`unetzoo report`: write a run's (or an evaluation's) report.html."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("unetzoo")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The picture flags shared by `report` and `compare`."""
    parser.add_argument("--gallery", type=int, default=8, metavar="K",
                        help="pictures of the K worst and K best images (default 8)")
    parser.add_argument("--overlays", type=int, default=100, metavar="N",
                        help="pictures of every image when the evaluation has at most N "
                             "(default 100); beyond, only the gallery's")
    parser.add_argument("--metric", default=None,
                        help="per-image metric that ranks the images (a column of "
                             "per_image.csv; default: mean_ap for instance models, else dice)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing page that unetzoo did not write")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="write RUN/report.html: curves, metrics, worst and best images",
        description="One self-contained page about a run folder (or an evaluation folder "
                    "such as RUN/eval-test): what was trained, curves, metrics, a sortable "
                    "per-image table and the worst and best images with their errors.")
    parser.add_argument("path", metavar="RUN", help="run folder or evaluation folder")
    parser.add_argument("--eval", metavar="DIR", dest="evaluation",
                        help="evaluation folder to show (default: RUN/test, else the newest "
                             "RUN/eval-*)")
    add_report_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..report import ReportOptions, write_report

    write_report(args.path, evaluation=args.evaluation,
                 options=ReportOptions(args.gallery, args.overlays, args.metric),
                 overwrite=args.overwrite)
