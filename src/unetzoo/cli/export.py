"""`unetzoo export`: a checkpoint as ONNX, OpenVINO IR or TorchScript (parity-checked), a
BioImage Model Zoo package, or a model folder (config.json + model.safetensors)."""

from __future__ import annotations

import argparse
import logging

from .common import (
    DeprecatedAlias,
    add_img_size_argument,
    add_out_argument,
    add_trained_model_argument,
    trained_model,
)

log = logging.getLogger("unetzoo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export", help="export a checkpoint to ONNX, OpenVINO, TorchScript, a bioimage.io "
                       "package or a model folder",
        description="Writes a graph with dynamic batch, height and width (fixed height and "
                    "width for models whose graph depends on the size, e.g. sparse_unet) "
                    "carrying the checkpoint's task, classes and preprocessing, after checking "
                    "it against eager PyTorch (float32, max logit difference <= 1e-4 of "
                    "max(1, max |logit|)). "
                    "`unetzoo predict --model FILE` then needs nothing else. bioimageio writes a "
                    "BioImage Model Zoo package (TorchScript + ONNX weights, test data, model "
                    "card) for Fiji/deepImageJ, QuPath, ilastik and napari, tested with "
                    "bioimageio.core; folder writes config.json + model.safetensors + "
                    "README.md.")
    add_trained_model_argument(parser, "; export takes the checkpoint, a model folder or a "
                                       "pretrained name")
    parser.add_argument("--format", required=True,
                        choices=("onnx", "openvino", "torchscript", "bioimageio", "folder"),
                        help="onnx (*.onnx), openvino (*.xml + *.bin), torchscript "
                             "(*.torchscript), bioimageio (*.zip) or folder (a directory)")
    add_out_argument(parser, "file or folder to write", required=True, metavar="PATH")
    add_img_size_argument(parser, "trace and check size (default: the checkpoint's patch "
                                  "size)")
    parser.add_argument("--prune-depth", type=int, default=None, metavar="K",
                        help="export only UNet++ L^K of a deep-supervised UNet++ (1..depth)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    int8 = parser.add_argument_group("INT8 (OpenVINO)")
    int8.add_argument("--int8", action="store_true",
                      help="quantise to INT8 (NNCF post-training quantisation) calibrated on "
                           "training images, after checking the validation Dice against the "
                           "float model (needs nncf)")
    int8.add_argument("--dataset", metavar="DIR",
                      help="images for calibration and the check (default: the run's)")
    int8.add_argument("--csvfile", metavar="F", help="CSV split of --dataset")
    int8.add_argument("--max-dice-drop", type=float, default=None, metavar="D",
                      help="largest allowed drop of the validation global Dice (default 0.01)")
    int8.add_argument("--accept-drop", action="store_true",
                      help="write the INT8 model even when Dice drops by more")
    int8.add_argument("--calibration-images", type=int, default=None, metavar="N",
                      help="calibration patches (default 300)")
    int8.add_argument("--no-progress", dest="progress", action="store_false",
                      help="hide the accuracy check's progress bars")
    share = parser.add_argument_group("bioimageio and folder")
    share.add_argument("--author", action="append", default=[], metavar="NAME",
                       help="an author (repeat for several; required for bioimageio)")
    share.add_argument("--license", metavar="SPDX",
                       help="licence of the weights, e.g. MIT or CC-BY-4.0 (required for "
                            "bioimageio)")
    share.add_argument("--cite", action="append", default=[], metavar="TEXT",
                       help="a reference with its DOI, arXiv id or URL (repeatable); the "
                            "architecture's paper is added")
    share.add_argument("--name", help="display name (default: model and classes)")
    share.add_argument("--description", help="one paragraph on what the model does")
    share.add_argument("--sample-image", metavar="FILE",
                       help="bioimageio: the image the test input is cropped from (default: "
                            "a test image of the run's dataset); its pixel type is the input's")
    share.add_argument("--no-package-test", "--no-test", dest="test", nargs=0, const=False,
                       default=True, action=DeprecatedAlias, deprecated=("--no-test",),
                       help="bioimageio: skip bioimageio.core's test of the package "
                            "(--no-test: deprecated spelling)")
    share.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"),
                       help="folder: storage type of the weights (they load as float32)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from ..artefacts.modelcard import CardInfo
    from ..engine.export.exporter import export_checkpoint

    card = dict(authors=args.author, license=args.license, cite=args.cite, name=args.name,
                description=args.description)
    share: dict = {}
    if args.format == "bioimageio":
        share = {**card, "sample_image": args.sample_image, "test": args.test}
    elif args.format == "folder":
        share = {"dtype": args.dtype, "card": CardInfo(
            title=args.name, description=args.description, authors=tuple(args.author),
            license=args.license, citations=tuple(args.cite))}
    result = export_checkpoint(trained_model(args.model), args.format, args.out,
                               args.img_size, args.overwrite, args.prune_depth, int8=args.int8,
                               dataset=args.dataset, csvfile=args.csvfile,
                               accept_drop=args.accept_drop, max_dice_drop=args.max_dice_drop,
                               calibration_images=args.calibration_images,
                               progress=args.progress, **share)
    if args.format in ("bioimageio", "folder"):
        log.info(f"{args.model} -> {result.path} ({args.format}; {result.note}, "
                 f"{result.seconds:.1f} s)")
        return
    shape = ("dynamic height and width" if result.input_size is None
             else f"fixed {result.input_size[0]} x {result.input_size[1]} inputs")
    kind = f"{args.format}, INT8" if args.int8 else args.format
    log.info(f"{args.model} -> {result.path} ({kind}, dynamic batch, {shape}; max logit "
             f"difference to eager PyTorch {result.max_abs_diff:.2g} of max(1, max |logit|)"
             f"{' before quantisation' if args.int8 else ''}, {result.seconds:.1f} s)")
