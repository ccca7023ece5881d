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
                                        "one folder per class; an instance model writes a "
                                        "16-bit label TIFF of its objects (and, on request, "
                                        "Fiji ROIs, QuPath GeoJSON, a table of objects). "
                                        "Inputs whose names differ only "
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
    objects = parser.add_argument_group("objects (instance models; a binary model's objects "
                                        "are its mask's connected components)")
    objects.add_argument("--masks", action="store_true",
                         help="an instance model: write its objects' foreground as a 0/255 "
                              "PNG instead of the 16-bit label TIFF")
    objects.add_argument("--rois", action="store_true",
                         help="also write each image's objects as an ImageJ / Fiji ROI set "
                              "(<name>_rois.zip: the ROI Manager opens it)")
    objects.add_argument("--geojson", action="store_true",
                         help="also write QuPath objects (<name>.geojson: File > Import "
                              "objects)")
    objects.add_argument("--table", action="store_true",
                         help="also write one row of measurements per object "
                              "(<name>_objects.csv: id, area, centroid, bounding box, shape, "
                              "mean intensity per channel; µm where the pixel size is known)")
    large = parser.add_argument_group("large images (whole-slide, tiled TIFF, OME-Zarr)")
    large.add_argument("--large-megapixels", type=float, default=64.0, metavar="MP",
                       help="predict an image of more million pixels than this region by "
                            "region, in memory bounded by bands of rows, when its format is "
                            "read a region at a time (TIFF, OME-Zarr, .npy) (default 64)")
    large.add_argument("--large-format", default="tiff", choices=("tiff", "ome-zarr"),
                       help="how those images' outputs are written, tile by tile: a tiled "
                            "BigTIFF <name>.tif with OME metadata (default), or "
                            "<name>.ome.zarr; the input's pixel size is kept")
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
                           skip_existing=args.skip_existing, masks=args.masks,
                           objects=[k for k in ("rois", "geojson", "table")
                                    if getattr(args, k)],
                           large_megapixels=args.large_megapixels,
                           large_format=args.large_format)
    if result.is_main:
        done = f", {result.skipped_existing} done before" if result.skipped_existing else ""
        log.info(f"{result.images} image(s) -> {args.out} ({result.files} files{done}, "
                 f"{result.seconds:.1f} s)")
