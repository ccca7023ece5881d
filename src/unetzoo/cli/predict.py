"""`unetzoo predict`: masks for new images at their original sizes."""

from __future__ import annotations

import argparse
import logging

from .common import (
    add_inference_arguments,
    add_out_argument,
    add_trained_model_argument,
    inference_options,
    trained_model,
)

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="predict masks for images",
                            description="Writes one mask per image: binary 0/255 PNG, "
                                        "multiclass palette PNG of class indices, multilabel "
                                        "one folder per class. Inputs whose names differ only "
                                        "in extension or case get distinct output names. "
                                        "Under torchrun the inputs are shared out among the "
                                        "processes.")
    add_trained_model_argument(parser, ", which alone is enough")
    parser.add_argument("--input", required=True, metavar="FILE|DIR", help="image or folder")
    add_out_argument(parser, "output folder", required=True)
    parser.add_argument("--save-attention", action="store_true",
                        help="also write attention maps as heat maps (gated models; tiled and "
                             "blended like the masks; runs the torch backend)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--skip-existing", action="store_true",
                        help="skip images whose outputs are all there: finish an interrupted "
                             "run (each output is written whole or not at all)")
    parser.add_argument("--recursive", action="store_true",
                        help="also predict the images in sub-folders (mirrored in --output)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first image that cannot be read or predicted "
                             "(default: name it, predict the others, fail at the end)")
    add_inference_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..engine.inference.predict import predict_paths

    result = predict_paths(trained_model(args.model), args.input, args.out,
                           inference_options(args), save_attention=args.save_attention,
                           overwrite=args.overwrite, progress=args.progress,
                           recursive=args.recursive, strict=args.strict,
                           skip_existing=args.skip_existing)
    if result.is_main:
        done = f", {result.skipped_existing} done before" if result.skipped_existing else ""
        log.info(f"{result.images} image(s) -> {args.out} ({result.files} files{done}, "
                 f"{result.seconds:.1f} s)")
