"""Typed run configuration: dataclasses <-> YAML <-> command-line flags, validated.

Every field is a flag (`img_size` -> `--img-size`) and a YAML key. Precedence: defaults,
then the YAML file given with `--config`, then flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .data.transforms import AUGMENT_LEVELS, RESIZE_MODES
from .engine.runtime import PRECISIONS
from .errors import ConfigError
from .losses import build_loss
from .models.registry import resolve_kwargs
from .task import TASKS


def option(default: Any, help: str, *, aliases: tuple[str, ...] = (), choices: Any = None,
           metavar: str | None = None, factory: Any = None) -> Any:
    """A config field with its command-line help, aliases and choices."""
    meta = {"help": help, "aliases": aliases, "choices": choices, "metavar": metavar}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "step", "poly", "constant")
MONITORS = ("dice", "iou", "mdice", "miou", "loss")
NAN_POLICIES = ("stop", "skip")
LOGGERS = ("tensorboard", "none")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in every checkpoint."""

    # data
    dataset: str | None = option(None, "dataset folder (images/ + masks/, or the CSV's root)",
                                 metavar="DIR")
    csvfile: str | None = option(None, "CSV split (image,mask,split) relative to the dataset; "
                                 "without one, a seeded train/val/test split is made and saved",
                                 metavar="F")
    task: str | None = option(None, "binary, multiclass or multilabel (default: inferred from "
                              "the masks)", choices=TASKS)
    num_classes: int | None = option(None, "output channels (default: inferred from the masks)")
    class_names: list[str] | None = option(None, "class names, in class-index order")
    img_size: int = option(256, "training patch size in pixels (square)")
    resize_mode: str = option("crop", "crop: random patches, whole-image tiled inference; "
                              "resize: resize every image to img-size", choices=RESIZE_MODES)
    augment: str = option("default", "augmentation strength", choices=AUGMENT_LEVELS)
    val_fraction: float = option(0.1, "fraction carved from train for validation when the "
                                 "split has no val rows")
    workers: int = option(-1, "data-loading processes (-1: one per two cores, at most 4)")
    class_map: str | None = option(None, "class map YAML: name and stored index or colour per "
                                   "class, ignore values (default: classes.yaml in the dataset "
                                   "folder when present)", metavar="YAML")
    ignore_index: int | None = option(None, "stored mask value of pixels to ignore (default: "
                                      "255 in index masks when it shares masks with other "
                                      "labels, none in binary masks)")
    instances: bool = option(False, "masks are instance label images (one integer per "
                             "object): train a binary model, foreground = any label")
    mask_threshold: float | None = option(None, "binary masks: stored values above this are "
                                          "foreground (e.g. 0.5 for probability maps; default: "
                                          "decided from the masks)", metavar="T")
    full_check: bool = option(False, "read every image and mask before training (default: "
                              "headers of up to 20,000 pairs and the pixels of 256 spread "
                              "ones; the rest is checked as it is loaded: unreadable training "
                              "samples skipped and logged, mask values the reading cannot hold "
                              "stop training)")
    # model
    model: str = option("unet", "registered model name (see `unetzoo models`)",
                        aliases=("--arch",))
    preset: str | None = option(None, "model preset, e.g. reference or tiny")
    model_args: dict[str, Any] = option(None, "model keyword arguments as KEY=VALUE",
                                        factory=dict, metavar="KEY=VALUE")
    init: str | None = option(None, "start from the weights of a pretrained model (nuclei), a "
                              "model folder or a checkpoint, where names and shapes match (a "
                              "head for other classes starts anew); its architecture and "
                              "normalisation are used unless --model is given",
                              metavar="NAME|DIR|CKPT")
    # optimisation
    loss: str = option("ce+dice", "bce, ce, dice, focal, tversky, or a sum such as bce+dice")
    batch: int = option(8, "batch size", aliases=("--batch-size",))
    lr: float = option(1e-3, "peak learning rate", aliases=("--learning-rate",))
    epoch: int = option(100, "number of epochs", aliases=("--epochs",))
    steps_per_epoch: int | None = option(None, "optimizer steps per epoch (default: one pass "
                                         "over the training images)")
    optimizer: str = option("adamw", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = option(1e-4, "weight decay")
    momentum: float = option(0.9, "SGD momentum (Nesterov)")
    schedule: str = option("cosine", "learning-rate schedule", choices=SCHEDULES)
    warmup: int = option(0, "linear warm-up epochs")
    step_size: int = option(30, "epochs per decay step (step schedule)")
    gamma: float = option(0.5, "decay factor per step (step schedule)")
    poly_power: float = option(0.9, "exponent of the poly schedule")
    ds_weights: list[float] | None = option(None, "loss weight per deep-supervision output "
                                            "(default: the model's own)")
    grad_clip: float | None = option(None, "clip the gradient norm to this value")
    monitor: str = option("dice", "validation metric that selects the best checkpoint (loss: "
                          "the lowest validation loss)",
                          choices=MONITORS)
    # run
    out: str | None = option(None, "run folder (default: runs/<model>-<date-time>)")
    resume: str | None = option(None, "resume from a run folder (its newest valid checkpoint) "
                                "or a checkpoint file; auto: continue the run in --out if it "
                                "has one, else start it")
    overwrite: bool = option(False, "allow replacing an existing run folder's contents")
    seed: int = option(0, "random seed (CPU runs are reproducible)")
    val_every: int = option(1, "validate every N epochs")
    test: bool = option(True, "evaluate the best checkpoint on the test split after training")
    report: bool = option(True, "write report.html into the run folder at the end (curves, "
                          "metrics, worst and best images; see `unetzoo report`)")
    checkpoint_every: int | None = option(None, "also write models/epoch_last.pt every N "
                                          "optimizer steps (default: after each epoch)")
    nan_policy: str = option("stop", "on a non-finite loss: stop (the last good checkpoint is "
                             "kept) or skip the batch and count it", choices=NAN_POLICIES)
    logger: str = option("tensorboard", "training logs: tensorboard (event files in "
                         "RUN/tensorboard; `tensorboard --logdir RUN`) or none",
                         choices=LOGGERS)
    log_images_every: int = option(5, "log validation overlays every N epochs (0: never)")
    mlflow: str | None = option(None, "also log to this MLflow tracking store: the config as "
                                "parameters, metrics, overlays, the best checkpoint "
                                "(sqlite:///mlflow.db, a folder, or a server URL)",
                                metavar="URI")
    mlflow_experiment: str = option("unetzoo", "MLflow experiment name")
    # runtime
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    precision: str = option("auto", "auto (bf16 where the hardware has it), fp32, bf16, fp16",
                            choices=PRECISIONS)
    channels_last: bool | None = option(None, "NHWC memory format (default: on with bf16 "
                                        "and on GPUs)")
    compile: bool = option(False, "torch.compile the model")
    threads: int | None = option(None, "CPU threads for PyTorch")
    progress: bool = option(True, "show progress bars")
    sync_bn: bool = option(False, "SyncBatchNorm: batch-norm statistics over all processes of "
                           "a distributed CUDA run")

    def validate(self) -> TrainConfig:
        """Raise ConfigError naming the option for values out of range."""
        positive = {"img_size": self.img_size, "batch": self.batch, "epoch": self.epoch,
                    "val_every": self.val_every, "step_size": self.step_size}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"--{flag(name)} must be >= 1, got {value}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"--steps-per-epoch must be >= 1, got {self.steps_per_epoch}")
        if self.log_images_every < 0:
            raise ConfigError(f"--log-images-every must be >= 0, got {self.log_images_every}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ConfigError(f"--checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if self.resume == "auto" and not self.out:
            raise ConfigError("--resume auto needs --out: the run folder to continue, or to "
                              "start when it holds no checkpoint yet")
        if not 0 <= self.warmup < self.epoch:
            raise ConfigError(f"--warmup must be in [0, epoch), got {self.warmup}")
        if self.ignore_index is not None and not 0 <= self.ignore_index <= 65535:
            raise ConfigError(f"--ignore-index must be in 0..65535, got {self.ignore_index}")
        build_loss(self.loss, "multiclass" if self.task == "multiclass" else "binary")
        resolve_kwargs(self.model, self.preset, **self.model_args)
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"--{flag(f.name)} must be one of {', '.join(choices)}, "
                                  f"got {value!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def flag(name: str) -> str:
    return name.replace("_", "-")


def _base_type(annotation: Any) -> tuple[Any, bool]:
    """(element type, is_list) of a field annotation such as `list[float] | None`."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def parse_key_values(items: list[str]) -> dict[str, Any]:
    """`["a=1", "b=group"]` -> `{"a": 1, "b": "group"}` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig,
                         skip: tuple[str, ...] = ()) -> None:
    """Add one flag per dataclass field; unset flags stay absent from the namespace."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        names = [f"--{flag(f.name)}", *meta.get("aliases", ())]
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS,
                                  "help": meta.get("help", "")}
        base, is_list = _base_type(hints[f.name])
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif f.name == "model_args":
            kwargs.update(nargs="+", metavar="KEY=VALUE")
        else:
            kwargs.update(type=base, metavar=meta.get("metavar"), choices=meta.get("choices"))
            if is_list:
                kwargs["nargs"] = "+"
        parser.add_argument(*names, **kwargs)


def load_yaml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path) from exc
    if not isinstance(data, dict):
        raise ConfigError("a config file must be a mapping of option: value", path)
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(values: dict[str, Any], yaml_path: Path | str | None = None,
                 cls: type = TrainConfig) -> Any:
    """A validated config from defaults, then the YAML file, then `values` (e.g. flags)."""
    merged = load_yaml(yaml_path) if yaml_path else {}
    if isinstance(values.get("model_args"), list):
        values = {**values, "model_args": parse_key_values(values["model_args"])}
    merged.update(values)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(merged) - known)
    if unknown:
        where = f" in {yaml_path}" if yaml_path else ""
        raise ConfigError(f"unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}{where}")
    hints = typing.get_type_hints(cls)
    for name, value in merged.items():
        merged[name] = _coerce(name, value, hints[name])
    config = cls(**merged)
    return config.validate() if hasattr(config, "validate") else config


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Check a YAML value's type, converting ints to floats where a float is expected."""
    if value is None:
        return None
    base, is_list = _base_type(annotation)
    items = value if is_list else [value]
    if is_list and not isinstance(value, list):
        raise ConfigError(f"option {name} expects a list, got {value!r}")
    out = []
    for item in items:
        if base is float and isinstance(item, int) and not isinstance(item, bool):
            item = float(item)
        wrong_type = base in (int, float, str, bool) and not isinstance(item, base)
        if wrong_type or (base is int and isinstance(item, bool)):
            raise ConfigError(f"option {name} expects {base.__name__}, got {item!r}")
        out.append(item)
    return out if is_list else out[0]
