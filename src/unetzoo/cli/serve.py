"""`unetzoo serve`: an HTTP server for one or more trained models."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import TRAINED_MODEL, add_inference_arguments, inference_options


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "serve", help="serve trained models over HTTP",
        description="Serves models over HTTP: the Open Inference Protocol (KServe v2) routes "
                    "under /v2 (JSON tensors in, labels out), POST /v1/models/NAME/predict "
                    "(an image file in, the mask `predict` writes out) and a page at / to try "
                    "a model in a browser. Every answer equals `unetzoo predict` on the same "
                    "image; bad requests get a 4xx and one line of JSON.")
    parser.add_argument("--model", required=True, action="append", metavar="[NAME=]MODEL",
                        help=f"a model to serve (repeat for more): {TRAINED_MODEL}. It is "
                             "named in URLs by its shipped name, run folder name or file stem; "
                             "NAME=MODEL names it (two models of one name are refused)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    group = parser.add_argument_group("limits and batching")
    group.add_argument("--max-request-mb", type=float, default=64,
                       help="largest request body in MiB (more: 413)")
    group.add_argument("--max-pixels", type=int, default=4096 * 4096,
                       help="most pixels of an image or tensor in one request (more: 413)")
    group.add_argument("--max-queue", type=int, default=32,
                       help="requests a model holds, waiting or running (more: 503 with "
                            "Retry-After)")
    group.add_argument("--max-batch", type=int, default=None,
                       help="requests of a model run side by side, their model calls of one "
                            "size gathered into one batch (default: 8 on a GPU, 4 on a CPU: "
                            "benchmarks/serve_load.py --batching measures the gain; 1: one "
                            "request at a time)")
    group.add_argument("--batch-wait-ms", type=float, default=5.0,
                       help="how long a model call waits for others of its size to batch "
                            "with (milliseconds)")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log each request")
    add_inference_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "python_multipart")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"serve needs {', '.join(missing)}: pip install 'unetzoo[serve]'")
    from ..serve.models import ServeOptions
    from ..serve.runner import serve

    for flag, value, low in (("--port", args.port, 1), ("--max-pixels", args.max_pixels, 1),
                             ("--max-queue", args.max_queue, 1),
                             ("--max-request-mb", args.max_request_mb, 0.001),
                             ("--batch-wait-ms", args.batch_wait_ms, 0)):
        if value < low or (flag == "--port" and value > 65535):
            raise ConfigError(f"{flag} must be {'in 1..65535' if flag == '--port' else f'>= {low}'}"
                              f", got {value}")
    if args.max_batch is not None and args.max_batch < 1:
        raise ConfigError(f"--max-batch must be >= 1, got {args.max_batch}")
    options = ServeOptions(inference_options(args),
                           max_body_bytes=int(args.max_request_mb * 1024 * 1024),
                           max_pixels=args.max_pixels, max_queue=args.max_queue,
                           max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms)
    serve(args.model, args.host, args.port, options, access_log=args.access_log)
