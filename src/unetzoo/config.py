"""Typed run configuration: one declaration per option gives its flag, YAML key, type,
default, choices, bounds, help and errors.

Every `TrainConfig` field is a flag (`img_size` -> `--img-size`) and a YAML key (dashes or
underscores). Precedence: defaults, then the YAML file given with `--config`, then flags.
Values are checked and converted by pydantic (a model generated from the fields), the same
way whether they come from a flag (text), a YAML file or the Python API, so `1e-3`, `1_000`,
`.5` and `+1` are numbers everywhere and `null` leaves an optional value unset. A wrong
value is one `ConfigError` line naming the option (and the YAML file it came from).

The options are declared in groups, one per part of the work that reads them
(`DataOptions`, `ModelOptions`, `OptimOptions`, `RunOptions`, `RuntimeOptions`);
`TrainConfig` inherits them all, so it stays one flat set of options (`config.lr`, flat YAML
and checkpoints) while a layer that reads one part takes that group (`config.part(...)`).

Adding an option is one line: a field with `option(default, help, ...)` in its group; `train`
gets the flag, YAML the key, checkpoints the value. Checks that involve several options go
in the group's `check` (or `TrainConfig.check` across groups).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic
import yaml

from .data.cache import CACHE_MODES
from .data.transforms import AUGMENT_LEVELS, NORMALIZATIONS, RESIZE_MODES
from .errors import ConfigError
from .instances.targets import DEFAULT_REPRESENTATION, REPRESENTATIONS
from .losses import build_loss
from .models.registry import resolve_kwargs
from .runtime import PRECISIONS, Runtime
from .schedules import OPTIMIZERS, SCHEDULES
from .task import TASKS


def option(default: Any, help: str, *, aliases: tuple[str, ...] = (), choices: Any = None,
           metavar: str | None = None, factory: Any = None, ge: float | None = None,
           gt: float | None = None, lt: float | None = None, command_line: bool = True
           ) -> Any:
    """A config field: its default, command-line help, aliases, choices and bounds.

    Args:
        default: the value when neither YAML nor a flag sets it (`factory` for a mutable one).
        help: the flag's help text.
        aliases: further flag spellings, e.g. `("--epochs",)`.
        choices: the accepted values (checked, and listed in the help).
        metavar: the flag's value name in the help.
        ge, gt, lt: bounds of a number: >= ge, > gt, < lt (None values always pass).
        command_line: False for an option that only YAML and the API set (no flag).
    """
    meta = {"help": help, "aliases": aliases, "choices": choices, "metavar": metavar,
            "command_line": command_line,
            "bounds": {k: v for k, v in (("ge", ge), ("gt", gt), ("lt", lt)) if v is not None}}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# "auto": dice, or for the instance task the loss; "map": the DSB mean AP 0.5:0.95 and "ap50":
# AP at IoU 0.5 of the objects (instance task)
MONITORS = ("auto", "dice", "iou", "mdice", "miou", "loss", "map", "ap50")
INSTANCE_MONITORS = ("map", "ap50")
# test-time augmentation (engine/inference/tta.py): none, the 4 flips, the 8 symmetries
TTA_MODES: tuple[str, ...] = ("none", "flip", "flip-rot90")
NAN_POLICIES = ("stop", "skip")
LOGGERS = ("tensorboard", "none")


_O = TypeVar("_O", bound="Options")
_G = TypeVar("_G", bound="Options")


class Options:
    """What every group of options shares: checking, a flat dict, a part as its own type.

    A group is a dataclass of `option(...)` fields; `TrainConfig` inherits every group, so
    its fields (flags, YAML keys, checkpoint keys) stay flat: `config.lr`, `lr: 1e-3`.
    """

    def validate(self: _O) -> _O:
        """Check every value (types, choices, bounds) and the options that go together.

        Returns:
            self, with values converted to their declared types.

        Raises:
            ConfigError: naming the option, for the first value that is wrong.
        """
        for name, value in check_values(self.to_dict(), type(self)).items():
            setattr(self, name, value)
        self.check()
        return self

    def check(self) -> None:
        """Checks that involve several options of this group (after each value is checked).

        Raises:
            ConfigError: naming the options that do not go together.
        """

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (what config.yaml and checkpoints store)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def part(self, group: type[_G]) -> _G:
        """The options of `group` (e.g. `RuntimeOptions`) as an instance of it: what a layer
        that reads only that part takes. Values are shared, not copied.

        Raises:
            TypeError: `group` is not one of this config's groups.
        """
        if not isinstance(self, group):
            raise TypeError(f"{group.__name__} is not a part of {type(self).__name__}")
        return group(**{f.name: getattr(self, f.name) for f in fields(group)})  # type: ignore[arg-type]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names of this group (or config), in declaration order."""
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]


