"""Run folders: created safely, never mixing two runs, checked before work starts."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from ..checkpoint import Checkpoint, load_checkpoint
from ..errors import CheckpointError, RunError

log = logging.getLogger("unetzoo")

RUN_OUTPUTS = ("models", "metrics.csv", "curves.png", "split.csv", "config.yaml", "train.log",
               "test", "overlays")


def default_run_dir(model: str, root: Path | str = "runs") -> Path:
    return Path(root) / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_outputs(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_OUTPUTS)


def check_run_dir(path: Path, resume: bool, overwrite: bool) -> None:
    """Without touching anything: refuse a folder holding another run (unless `resume` or
    `overwrite`) and a location that cannot be written."""
    if has_outputs(path) and not resume and not overwrite:
        raise RunError("holds another run's outputs; pass --resume to continue it, "
                       "--overwrite to replace it, or choose another --out", path)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"cannot create or write the run folder here ({existing} is not a "
                       "writable folder)", path)


def prepare_run_dir(path: Path, resume: bool, overwrite: bool, needed_bytes: int = 0) -> Path:
    """Create or reuse a run folder; refuse to start a new run over an old one.

    A folder holding run outputs is reused only with `resume` (temporaries left by a killed
    save are removed); `overwrite` deletes those outputs (and nothing else) first. The
    folder must be writable and its disk must have `needed_bytes` free, checked now rather
    than at the first checkpoint.
    """
    check_run_dir(path, resume, overwrite)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise RunError(f"only {free / 2**20:.0f} MiB free on this disk; this run needs about "
                       f"{needed_bytes / 2**20:.0f} MiB for checkpoints", path)
    if has_outputs(path) and not resume:
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
    for folder in (path, path / "models"):
        for stale in folder.glob(".*.tmp"):  # fileio.atomic_write's, from a killed save
            stale.unlink()
    return path


def newest_checkpoint(path: Path) -> tuple[Path, Checkpoint] | None:
    """The checkpoint in run folder `path` that lets training go on furthest: the newest
    readable `models/*.pt` holding training state. Unreadable or partial files are skipped
    with a warning; None when there is nothing to resume. Raises CheckpointError when
    checkpoints exist but none can be read."""
    found: tuple[tuple[int, int, int], Path, Checkpoint] | None = None
    problems = []
    for candidate in sorted((path / "models").glob("*.pt")):
        if candidate.name.startswith("."):
            continue
        try:
            checkpoint = load_checkpoint(candidate)
        except CheckpointError as exc:
            log.warning(f"ignoring {exc}")
            problems.append(str(exc))
            continue
        state = checkpoint.train_state
        if not state:
            continue  # best.pt: weights for inference only
        key = (state["epoch"], state.get("progress", {}).get("samples", 0), state["step"])
        if found is None or key > found[0]:
            found = (key, candidate, checkpoint)
    if found is None and problems:
        raise CheckpointError(f"no readable checkpoint to resume: {'; '.join(problems)}",
                              path)
    return None if found is None else (found[1], found[2])
