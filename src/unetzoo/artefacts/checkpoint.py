"""Checkpoints: one file that alone rebuilds the model and its preprocessing.

Loaded with `torch.load(weights_only=True)`: nothing but tensors and plain values is
unpickled, so a downloaded checkpoint cannot run code. Written atomically.
"""

from __future__ import annotations

import io
import logging
import pickle
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

RUN_CHECKPOINT = Path("models") / "best.pt"  # what a run folder stands for

FORMAT = "unetzoo-checkpoint"
VERSION = 1


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

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION,
            "model": self.model_spec, "task": self.task, "class_names": list(self.class_names),
            "class_colors": [list(c) for c in self.class_colors] if self.class_colors else None,
            "preprocessing": self.preprocessing.to_dict(), "state_dict": self.state_dict,
            "config": self.config, "metrics": self.metrics, "train_state": self.train_state,
            "mask_reading": self.mask_reading,
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
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"incomplete checkpoint (missing {exc})", path) from exc


def as_checkpoint(source: nn.Module | Checkpoint | Path | str, *, task: Task | None = None,
                  class_names: Sequence[str] | None = None,
                  preprocessing: Preprocessing | None = None,
                  metrics: dict[str, Any] | None = None) -> Checkpoint:
    """A `Checkpoint` of a model built with `create_model` (or a checkpoint, a checkpoint
    file, a model folder or a pretrained name), with the given fields replaced.

    A bare model has no training behind it, so its defaults are stated, not guessed: task
    `binary` for one output channel and `multiclass` otherwise; class names `foreground`, or
    `class0`, `class1`, ...; preprocessing: images scaled to [0, 1] and not normalised further
    (mean 0, std 1), 256-pixel patches, tiled (`crop`) inference.

    Args:
        source: an `nn.Module` carrying `unetzoo_spec` (from `create_model`), a `Checkpoint`,
            or anything `load_checkpoint` opens.
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
        checkpoint = load_checkpoint(source)
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
    expected = 1 if checkpoint.task == "binary" else int(checkpoint.model_spec["num_classes"])
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
        >>> ckpt = load_checkpoint("runs/exp1/models/best.pt")
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


def run_checkpoint(path: Path | str) -> Path:
    """The checkpoint a `--model` path names: a training run's folder (what `train` prints
    as "run folder": no `config.json`, a `models/` folder or `config.yaml`) stands for its
    `models/best.pt`, said in one line; any other path is returned as given.

    Args:
        path: what the user named (a file, a folder or a pretrained name).

    Returns:
        `RUN/models/best.pt` for a run folder, else `path`.

    Raises:
        CheckpointError: a run folder without `models/best.pt`, naming what it holds.
    """
    path = Path(path)
    if not path.is_dir() or (path / "config.json").is_file() or not (
            (path / "models").is_dir() or (path / "config.yaml").is_file()):
        return path
    best = path / RUN_CHECKPOINT
    if best.is_file():
        log.info(f"{path}: a training run folder; using its best checkpoint {best}")
        return best
    found = (checkpoints_hint(path / "models", "models/ ") or
             "no checkpoint in models/ (the run saved none yet)")
    raise CheckpointError(f"a training run folder without {RUN_CHECKPOINT.as_posix()}; {found}",
                          path)


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Load a checkpoint safely: `torch.load(weights_only=True)`, so the file can hold
    nothing but tensors and plain values, and no code runs. A model folder (`config.json` +
    `model.safetensors`, see `unetzoo.artefacts.folders`) or the name of a pretrained model shipped with
    unetzoo (`unetzoo models --pretrained`) loads too, so everything that takes a checkpoint
    takes those.

    Args:
        path: a `.pt` file written by `save_checkpoint` (e.g. `models/best.pt`), a training
            run's folder (its `models/best.pt`, see `run_checkpoint`), a model folder, or a
            pretrained name.

    Returns:
        The `Checkpoint`: `build_model()` gives the model in eval mode on the CPU,
        `preprocessing` the input normalisation, `task` and `class_names` the outputs.

    Raises:
        CheckpointError: the file is missing, truncated, not a unetzoo checkpoint, written by
            a newer unetzoo, or holds objects other than tensors and plain values; a run
            folder without `models/best.pt`.

    Example:
        >>> ckpt = load_checkpoint("runs/exp1/models/best.pt")
        >>> model = ckpt.build_model()  # B x C x H x W images -> B x K x H x W logits
    """
    path = run_checkpoint(path)
    if path.is_dir() or (not path.exists() and _is_pretrained_name(str(path))):
        from .folders import from_pretrained  # folders builds on this module

        return from_pretrained(path)
    if not path.exists():
        from .pretrained import PRETRAINED

        raise CheckpointError(f"checkpoint not found (nor a pretrained model name: "
                              f"{', '.join(PRETRAINED)})", path)
    if not path.is_file():
        raise CheckpointError("not a file", path)
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


def _is_pretrained_name(name: str) -> bool:
    from .pretrained import PRETRAINED  # a registry of names: imports nothing heavy

    return name in PRETRAINED
