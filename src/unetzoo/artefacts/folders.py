"""Model folders: `config.json` + `model.safetensors` + `README.md`, the `save_pretrained` /
`from_pretrained` convention of the Hugging Face hub (which segmentation_models_pytorch
follows), for unetzoo models.

`save_pretrained` and `from_pretrained` (`artefacts.references`) write and open them from
anything a user names; this module reads and writes the folder itself.

`config.json` holds what rebuilds the model and its use: model name and arguments, task,
class names, preprocessing, the threshold, the training config and metrics. The weights are
a safetensors file (plain tensors, no pickle: loading runs no code), optionally stored in
float16 or bfloat16 to halve the size; they load as float32. `README.md` is the model card
(`unetzoo.artefacts.modelcard`). Folders are written atomically (built beside the target, then moved
into place).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..data.transforms import Preprocessing
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_folder, atomic_write_bytes, atomic_write_text
from ..task import check_task
from ..version import __version__
from .checkpoint import Checkpoint, checkpoints_hint
from .modelcard import CardInfo, render_card

log = logging.getLogger("unetzoo")

FORMAT = "unetzoo-pretrained"
VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16,
                                  "bfloat16": torch.bfloat16}


def folder_config(checkpoint: Checkpoint, dtype: str = "float32") -> dict[str, Any]:
    """The `config.json` content of a checkpoint (everything but the weights)."""
    return {
        "format": FORMAT, "version": VERSION, "unetzoo_version": __version__,
        "model": checkpoint.model_spec, "task": checkpoint.task,
        "class_names": list(checkpoint.class_names),
        "class_colors": [list(c) for c in checkpoint.class_colors]
        if checkpoint.class_colors else None,
        "preprocessing": checkpoint.preprocessing.to_dict(), "threshold": 0.5,
        "weights": {"file": WEIGHTS_FILE, "dtype": dtype},
        "metrics": checkpoint.metrics, "training": checkpoint.config,
        "mask_reading": checkpoint.mask_reading, "input_stats": checkpoint.input_stats,
        "instance": checkpoint.instance,
    }


def write_folder(checkpoint: Checkpoint, directory: Path | str, *, dtype: str = "float32",
                 card: CardInfo | None = None, overwrite: bool = False) -> Path:
    """Write `directory/config.json`, `model.safetensors` and `README.md` of `checkpoint`,
    with no path of this machine in them (`Checkpoint.portable`).

    Args:
        checkpoint: the model (weights, spec, task, classes, preprocessing, config, metrics).
        directory: the folder to write (new or empty, or replaced with `overwrite`).
        dtype: storage type of floating-point weights: `float32` (exact), `float16` or
            `bfloat16` (half the size; they load as float32).
        card: authors, licence, citations, metrics and notes for the README model card.
        overwrite: replace an existing folder.

    Returns:
        The folder written.

    Raises:
        ConfigError: an unknown `dtype`. RunError: the folder exists and is not empty.
    """
    from safetensors.torch import save

    if dtype not in DTYPES:
        raise ConfigError(f"unknown weights dtype {dtype!r}; choose {', '.join(DTYPES)}")
    checkpoint = checkpoint.portable()
    state = {k: (v.to(DTYPES[dtype]) if v.is_floating_point() else v).contiguous()
             for k, v in checkpoint.state_dict.items()}
    directory = Path(directory)
    with atomic_folder(directory, overwrite) as tmp:
        atomic_write_bytes(tmp / WEIGHTS_FILE, save(state, metadata={"format": "pt"}))
        atomic_write_text(tmp / CARD_FILE, render_card(checkpoint, card))
        atomic_write_text(tmp / CONFIG_FILE, json.dumps(folder_config(checkpoint, dtype),
                                                        indent=2) + "\n")
    return directory


def read_folder_config(directory: Path) -> dict[str, Any]:
    """The checked `config.json` of a model folder."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        hint = checkpoints_hint(directory, "; it ")  # e.g. a run's models/
        raise CheckpointError(f"not a model folder (no {CONFIG_FILE}; a unetzoo model folder "
                              f"holds {CONFIG_FILE} + {WEIGHTS_FILE}){hint}", directory)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {CONFIG_FILE}: {exc}", path) from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"not a unetzoo model config (no format: {FORMAT})", path)
    if config.get("version", 0) > VERSION:
        raise CheckpointError(f"written by a newer unetzoo (folder format version "
                              f"{config['version']} > {VERSION}); upgrade unetzoo", path)
    return config


def read_folder(directory: Path | str) -> Checkpoint:
    """Load a model folder (what `write_folder` wrote; a shipped model is one).

    Args:
        directory: the folder.

    Returns:
        A `Checkpoint` (no training state): `.build_model()` gives the model in eval mode,
        float32, on the CPU; `.preprocessing` and `.task` say how to use it.

    Raises:
        CheckpointError: not a model folder, a broken config or weights file, or weights
            that do not fit the model.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError("model folder not found", directory)
    config = read_folder_config(directory)
    weights = directory / config.get("weights", {}).get("file", WEIGHTS_FILE)
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"cannot read the weights: {exc}", weights) from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        checkpoint = Checkpoint(
            model_spec=config["model"],
            task=check_task(config["task"], config["model"]["num_classes"]),
            class_names=tuple(config["class_names"]),
            preprocessing=Preprocessing.from_dict(config["preprocessing"]),
            state_dict=state, config=config.get("training") or {},
            metrics=config.get("metrics") or {},
            class_colors=tuple(tuple(c) for c in config["class_colors"])
            if config.get("class_colors") else None,
            mask_reading=config.get("mask_reading"), input_stats=config.get("input_stats"),
            instance=config.get("instance"))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"incomplete {CONFIG_FILE} (missing {exc})", directory) from exc
    try:
        checkpoint.build_model()  # weights that do not fit the model fail here, not later
    except CheckpointError as exc:
        raise CheckpointError(exc.message, weights) from exc
    return checkpoint
