"""Run folders: created safely, never mixing two runs, checked before work starts."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ..errors import RunError

RUN_OUTPUTS = ("models", "metrics.csv", "curves.png", "split.csv", "config.yaml", "train.log",
               "test", "overlays")


def default_run_dir(model: str, root: Path | str = "runs") -> Path:
    return Path(root) / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def _has_outputs(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_OUTPUTS)


def check_run_dir(path: Path, resume: bool, overwrite: bool) -> None:
    """Without touching anything: refuse a folder holding another run (unless `resume` or
    `overwrite`) and a location that cannot be written."""
    if _has_outputs(path) and not resume and not overwrite:
        raise RunError("holds another run's outputs; pass --resume to continue it, "
                       "--overwrite to replace it, or choose another --out", path)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"cannot create or write the run folder here ({existing} is not a "
                       "writable folder)", path)


def prepare_run_dir(path: Path, resume: bool, overwrite: bool, needed_bytes: int = 0) -> Path:
    """Create or reuse a run folder; refuse to start a new run over an old one.

    A folder holding run outputs is reused only with `resume`; `overwrite` deletes those
    outputs (and nothing else) first. The folder must be writable and its disk must have
    `needed_bytes` free, checked now rather than at the first checkpoint.
    """
    check_run_dir(path, resume, overwrite)
    if _has_outputs(path) and not resume:
        for name in RUN_OUTPUTS:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        (path / "models").mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as exc:
        raise RunError(f"cannot write here ({exc.strerror or exc})", path) from exc
    free = shutil.disk_usage(path).free
    if free < needed_bytes:
        raise RunError(f"only {free / 2**20:.0f} MiB free on this disk; this run needs about "
                       f"{needed_bytes / 2**20:.0f} MiB for checkpoints", path)
    return path