@dataclass
class DataOptions(Options):
    """Which images and masks, how they are read, split, sampled, augmented and loaded
    (`data.prepare.prepare_data` and the training datasets)."""

    dataset: str | None = option(None, "dataset folder (images/ + masks/, or the CSV's root)",
                                 metavar="DIR")
    csvfile: str | None = option(None, "CSV split (image,mask,split) relative to the dataset "
                                 "(without one, train makes a seeded train/val/test split and "
                                 "keeps it in the run folder)", metavar="F")
    task: str | None = option(None, "binary, multiclass, multilabel or instance (objects: "
                              "instance label images; default: inferred from the masks)",
                              choices=TASKS)
    representation: str | None = option(None, "--task instance: what the network learns from "
                                        "the label images (default: "
                                        f"{DEFAULT_REPRESENTATION}, chosen by measurement: "
                                        "docs/instances.md)", choices=tuple(REPRESENTATIONS))
    instances_from_components: bool = option(False, "--task instance: read binary masks' "
                                             "connected components as objects (touching "
                                             "objects merge into one)")
    num_classes: int | None = option(None, "output channels (default: inferred from the masks)",
                                     ge=1)
    class_names: list[str] | None = option(None, "class names, in class-index order")
    img_size: int = option(256, "training patch size in pixels (square)", ge=1)
    resize_mode: str = option("crop", "crop: random patches, whole-image tiled inference; "
                              "resize: resize every image to img-size", choices=RESIZE_MODES)
    augment: str = option("default", "augmentation strength", choices=AUGMENT_LEVELS)
    normalize: str = option("dataset", "dataset: the training images' mean and std per "
                            "channel; image: each image standardised by its own; percentile: "
                            "each image clipped to its 0.5-99.5th percentiles, then "
                            "standardised", choices=NORMALIZATIONS)
    val_fraction: float = option(0.1, "fraction carved from train for validation when the "
                                 "split has no val rows", ge=0, lt=1)
    workers: int = option(-1, "data-loading processes (-1: one per two cores, at most 4)",
                          ge=-1)
    class_map: str | None = option(None, "class map YAML: name and stored index or colour per "
                                   "class, ignore values (default: classes.yaml in the dataset "
                                   "folder when present)", metavar="YAML")
    ignore_index: int | None = option(None, "stored mask value of pixels to ignore (default: "
                                      "255 in index masks when it shares masks with other "
                                      "labels, none in binary masks)", ge=0, lt=65536,
                                      metavar="VALUE")
    instances: bool = option(False, "masks are instance label images (one integer per "
                             "object): train a binary model, foreground = any label")
    allow_duplicates: bool = option(False, "accept an image listed twice in one split (it "
                                    "then counts twice); an image in two splits is always "
                                    "refused")
    allow_copies: bool = option(False, "accept test images that are byte copies of train or "
                                "val images (e.g. repeated blank tiles)")
    add_new: str | None = option(None, "with --resume: images added to the dataset since the "
                                 "run started join this split (train only; default: they are "
                                 "named and left out, the run keeps its split)",
                                 choices=("train",))
    mask_threshold: float | None = option(None, "binary masks: stored values above this are "
                                          "foreground (e.g. 0.5 for probability maps; default: "
                                          "decided from the masks)", metavar="T")
    cache: str = option("auto", "decode (and resize) each image once: memory, disk (a cache "
                        "folder keyed by file content, $UNETZOO_CACHE_DIR or ~/.cache/unetzoo), "
                        "off, or auto (memory when it fits)", choices=CACHE_MODES)
    full_check: bool = option(False, "read every image and mask before training (default: "
                              "headers of up to 20,000 pairs and the pixels of 256 spread "
                              "ones; the rest is checked as it is loaded: unreadable training "
                              "samples skipped and logged, mask values the reading cannot hold "
                              "stop training)")
    fg_oversample: float = option(0.0, "fraction of training patches centred on a "
                                  "foreground pixel (crop mode; sparse objects), 0..1", ge=0)

    def check(self) -> None:
        if self.fg_oversample > 1:
            raise ConfigError(f"--fg-oversample must be <= 1, got {self.fg_oversample}")


