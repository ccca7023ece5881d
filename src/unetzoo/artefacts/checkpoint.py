"""Checkpoints: one file that alone rebuilds the model and its preprocessing.

Loaded with `torch.load(weights_only=True)`: nothing but tensors and plain values is
unpickled, so a downloaded checkpoint cannot run code. Written atomically.
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.transforms import Preprocessing
from ..errors import (
    CheckpointError,
    ConfigError,
    ModelError,
    UnetzooError,
)
from ..fileio import atomic_write
from ..models import create_model
from ..task import Task, check_task

log = logging.getLogger("unetzoo")

FORMAT = "unetzoo-checkpoint"
VERSION = 1


# an absolute path's folders: POSIX `/a/b/` (not inside a URL or a ratio such as 0/1) or
# Windows `C:\\a\\b\\`; what follows the last separator stays
_ABSOLUTE_FOLDERS = re.compile(r"(?<![\w.:/~])/(?:[^\s/:,;'\"()\[\]{}]+/)+"
                               r"|\b[A-Za-z]:\\(?:[^\s\\:,;'\"()]+\\)+")


def portable(value: Any) -> Any:
    """`value` (plain values: dicts, lists, strings) with every absolute path cut to its
    last component, in strings that are a path and in strings that mention one."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v) for v in value)
    if isinstance(value, str):
        return _ABSOLUTE_FOLDERS.sub("", value.rstrip("/\\")) or value
    return value


@dataclass
class Checkpoint:
    """Everything needed to rebuild and use a model, and optionally to resume training."""

    model_spec: dict[str, Any]
    task: Task
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None
    class_colors: tuple[tuple[int, int, int], ...] | None = None
    # How the run read its masks (data.masks.MaskReading.to_dict()); evaluation re-applies it.
    mask_reading: dict[str, Any] | None = None
    # the content digests of the images it trained and was chosen on (train and val), 16
    # bytes each (`data.digests.pack_digests`), so that `eval` names scored images it learnt
    # from even away from its run; kept in `.pt` checkpoints only
    fit_digests: torch.Tensor | None = None
    # what its training images' values looked like (data.input_stats.InputStatistics
    # .to_dict()): predict and eval name images far from them
    input_stats: dict[str, Any] | None = None
    # an instance model: how its outputs become objects (its representation and the
    # thresholds chosen on validation; engine/inference/instance.InstanceDecoding)
    instance: dict[str, Any] | None = None

    def build_model(self, prune_depth: int | None = None) -> nn.Module:
        """The model with its trained weights, in eval mode, on the CPU; `prune_depth` runs
        only the sub-network of that depth (UNet++ trained with deep supervision)."""
        spec = self.model_spec
        try:
            model = create_model(spec["name"], spec["in_channels"], spec["num_classes"],
                                 **spec["kwargs"])
            model.load_state_dict(self.state_dict)
        except UnetzooError:
            raise
        except (RuntimeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"weights do not fit model {spec.get('name')!r}: "
                                  f"{str(exc).splitlines()[0]}") from exc
        if prune_depth is not None:
            if not hasattr(model, "prune"):
                raise ModelError(f"--prune-depth applies to UNet++ trained with deep "
                                 f"supervision, not to {spec['name']!r}")
            model.prune(prune_depth)
        return model.eval()

    def portable(self) -> Checkpoint:
        """This checkpoint as written for others (model folders, packages, exported files,
        cards): every absolute path of this machine in its config, metrics and mask
        reading cut to its last component (`/home/me/data/nuclei` -> `nuclei`); relative
        paths, as the user typed them, stay."""
        return replace(self, config=portable(self.config), metrics=portable(self.metrics),
                       mask_reading=portable(self.mask_reading), fit_digests=None)

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION,
            "model": self.model_spec, "task": self.task, "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors] if self.class_colors else None,
            "preprocessing": self.preprocessing.to_dict(), "state_dict": self.state_dict,
            "config": self.config, "metrics": self.metrics, "train_state": self.train_state,
            "mask_reading": self.mask_reading, "fit_digests": self.fit_digests,
            "input_stats": self.input_stats, "instance": self.instance,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], path: Path | None = None) -> Checkpoint:
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError("not a unetzoo checkpoint (no unetzoo format marker)", path)
        if payload.get("version", 0) > VERSION:
            raise CheckpointError(f"written by a newer unetzoo (format version "
                                  f"{payload['version']} > {VERSION}); upgrade unetzoo", path)
        try:
            spec = payload["model"]
            check_task(payload["task"], spec["num_classes"])
            colors = payload.get("class_colors")
            return cls(
                model_spec=spec, task=payload["task"],
                class_names=tuple(payload["class_names"]),
                preprocessing=Preprocessing.from_dict(payload["preprocessing"]),
                state_dict=payload["state_dict"], config=payload.get("config") or {},
                metrics=payload.get("metrics") or {}, train_state=payload.get("train_state"),
                class_colors=tuple(tuple(c) for c in colors) if colors else None,
                mask_reading=payload.get("mask_reading"),
                fit_digests=payload.get("fit_digests"),
                input_stats=payload.get("input_stats"), instance=payload.get("instance"),
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"incomplete checkpoint (missing {exc})", path) from exc


