"""The OpenVINO conversion cache: a checkpoint is converted to OpenVINO IR once, checked
against PyTorch when the entry is made, and reused by every later `predict`, `eval`,
`bench` or `Predictor`.

An entry is a folder `<key>/` holding `model.xml`, `model.bin` and `entry.json` (what the
key was made of and the SHA-256 of both model files). The key is a hash of everything the
graph depends on: the checkpoint's content (weights, model spec, task, classes,
preprocessing, config), the precision, the input channels, the OpenVINO version, the unetzoo
export version, the UNet++ prune depth (in the spec) and the trace size. Entries live next
to the checkpoint (`models/.openvino/`, `artefacts.runs.conversion_cache_dir`) or, when that
folder is read-only or the checkpoint has no file of its own (a shipped model, a model in
memory), in the user cache folder (`$UNETZOO_CACHE_DIR`, else platformdirs'
`user_cache_dir("unetzoo")`, under `openvino/`). An entry is written into a temporary folder
and renamed into place, so a reader sees a whole entry or none; one that fails its check
(missing file, other hashes, other key) is removed and rebuilt, never used. A new entry for
a checkpoint file replaces the entries made for earlier contents of that file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...fileio import atomic_write_text
from .backends import EXPORT_VERSION, require
from .graphs import export_metadata, save_openvino, trace_openvino

log = logging.getLogger("unetzoo")

ENTRY = "entry.json"
FILES = ("model.xml", "model.bin")


def user_cache_dir() -> Path:
    """Where entries of read-only or in-memory checkpoints go: `$UNETZOO_CACHE_DIR`, else
    the platform's user cache folder for unetzoo (e.g. ~/.cache/unetzoo), `/openvino`."""
    override = os.environ.get("UNETZOO_CACHE_DIR")
    if override:
        return Path(override) / "openvino"
    import platformdirs

    return Path(platformdirs.user_cache_dir("unetzoo")) / "openvino"


def checkpoint_digest(checkpoint: Checkpoint) -> str:
    """SHA-256 of a checkpoint's content as exported: the metadata (spec, task, classes,
    preprocessing, config, metrics) and every weight's name, dtype, shape and bytes."""
    digest = hashlib.sha256(export_metadata(checkpoint, None).encode())
    for name in sorted(checkpoint.state_dict):
        tensor = checkpoint.state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CacheEntry:
    """A checked entry: the IR file, the input size it is fixed to (None: dynamic) and
    whether it was made just now."""

    xml: Path
    input_size: tuple[int, int] | None
    created: bool
    seconds: float


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _valid(folder: Path, key: str) -> dict[str, Any] | None:
    """The entry's record when every file is there with its recorded hash and the key
    matches; None otherwise."""
    try:
        record = json.loads((folder / ENTRY).read_text())
        if record.get("key") != key:
            return None
        for name in FILES:
            if _file_digest(folder / name) != record["sha256"][name]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def cached_openvino(checkpoint: Checkpoint, model: nn.Module, precision: str,
                    cache_dir: Path | None = None, source: Path | None = None,
                    size: int | None = None) -> CacheEntry:
    """The checked OpenVINO IR of `model` (built from `checkpoint`), converted now or found
    in the cache.

    Args:
        checkpoint: the checkpoint `model` was built from (its content is the key).
        model: the float32 PyTorch model to convert (eval mode, CPU).
        precision: the inference precision the entry is for (`fp32` or `bf16`).
        cache_dir: the cache folder beside the checkpoint file (`artefacts.runs.
            conversion_cache_dir`), used when writable; None: the user cache folder.
        source: the checkpoint file (recorded, so that its older entries are replaced).
        size: trace and parity-check size (default: the checkpoint's patch size).

    Returns:
        The entry (IR path, fixed input size or None, whether it was created, seconds).

    Raises:
        ExportError: the converted graph differs from PyTorch (nothing is cached).
        ConfigError: openvino is not installed.
    """
    ov = require("openvino")
    side = size or checkpoint.preprocessing.img_size
    fields = {"checkpoint_sha256": checkpoint_digest(checkpoint), "precision": precision,
              "in_channels": int(checkpoint.model_spec["in_channels"]),
              "openvino": ov.get_version(), "export_version": EXPORT_VERSION,
              "prune_depth": checkpoint.model_spec["kwargs"].get("prune_depth"),
              "size": side}
    key = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
    root = cache_dir if cache_dir is not None and _writable(cache_dir) else user_cache_dir()
    folder = root / key[:24]
    start = time.perf_counter()
    record = _valid(folder, key)
    if record is not None:
        size_ = record.get("input_size")
        return CacheEntry(folder / FILES[0], tuple(size_) if size_ else None, False,
                          time.perf_counter() - start)
    if folder.exists():
        log.info(f"{folder}: cache entry incomplete or changed; rebuilding it")
        shutil.rmtree(folder, ignore_errors=True)
    name = source.name if source is not None else checkpoint.model_spec["name"]
    graph, fixed, diff = trace_openvino(model, (side, side), where=f"{name} for openvino")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:8]}-", dir=root))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the run folder's readers read it
    try:
        save_openvino(graph, export_metadata(checkpoint, fixed), tmp / FILES[0], atomic=False)
        for name_ in FILES:
            with (tmp / name_).open("rb") as fh:
                os.fsync(fh.fileno())
        record = {"key": key, "fields": fields, "source": str(source.resolve()) if source else None,
                  "input_size": list(fixed) if fixed else None, "max_abs_diff": diff,
                  "sha256": {n: _file_digest(tmp / n) for n in FILES}}
        atomic_write_text(tmp / ENTRY, json.dumps(record, indent=2) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:  # another process made it meanwhile: use theirs if it is whole
            if _valid(folder, key) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if source is not None:
        _drop_older(root, source, key)
    return CacheEntry(folder / FILES[0], fixed, True, time.perf_counter() - start)


def _drop_older(root: Path, source: Path, key: str) -> None:
    """Remove entries made from earlier contents of the same checkpoint file with the same
    settings (a checkpoint rewritten by training)."""
    mine = json.loads((root / key[:24] / ENTRY).read_text())["fields"]
    for folder in root.iterdir():
        if not folder.is_dir() or folder.name == key[:24] or folder.name.startswith("."):
            continue
        try:
            record = json.loads((folder / ENTRY).read_text())
        except (OSError, ValueError):
            continue
        theirs = record.get("fields", {})
        same_settings = all(theirs.get(k) == v for k, v in mine.items()
                            if k != "checkpoint_sha256")
        if record.get("source") == str(source.resolve()) and same_settings:
            shutil.rmtree(folder, ignore_errors=True)