@dataclass
class ModelOptions(Options):
    """Which architecture, its arguments, and the weights it starts from."""

    model: str = option("unet", "architecture to train: a registered model name (see "
                        "`unetzoo models`)", aliases=("--arch",), metavar="NAME")
    preset: str | None = option(None, "model preset, e.g. reference or tiny")
    model_args: dict[str, Any] = option(None, "model keyword arguments as KEY=VALUE",
                                        factory=dict, metavar="KEY=VALUE")
    init: str | None = option(None, "start from the weights of a pretrained model (nuclei), a "
                              "model folder or a checkpoint, where names and shapes match (a "
                              "head for other classes starts anew); its architecture and "
                              "normalisation are used unless --model is given",
                              metavar="NAME|DIR|CKPT")

    def check(self) -> None:
        resolve_kwargs(self.model, self.preset, **self.model_args)


@dataclass
class OptimOptions(Options):
    """What is minimised and how: loss, optimizer, schedule, batch, steps, averaging, and the
    time budget with the plan its recipe came from."""

    loss: str = option("ce+dice", "bce, ce, dice, focal, tversky, lovasz, or a sum such as "
                                  "bce+dice")
    batch: int = option(8, "samples per forward pass (one optimizer step of each process)",
                        aliases=("--batch-size",),
                        ge=1)
    lr: float = option(1e-3, "peak learning rate", aliases=("--learning-rate",), gt=0)
    epoch: int = option(100, "number of epochs", aliases=("--epochs",), ge=1)
    steps_per_epoch: int | None = option(None, "optimizer steps per epoch (default: one pass "
                                         "over the training images)", ge=1)
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = option(1e-4, "weight decay", ge=0)
    momentum: float = option(0.9, "SGD momentum (Nesterov)", ge=0)
    schedule: str = option("cosine", "learning-rate schedule", choices=SCHEDULES)
    warmup: int = option(0, "linear warm-up epochs", ge=0)
    step_size: int = option(30, "epochs per decay step (step schedule)", ge=1)
    gamma: float = option(0.5, "decay factor per step (step schedule)", gt=0)
    poly_power: float = option(0.9, "exponent of the poly schedule", gt=0)
    ds_weights: list[float] | None = option(None, "loss weight per deep-supervision output "
                                            "(default: the model's own)")
    grad_clip: float | None = option(None, "clip the gradient norm to this value", gt=0)
    ema: float | None = option(None, "keep an exponential moving average of the weights with "
                               "this decay (e.g. 0.999); validation, best.pt and inference use "
                               "it", gt=0, lt=1)
    time_budget: float | None = option(None, "train for this many minutes (wall clock, "
                                       "validation included; then the test evaluation): the "
                                       "schedule is laid over the budget from measured step "
                                       "times, and recipe options not given come from "
                                       "`unetzoo plan`", metavar="MINUTES", gt=0)
    plan: dict[str, Any] | None = option(None, "the plan the recipe came from (written by "
                                         "`unetzoo plan`; recorded in checkpoints)",
                                         command_line=False)

    def check(self) -> None:
        if self.warmup >= self.epoch:
            raise ConfigError(f"--warmup must be in [0, epoch), got {self.warmup}")


