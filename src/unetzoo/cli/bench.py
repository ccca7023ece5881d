"""`unetzoo bench`: parameters, GFLOPs, latency, throughput, memory and fraction of peak."""

from __future__ import annotations

import argparse
import json
import logging

from .common import add_backend_arguments, add_runtime_arguments, runtime_from

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="measure a model's speed on this machine",
        description="Times forward passes (or training steps with --train) on random input "
                    "and reports parameters, GFLOPs, latency median and p90, images per "
                    "second, peak memory and the fraction of this machine's measured peak "
                    "FLOP rate (a large matrix product in the same precision).")
    parser.add_argument("--model", required=True, metavar="NAME|CKPT|FILE",
                        help="registered model name, checkpoint or exported file")
    parser.add_argument("--preset", help="model preset for a name, e.g. reference or tiny")
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (names)")
    parser.add_argument("--num-classes", type=int, default=1, help="output channels (names)")
    parser.add_argument("--size", type=int, default=256, help="input height and width")
    parser.add_argument("--batch", type=int, default=1, help="images per forward pass")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes")
    parser.add_argument("--warmup", type=int, default=3, help="untimed passes first")
    parser.add_argument("--train", action="store_true",
                        help="time training steps (forward, loss, backward, AdamW)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    add_runtime_arguments(parser)
    add_backend_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..engine.bench import bench, resolve_bench_model
    from ..fileio import atomic_write_text

    chosen = resolve_bench_model(args.model, runtime_from(args, args.model), args.preset,
                                 args.in_channels, args.num_classes, args.size, args.train)
    log.info(chosen.note)
    result = bench(chosen.module, chosen.runtime, args.size, args.batch, args.warmup,
                   args.repeats, args.train, chosen.name, flops_model=chosen.eager)
    log.info(result.format())
    if args.json:
        atomic_write_text(args.json, json.dumps(result.to_json(), indent=2) + "\n")
