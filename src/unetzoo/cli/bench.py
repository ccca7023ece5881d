"""`unetzoo bench`: parameters, GFLOPs, latency, throughput, memory and fraction of peak."""

from __future__ import annotations

import argparse
import json
import logging

from ..config import ModelOptions, add_config_arguments, check_values
from .common import (
    TRAINED_MODEL,
    DeprecatedAlias,
    add_backend_arguments,
    add_img_size_argument,
    add_runtime_arguments,
    runtime_from,
)

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "bench", help="measure a model's speed on this machine",
        description="Times forward passes (or training steps with --train) on random input "
                    "and reports parameters, GFLOPs, latency median and p90, images per "
                    "second, peak memory and the fraction of this machine's measured peak "
                    "FLOP rate (a large matrix product in the same precision).")
    parser.add_argument("--model", required=True, metavar="NAME|CKPT|FILE",
                        help=f"an architecture (a registered model name) or a trained model: "
                             f"{TRAINED_MODEL}")
    add_config_arguments(parser, ModelOptions, only=("preset", "model_args"))
    parser.add_argument("--in-channels", type=int, default=3, help="input channels (names)")
    parser.add_argument("--num-classes", type=int, default=1, help="output channels (names)")
    add_img_size_argument(parser, "input height and width", default=256)
    parser.add_argument("--batch", type=int, default=1,
                        help="samples (images) per forward pass or training step")
    parser.add_argument("--repeats", type=int, default=20, help="timed passes")
    parser.add_argument("--warmup-passes", "--warmup", dest="warmup_passes", type=int, default=3,
                        action=DeprecatedAlias, deprecated=("--warmup",),
                        help="untimed passes first (--warmup: deprecated spelling)")
    parser.add_argument("--train", action="store_true",
                        help="time training steps (forward, loss, backward, AdamW)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON")
    add_runtime_arguments(parser)
    add_backend_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..config import parse_key_values
    from ..engine.bench import bench, resolve_bench_model
    from ..fileio import atomic_write_text

    runtime = runtime_from(args)
    given = {k: getattr(args, k) for k in ("preset", "model_args") if hasattr(args, k)}
    if isinstance(given.get("model_args"), list):
        given["model_args"] = parse_key_values(given["model_args"])
    options = check_values(given, ModelOptions)
    chosen = resolve_bench_model(args.model, runtime, options.get("preset"), args.in_channels,
                                 args.num_classes, args.img_size, args.train,
                                 options.get("model_args"))
    log.info(chosen.note)
    result = bench(chosen.module, chosen.runtime, args.img_size, args.batch, args.warmup_passes,
                   args.repeats, args.train, chosen.name, flops_model=chosen.eager)
    log.info(result.format())
    if args.json:
        atomic_write_text(args.json, json.dumps(result.to_json(), indent=2) + "\n")