@dataclass
class RunOptions(Options):
    """The run folder and what happens around the steps: resume, seed, validation, the best
    checkpoint, the test evaluation, the report, checkpointing, loggers."""

    out: str | None = option(None, "run folder (default: runs/<model>-<date-time>)",
                             aliases=("--output",), metavar="DIR")
    resume: str | None = option(None, "resume from a run folder (its newest valid checkpoint) "
                                "or a checkpoint file; auto: continue the run in --out if it "
                                "has one, else start it")
    overwrite: bool = option(False, "allow replacing an existing run folder's contents")
    seed: int = option(0, "random seed (CPU runs are reproducible)")
    val_every: int = option(1, "validate every N epochs", ge=1)
    monitor: str = option("auto", "validation metric that selects the best checkpoint: auto "
                          "(dice; for --task instance the loss, since object scores depend "
                          "on thresholds chosen after training), loss (the lowest "
                          "validation loss), map / ap50 (instance mean AP 0.5:0.95 / AP at "
                          "IoU 0.5, with the default thresholds)", choices=MONITORS)
    test: bool = option(True, "evaluate the best checkpoint on the test split after training")
    test_tta: str = option("none", "test-time augmentation of the final test evaluation",
                           choices=TTA_MODES)
    report: bool = option(True, "write report.html into the run folder at the end (curves, "
                          "metrics, worst and best images; see `unetzoo report`)")
    checkpoint_every: int | None = option(None, "also write models/epoch_last.pt every N "
                                          "optimizer steps (default: after each epoch)", ge=1)
    nan_policy: str = option("stop", "on a non-finite loss: stop (the last good checkpoint is "
                             "kept) or skip the batch and count it", choices=NAN_POLICIES)
    logger: str = option("tensorboard", "training logs: tensorboard (event files in "
                         "RUN/tensorboard; `tensorboard --logdir RUN`) or none",
                         choices=LOGGERS)
    log_images_every: int = option(5, "log validation overlays every N epochs (0: never)",
                                   ge=0)
    mlflow: str | None = option(None, "also log to this MLflow tracking store: the config as "
                                "parameters, metrics, overlays, the best checkpoint "
                                "(sqlite:///mlflow.db, a folder, or a server URL)",
                                metavar="URI")
    mlflow_experiment: str = option("unetzoo", "MLflow experiment name")

    def check(self) -> None:
        if self.resume == "auto" and not self.out:
            raise ConfigError("--resume auto needs --out: the run folder to continue, or to "
                              "start when it holds no checkpoint yet")


@dataclass
class RuntimeOptions(Options):
    """Where and how the model runs on this machine: the runtime flags of train, eval,
    predict, bench and demo (`RUNTIME_OPTIONS`). They change speed, not what is learnt
    (precision aside)."""

    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto (bf16 where the hardware has it), fp32, bf16, fp16",
                            choices=PRECISIONS)
    channels_last: bool | None = option(None, "NHWC memory format (default: on with bf16 "
                                        "and on GPUs)")
    compile: bool = option(False, "torch.compile the model (pays off on long runs)")
    threads: int | None = option(None, "CPU threads for PyTorch", ge=1)
    progress: bool = option(True, "show progress bars")
    sync_bn: bool = option(False, "SyncBatchNorm: batch-norm statistics over all processes of "
                           "a distributed CUDA run")

    def runtime(self, backend: str = "torch", device: str | None = None) -> Runtime:
        """The resolved `Runtime` (device, precision, memory format, threads, compile) for
        `backend` (`auto`: decided when a model is opened).

        Args:
            backend: torch, onnxruntime, openvino or auto.
            device: overrides `self.device` (e.g. a distributed process's own GPU).

        Raises:
            ConfigError: a device that is not there, a precision the device or backend
                cannot run, torch options with an exported-graph backend.
        """
        return Runtime.resolve(device or self.device, self.precision, self.channels_last,
                               self.threads, compile=self.compile, backend=backend)


GROUPS: tuple[type[Options], ...] = (DataOptions, ModelOptions, OptimOptions, RunOptions,
                                     RuntimeOptions)


# The bases are listed in reverse: a dataclass takes its bases' fields from the last base to
# the first, so the fields (flags in --help, keys of config.yaml) read data, model,
# optimisation, run, runtime.
@dataclass
class TrainConfig(RuntimeOptions, RunOptions, OptimOptions, ModelOptions, DataOptions):
    """Everything a training run needs; saved in every checkpoint.

    One flat set of options (`config.lr`; flat YAML and checkpoint dicts) declared in the
    groups each layer reads: `DataOptions`, `ModelOptions`, `OptimOptions`, `RunOptions`,
    `RuntimeOptions`. `config.part(RuntimeOptions)` is one group as its own instance; a
    function typed with a group also takes the whole config (it is an instance of each).
    """

    def check(self) -> None:
        """Each group's checks, then those across groups (the loss for the task, the
        instance options)."""
        for group in GROUPS:
            group.check(self)
        if self.task == "instance":
            return  # the representation's channel table names each channel's losses
        build_loss(self.loss, "multiclass" if self.task == "multiclass" else "binary")
        if self.representation is not None or self.instances_from_components:
            flag_ = "--representation" if self.representation else \
                "--instances-from-components"
            raise ConfigError(f"{flag_} applies to --task instance")
        if self.monitor in INSTANCE_MONITORS and self.task is not None:
            raise ConfigError(f"--monitor {self.monitor} scores objects: it needs --task "
                              "instance")


