"""Checkpoints: one file that alone rebuilds the model and its preprocessing.

Loaded with `torch.load(weights_only=True)`: nothing but tensors and plain values is
unpickled, so a downloaded checkpoint cannot run code. Written atomically.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data.transforms import Preprocessing
from .errors import CheckpointError, ModelError, UnetzooError
from .fileio import atomic_write
from .models import create_model
from .task import Task, check_task

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


def save_checkpoint(path: Path | str, checkpoint: Checkpoint) -> Path:
    """Write a checkpoint atomically (temporary file, fsync, rename): a kill mid-save keeps
    the previous file.

    Args:
        path: the file to write (its folder is created).
        checkpoint: model spec, task, classes, preprocessing, weights and, optionally, the
            training state.

    Returns:
        `path` as a `Path`.

    Raises:
        OSError: the file cannot be written (e.g. a full disk); the previous file is kept.

    Example:
        >>> ckpt = load_checkpoint("runs/exp1/models/best.pt")
        >>> save_checkpoint("copy.pt", ckpt)
        PosixPath('copy.pt')
    """
    buffer = io.BytesIO()
    torch.save(checkpoint.to_payload(), buffer)
    return atomic_write(path, lambda fh: fh.write(buffer.getbuffer()))


def load_checkpoint(path: Path | str) -> Checkpoint:
    """Load a checkpoint safely: `torch.load(weights_only=True)`, so the file can hold
    nothing but tensors and plain values, and no code runs.

    Args:
        path: a `.pt` file written by `save_checkpoint` (e.g. `models/best.pt`).

    Returns:
        The `Checkpoint`: `build_model()` gives the model in eval mode on the CPU,
        `preprocessing` the input normalisation, `task` and `class_names` the outputs.

    Raises:
        CheckpointError: the file is missing, truncated, not a unetzoo checkpoint, written by
            a newer unetzoo, or holds objects other than tensors and plain values.

    Example:
        >>> ckpt = load_checkpoint("runs/exp1/models/best.pt")
        >>> model = ckpt.build_model()  # B x C x H x W images -> B x K x H x W logits
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found" if not path.exists() else "not a file", path)
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