def as_checkpoint(source: nn.Module | Checkpoint, *, task: Task | None = None,
                  class_names: Sequence[str] | None = None,
                  preprocessing: Preprocessing | None = None,
                  metrics: dict[str, Any] | None = None) -> Checkpoint:
    """A `Checkpoint` of a model built with `create_model` (or of a checkpoint), with the
    given fields replaced. (A file, folder or name a user gives goes through
    `unetzoo.artefacts.references.as_checkpoint`, which opens it first.)

    A bare model has no training behind it, so its defaults are stated, not guessed: task
    `binary` for one output channel and `multiclass` otherwise; class names `foreground`, or
    `class0`, `class1`, ...; preprocessing: images scaled to [0, 1] and not normalised further
    (mean 0, std 1), 256-pixel patches, tiled (`crop`) inference.

    Args:
        source: an `nn.Module` carrying `unetzoo_spec` (from `create_model`), or a
            `Checkpoint`.
        task, class_names, preprocessing, metrics: replace the source's values.

    Returns:
        The checkpoint (weights on the CPU; no training state for a bare model).

    Raises:
        ModelError: a module without `unetzoo_spec`. ConfigError: a task that does not fit
            the number of output channels, or class names of the wrong count.
    """
    if isinstance(source, nn.Module):
        spec = getattr(source, "unetzoo_spec", None)
        if spec is None:
            raise ModelError(f"{type(source).__name__} was not built with unetzoo.create_model "
                             "(it has no unetzoo_spec to rebuild it from)")
        classes, channels = int(spec["num_classes"]), int(spec["in_channels"])
        default_task: Task = "binary" if classes == 1 else "multiclass"
        checkpoint = Checkpoint(
            model_spec=spec, task=default_task,
            class_names=("foreground",) if classes == 1 else tuple(
                f"class{i}" for i in range(classes)),
            preprocessing=Preprocessing(channels, (0.0,) * channels, (1.0,) * channels),
            state_dict={k: v.detach().cpu().clone() for k, v in source.state_dict().items()})
    elif isinstance(source, Checkpoint):
        checkpoint = source
    else:
        raise ModelError(f"expected a model or a Checkpoint, got {type(source).__name__}")
    changes: dict[str, Any] = {}
    if task is not None:
        changes["task"] = check_task(task, int(checkpoint.model_spec["num_classes"]))
    if class_names is not None:
        changes["class_names"] = tuple(class_names)
    if preprocessing is not None:
        changes["preprocessing"] = preprocessing
    if metrics is not None:
        changes["metrics"] = metrics
    checkpoint = replace(checkpoint, **changes)
    expected = int(checkpoint.model_spec["num_classes"]) \
        if checkpoint.task in ("multiclass", "multilabel") else 1  # binary, instance: one
    if len(checkpoint.class_names) != expected:
        raise ConfigError(f"a {checkpoint.task} model with {checkpoint.model_spec['num_classes']}"
                          f" output channel(s) needs {expected} class name(s), got "
                          f"{len(checkpoint.class_names)}")
    return checkpoint


def save_checkpoint(path: Path | str, checkpoint: Checkpoint | nn.Module, **fields: Any) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename): a kill mid-save keeps
    the previous file.

    Args:
        path: the file to write (its folder is created).
        checkpoint: model spec, task, classes, preprocessing, weights and, optionally, the
            training state; or a model built with `create_model`, saved in one call with the
            stated defaults of `as_checkpoint`.
        fields: `task`, `class_names`, `preprocessing` or `metrics` replacing the
            checkpoint's (see `as_checkpoint`).

    Returns:
        `path` as a `Path`.

    Raises:
        OSError: the file cannot be written (e.g. a full disk); the previous file is kept.

    Example:
        >>> ckpt = read_checkpoint_file("runs/exp1/models/best.pt")
        >>> save_checkpoint("copy.pt", ckpt)
        PosixPath('copy.pt')
        >>> save_checkpoint("bare.pt", create_model("unet"), class_names=["cell"])
        PosixPath('bare.pt')
    """
    if fields or not isinstance(checkpoint, Checkpoint):
        checkpoint = as_checkpoint(checkpoint, **fields)
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    return atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


def checkpoints_hint(folder: Path, first: str = "") -> str:
    """What to pass instead of a folder of checkpoints (e.g. a run's `models/`):
    "<first> holds a.pt, b.pt: pass one with --model, e.g. --model FOLDER/a.pt", naming
    `best.pt` when present; "" when `folder` holds no `*.pt`."""
    held = sorted(p.name for p in folder.glob("*.pt")) if folder.is_dir() else []
    if not held:
        return ""
    example = folder / ("best.pt" if "best.pt" in held else held[-1])
    return (f"{first}holds {', '.join(held)}: pass one with --model, e.g. --model "
            f"{example.as_posix()}")


def read_checkpoint_file(path: Path | str) -> Checkpoint:
    """Read a `.pt` file written by `save_checkpoint`, safely: `torch.load(weights_only=True)`,
    so the file can hold nothing but tensors and plain values, and no code runs. (Anything
    else a user names, a run folder, a model folder, a shipped name or a package, opens
    through `unetzoo.artefacts.references.load_checkpoint`.)

    Raises:
        CheckpointError: the file is missing, truncated, not a unetzoo checkpoint, written by
            a newer unetzoo, or holds objects other than tensors and plain values.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found" if not path.exists() else "not a file",
                              path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError("refused: the file holds objects other than tensors and plain "
                              "values (only weights_only checkpoints are loaded)", path) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read checkpoint (truncated or not a checkpoint: "
                              f"{detail})", path) from exc
    return Checkpoint.from_payload(payload, path)