# Runtime options every command that runs a model takes (one declaration: RuntimeOptions').
RUNTIME_OPTIONS: tuple[str, ...] = RuntimeOptions.names()


def flag(name: str) -> str:
    """The flag spelling of an option name: `img_size` -> `img-size`."""
    return name.replace("_", "-")


# -- YAML read with YAML 1.2 / Python number rules -------------------------------------------

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with numbers read as Python reads them (and YAML 1.2 does):
    `1e-3` and `1E5` are floats (strings in YAML 1.1), `010` is ten (not octal eight),
    `1:30` is text (not 90); `1_000`, `.5`, `+1`, `.inf` work as before."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9][0-9_]*$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT, re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]+(?:[eE][-+]?[0-9]+)?"
                       r"|[-+]?[0-9][0-9_]*\.|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))


def _number(kind: type) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        text = loader.construct_scalar(node)
        special = text.lower().lstrip("+")
        if kind is float and special in (".inf", "-.inf", ".nan"):
            return float(special.replace(".", ""))
        try:
            return kind(text)
        except ValueError:
            return text  # e.g. 1__0: left as text, reported by the type check
    return construct


_Loader.add_constructor(_INT, _number(int))
_Loader.add_constructor(_FLOAT, _number(float))


def parse_yaml(text: str) -> Any:
    """YAML text -> Python values, numbers read as Python and YAML 1.2 read them."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: plain values only


def load_yaml(path: Path | str) -> dict[str, Any]:
    """A YAML mapping of options, keys with dashes normalised to underscores.

    Raises:
        ConfigError: the file is missing, not YAML, or not a mapping (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {' '.join(str(exc).split())}", path) from exc
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of option: value", path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_key_values(items: list[str]) -> dict[str, Any]:
    """`["a=1", "b=group", "c=1e-3"]` -> `{"a": 1, "b": "group", "c": 0.001}` (YAML values).

    Raises:
        ConfigError: an item is not KEY=VALUE, or its value is not YAML (e.g. `widths=[8,`
            when the shell split `widths=[8, 16]` at the space).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        try:
            out[key.strip().replace("-", "_")] = parse_yaml(value)
        except yaml.YAMLError:
            raise ConfigError(f"cannot read the value of {item!r} as YAML; a value with "
                              f"spaces needs quotes, e.g. \"widths=[8, 16]\"") from None
    return out


# -- checking values: a pydantic model generated from the dataclass fields -------------------

def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(element type, is_list) of a field annotation such as `list[float] | None`."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def _checked_type(annotation: Any, meta: typing.Mapping[str, Any]) -> Any:
    """The field's annotation with its choices as a Literal and its bounds as constraints."""
    base, is_list = _base_type(annotation)
    constraints: list[Any] = []
    if base in (int, float):
        constraints.append(pydantic.BeforeValidator(_no_bool))
    if meta.get("choices"):
        base = Literal[tuple(meta["choices"])]  # type: ignore[misc]
    if meta.get("bounds"):
        constraints.append(pydantic.Field(**meta["bounds"]))
    if constraints:
        base = typing.Annotated[(base, *constraints)]  # type: ignore[misc]
    checked = list[base] if is_list else base  # type: ignore[valid-type]
    optional = type(None) in typing.get_args(annotation)
    return checked | None if optional else checked


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # yes/no/true/false where a number belongs
        raise ValueError("a number, not true/false")
    return value


@cache
def _validator(cls: type) -> pydantic.TypeAdapter:
    hints = typing.get_type_hints(cls)
    definitions = {
        f.name: (_checked_type(hints[f.name], f.metadata), pydantic.Field(default=None))
        for f in fields(cls)}
    model = pydantic.create_model(f"{cls.__name__}Values", __config__=pydantic.ConfigDict(
        extra="forbid", allow_inf_nan=False), **definitions)
    return pydantic.TypeAdapter(model)


def _describe(annotation: Any, meta: typing.Mapping[str, Any]) -> str:
    base, is_list = _base_type(annotation)
    if meta.get("choices"):
        kind = f"one of {', '.join(meta['choices'])}"
    elif typing.get_origin(base) is dict:
        kind = "a mapping of KEY: VALUE"
    else:
        kind = {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
            base, getattr(base, "__name__", str(base)))
    return f"a list of {kind.removeprefix('an ').removeprefix('a ')}s" if is_list else kind


def _message(error: Any, cls: type, sources: typing.Mapping[str, str]) -> tuple[str, str | None]:
    """One line for a pydantic error, naming the option; and the YAML file it came from."""
    name = str(error["loc"][0]) if error["loc"] else ""
    where = sources.get(name)
    label = name if where else f"--{flag(name)}"
    value, kind, ctx = error.get("input"), error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return f"unknown option {name}", where
    declared = {f.name: f for f in fields(cls)}[name]
    hints = typing.get_type_hints(cls)
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
              "less_than": ("<", "lt")}
    if kind in bounds:
        sign, key = bounds[kind]
        return f"{label} must be {sign} {ctx.get(key)}, got {value}", where
    return f"{label} expects {_describe(hints[name], declared.metadata)}, got {value!r}", where


