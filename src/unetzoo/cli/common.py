"""Flags shared by several sub-commands, each declared once.

One meaning per flag name across commands:
- `--model`: which model. `train` takes an architecture (a registered name); `eval`,
  `predict` and `export` take a trained model (a checkpoint or an exported file); `bench`
  takes either.
- `--out` (alias `--output`): what the command writes, a folder or a file.
- `--img-size`: image height and width in pixels (`--size` is a deprecated alias).
- `--batch`: samples (images or tiles) per forward pass.
- `--warmup`: warm-up epochs of training; bench's untimed passes are `--warmup-passes`.
- `--test` / `--no-test`: evaluate on the test split after training; export's check of a
  package by bioimage.io's tools is `--no-package-test`.
- `--instances`: the masks are instance label images; convert's writing of instance label
  maps is `--write-instances`.
- the dataset: a positional DIR or `--dataset DIR` in every command that reads one.
- `--threshold`: the probability above which a pixel is foreground (binary, multilabel).
- runtime flags (`--device`, `--precision`, `--channels-last`, `--threads`, `--progress`,
  `--compile`) are `RuntimeOptions` fields (a part of `TrainConfig`): one declaration, the
  same help and checks everywhere.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artefacts import MODEL_REFERENCES
from ..config import (
    RUNTIME_OPTIONS,
    TTA_MODES,
    RuntimeOptions,
    add_config_arguments,
    build_config,
)
from ..errors import ConfigError
from ..runtime import BACKENDS

log = logging.getLogger("unetzoo")

TRAINED_MODEL = MODEL_REFERENCES  # one text, in artefacts/__init__.py


class DeprecatedAlias(argparse.Action):
    """Stores like `store` (or, with `nargs=0`, like `store_const`: `const`) and prints one
    line when a deprecated spelling is used."""

    def __init__(self, option_strings: Sequence[str], dest: str, deprecated: Sequence[str] = (),
                 **kwargs: Any) -> None:
        self.deprecated = tuple(deprecated)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in self.deprecated:
            print(f"{parser.prog}: {option_string} is deprecated; use {self.option_strings[0]}",
                  file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_out_argument(parser: argparse.ArgumentParser, help: str, required: bool = False,
                     metavar: str = "DIR") -> None:
    """`--out` (alias `--output`): where the command writes."""
    parser.add_argument("--out", "--output", dest="out", required=required, metavar=metavar,
                        help=help)


DATASET_POSITIONAL = "dataset_positional"


def add_dataset_argument(parser: argparse.ArgumentParser, help: str = "dataset folder",
                         required: bool = True, flag: bool = True) -> None:
    """The dataset as a positional DIR or as `--dataset DIR` (`settle_dataset` joins them).

    Args:
        help: what the folder is.
        required: the command cannot run without one.
        flag: also add `--dataset` (False where a `TrainConfig` field already declares it).
    """
    parser.add_argument(DATASET_POSITIONAL, nargs="?", default=None, metavar="DIR",
                        help=f"{help} (or --dataset DIR)")
    if flag:
        parser.add_argument("--dataset", metavar="DIR", default=None,
                            help=f"{help} (or as the positional DIR)")
    parser.set_defaults(dataset_required=required)


def settle_dataset(args: argparse.Namespace) -> None:
    """`args.dataset` from the positional DIR or `--dataset` (left unset when neither is
    given and the command does not need one, so a YAML file may still give it).

    Raises:
        ConfigError: both are given and name different folders; neither is given where the
            command needs one.
    """
    if not hasattr(args, DATASET_POSITIONAL):
        return
    positional = vars(args).pop(DATASET_POSITIONAL)
    given = getattr(args, "dataset", None)
    if positional is not None and given is not None and \
            Path(positional).resolve() != Path(given).resolve():
        raise ConfigError(f"the dataset is given twice, as {positional} and as --dataset "
                          f"{given}; give it once")
    value = given if given is not None else positional
    if value is None and args.dataset_required:
        raise ConfigError("no dataset given: name its folder, as DIR or with --dataset DIR")
    if value is not None:
        args.dataset = value


def add_img_size_argument(parser: argparse.ArgumentParser, help: str,
                          default: int | None = None) -> None:
    """`--img-size` in pixels (square); `--size` is its deprecated spelling."""
    parser.add_argument("--img-size", "--size", dest="img_size", type=int, default=default,
                        metavar="PIXELS", action=DeprecatedAlias, deprecated=("--size",),
                        help=help)


def add_trained_model_argument(parser: argparse.ArgumentParser, extra: str = "") -> None:
    """`--model` for commands that run trained weights."""
    parser.add_argument("--model", required=True, metavar="CKPT|FILE|DIR|NAME",
                        help=f"the trained model: {TRAINED_MODEL}{extra}")


def trained_model(value: str) -> Any:
    """The trained model `--model` names, identified by the one door
    (`unetzoo.artefacts.references.resolve_model`: a run folder stands for its
    `models/best.pt`, said in one line).

    Raises:
        ConfigError: `value` names an architecture rather than a trained model.
        CheckpointError: nothing of that name; a run folder without `models/best.pt`.
    """
    from ..artefacts.references import resolve_model

    return resolve_model(value)


# The runtime options a command that runs a model takes: all of `RuntimeOptions` but
# `compile` (with --backend, where the command has one) and `sync_bn` (processes training
# together: train only).
MODEL_RUNTIME_OPTIONS: tuple[str, ...] = tuple(
    name for name in RUNTIME_OPTIONS if name not in ("compile", "sync_bn"))


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --precision, --channels-last, --threads, --progress (`RuntimeOptions`')."""
    add_config_arguments(parser.add_argument_group("runtime"), RuntimeOptions,
                         only=MODEL_RUNTIME_OPTIONS, defaults=True)


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", default="auto", choices=BACKENDS,
                       help="auto (default): OpenVINO on CPUs where it is installed and the "
                            "model converts (converted once, cached next to the checkpoint), "
                            "torch otherwise; an exported file runs in its format's backend. "
                            "torch, onnxruntime or openvino force one")
    add_config_arguments(group, RuntimeOptions, only=("compile",), defaults=True)


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Runtime, backend, tiling, threshold, test-time augmentation and post-processing
    flags (eval and predict: one declaration)."""
    add_runtime_arguments(parser)
    add_backend_arguments(parser)
    group = parser.add_argument_group("inference")
    group.add_argument("--batch", type=int, default=4,
                       help="samples (images or tiles) per forward pass")
    group.add_argument("--threshold", type=float, default=0.5, metavar="P",
                       help="binary and multilabel: a pixel is foreground where its "
                            "probability is above P, in (0, 1) (default 0.5); instance: "
                            "another value replaces the foreground threshold chosen on "
                            "validation")
    group.add_argument("--overlap", type=float, default=0.25,
                       help="overlap of sliding-window tiles (0..1)")
    group.add_argument("--tta", default="none", choices=TTA_MODES,
                       help="test-time augmentation averaged as probabilities: flip (4 "
                            "flips) or flip-rot90 (also 90-degree rotations, 8 in all)")
    group.add_argument("--min-size", type=int, default=0, metavar="PIXELS",
                       help="remove predicted components smaller than this")
    group.add_argument("--fill-holes", action="store_true",
                       help="fill background regions enclosed by a class")
    group.add_argument("--prune-depth", type=int, default=None, metavar="K",
                       help="run only UNet++ L^K of a deep-supervised UNet++ (faster, "
                            "see benchmarks/unetpp_pruning.py)")


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """The `RuntimeOptions` the flags give (checked as a config's are; those a command does
    not take keep their defaults).

    Raises:
        ConfigError: a value of the wrong type or out of its choices, naming the flag.
    """
    return build_config({k: getattr(args, k) for k in RUNTIME_OPTIONS if hasattr(args, k)},
                        cls=RuntimeOptions)


def runtime_from(args: argparse.Namespace) -> Any:
    """The runtime the flags ask for: device, precision, memory format, threads and the
    backend (`auto` unless --backend says otherwise; commands without --backend run torch).
    Which backend then runs a model, and why, is `engine.inference.opening.decide_backend`'s
    one rule (an exported file runs in its format's backend).

    Raises:
        ConfigError: see `runtime_options` and `RuntimeOptions.runtime`.
    """
    return runtime_options(args).runtime(backend=getattr(args, "backend", "torch"))


def inference_options(args: argparse.Namespace) -> Any:
    """The `InferenceOptions` of the runtime, backend, tiling, threshold, TTA and
    post-processing flags (`add_inference_arguments`).

    Raises:
        ConfigError: --threshold outside (0, 1); see `runtime_from`.
    """
    from ..engine.inference.postprocess import PostProcessing
    from ..engine.inference.predictor import InferenceOptions

    if not 0 < args.threshold < 1:  # NaN too
        raise ConfigError(f"--threshold must be in (0, 1), got {args.threshold}")
    return InferenceOptions(runtime_from(args), batch_size=args.batch,
                            overlap=args.overlap, threshold=args.threshold,
                            tta=args.tta, postprocess=PostProcessing(args.min_size,
                                                                     args.fill_holes),
                            prune_depth=args.prune_depth)