def check_values(values: typing.Mapping[str, Any], cls: type = TrainConfig,
                 sources: typing.Mapping[str, str] | None = None) -> dict[str, Any]:
    """`values` converted to the declared types of `cls`'s fields and checked.

    Args:
        values: option name -> value, from flags (text), YAML or Python.
        cls: the config dataclass declaring the options.
        sources: option name -> YAML file it came from (named in errors).

    Returns:
        The same keys with converted values (e.g. "1e-3" -> 0.001 for a float option).

    Raises:
        ConfigError: one line naming the (first) wrong option, or every unknown one.
    """
    sources = sources or {}
    try:
        checked = _validator(cls).validate_python(dict(values))
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
        if unknown:
            files = {sources.get(n) for n in unknown} - {None}
            raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(unknown)}", next(iter(files), None)) from None
        message, where = _message(errors[0], cls, sources)
        raise ConfigError(message, where) from None
    return {name: getattr(checked, name) for name in values}


def build_config(values: dict[str, Any], yaml_path: Path | str | None = None,
                 cls: type = TrainConfig) -> Any:
    """A validated config from defaults, then the YAML file, then `values` (e.g. flags).

    Args:
        values: option -> value; text values (from flags) are converted like YAML ones,
            `model_args` may be a list of KEY=VALUE items.
        yaml_path: an optional YAML file of options.
        cls: the config dataclass.

    Returns:
        An instance of `cls`, validated (`cls.validate()` where it has one).

    Raises:
        ConfigError: one line naming the option (and file) that is wrong.
    """
    from_yaml = load_yaml(yaml_path) if yaml_path else {}
    merged = {**from_yaml, **values}
    if isinstance(merged.get("model_args"), list):
        merged["model_args"] = parse_key_values(merged["model_args"])
    sources = {k: str(yaml_path) for k in from_yaml if k not in values}
    config = cls(**check_values(merged, cls, sources))
    return config.validate() if hasattr(config, "validate") else config


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                         cls: type = TrainConfig, only: tuple[str, ...] | None = None,
                         defaults: bool = False) -> None:
    """Add one flag per dataclass field (all, or the names in `only`).

    Flags take text that `check_values` converts, so a flag and a YAML key read a value the
    same way. Unset flags stay absent from the namespace unless `defaults` is true.
    """
    for f in fields(cls):
        if (only is not None and f.name not in only) or not f.metadata.get("command_line", True):
            continue
        meta = f.metadata
        names = [f"--{flag(f.name)}", *meta.get("aliases", ())]
        default: Any = argparse.SUPPRESS
        if defaults:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        kwargs: dict[str, Any] = {"dest": f.name, "default": default,
                                  "help": meta.get("help", "")}
        base, is_list = _base_type(typing.get_type_hints(cls)[f.name])
        choices = meta.get("choices")
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = "{" + ",".join(choices) + "}" if choices else meta.get("metavar")
            if is_list or typing.get_origin(base) is dict:
                kwargs["nargs"] = "+"
        parser.add_argument(*names, **kwargs)
