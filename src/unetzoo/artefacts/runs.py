"""Run folders: created safely, never mixing two runs, checked before work starts; which
checkpoint a `--resume` continues."""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import TrainConfig, build_config, load_yaml
from ..errors import CheckpointError, ConfigError, RunError
from .checkpoint import Checkpoint, load_checkpoint

log = logging.getLogger("unetzoo")

NO_TRAINING_STATE = ("holds no training state (best.pt is for inference; resume from "
                     "models/epoch_last.pt)")
# Options that make a run what it is: a resumed run must keep them.
RUN_IDENTITY = ("model", "preset", "model_args", "task", "num_classes", "class_names",
                "img_size", "resize_mode")
RUN_OUTPUTS = ("models", "metrics.csv", "curves.png", "split.csv", "config.yaml", "train.log",
               "test", "overlays", "report.html", "report", "dataset.json",
               "tensorboard", "mlflow_run_id.txt")  # the last two: engine/loggers.py
RUN_CONFIG = "config.yaml"  # written first by every run: a folder holding it is a run folder


def default_run_dir(model: str, root: Path | str = "runs") -> Path:
    return Path(root) / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def has_outputs(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_OUTPUTS)


def check_run_dir(path: Path, resume: bool, overwrite: bool) -> Path:
    """Without touching anything: refuse a folder holding another run (unless `resume` or
    `overwrite`) and a location that cannot be written; returns the nearest existing folder
    on the way to `path`."""
    if has_outputs(path) and not resume and not overwrite:
        raise RunError("holds another run's outputs; pass --resume to continue it, "
                       "--overwrite to replace it, or choose another --out", path)
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"cannot create or write the run folder here ({existing} is not a "
                       "writable folder)", path)
    return existing


def prepare_run_dir(path: Path, resume: bool, overwrite: bool, needed_bytes: int = 0) -> Path:
    """Create or reuse a run folder; refuse to start a new run over an old one.

    A folder holding run outputs is reused only with `resume` (temporaries left by a killed
    save are removed); `overwrite` deletes those outputs (and nothing else) first. The
    folder must be writable and its disk must have `needed_bytes` free, checked now rather
    than at the first checkpoint.
    """
    free = shutil.disk_usage(check_run_dir(path, resume, overwrite)).free
    if free < needed_bytes:
        raise RunError(f"only {free / 2**20:.0f} MiB free on this disk; this run needs about "
                       f"{needed_bytes / 2**20:.0f} MiB for checkpoints", path)
    run_folder = has_outputs(path)
    if run_folder and not resume:
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
    if run_folder:  # fileio.atomic_write's temporaries of run outputs, from a killed save
        stale = [*(path / "models").glob(".*.pt.*.tmp"),
                 *(p for name in RUN_OUTPUTS for p in path.glob(f".{name}.*.tmp"))]
        for file in stale:
            file.unlink()
    return path


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint file belongs to (`<run>/models/<file>.pt`, the run
    folder holding the run's config.yaml), or None for a file elsewhere."""
    models = checkpoint.absolute().parent
    run = models.parent
    if models.name == "models" and (run / RUN_CONFIG).is_file():
        return checkpoint.parent.parent
    return None


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


@dataclass
class RunPlan:
    """Where a run goes, the checkpoint it continues (if any) and its final config."""

    run_dir: Path
    config: TrainConfig
    checkpoint: Checkpoint | None = None
    reuse_folder: bool = False


def _same_run(saved: dict[str, Any], config: TrainConfig, keys: Any, where: Path) -> None:
    for key in keys:
        if key in saved and saved[key] != getattr(config, key):
            raise ConfigError(f"--{key.replace('_', '-')} {getattr(config, key)!r} differs from "
                              f"the run's {saved[key]!r}: a run keeps its model and data "
                              "(choose another --out for a new run)", where)


def plan_run(config: TrainConfig, given: dict[str, Any]) -> RunPlan:
    """Resolve `--resume` (a run folder, a checkpoint file, or auto) into a plan. A resumed
    run keeps its saved config, overridden by the options `given` explicitly, except those
    of RUN_IDENTITY. A checkpoint file resumes into `--out` when given, else into the run
    folder holding it (`<run>/models/`); a file outside a run folder needs `--out`.

    Raises:
        CheckpointError: nothing to resume, or a checkpoint without training state.
        RunError: a checkpoint file outside a run folder without `--out`, or a folder
            holding an unknown run.
        ConfigError: an option of RUN_IDENTITY differs from the run's.
    """
    if not config.resume:
        run_dir = Path(config.out) if config.out else default_run_dir(config.model)
        return RunPlan(run_dir, config)
    path = Path(config.out if config.resume == "auto" else config.resume)  # type: ignore[arg-type]
    if path.is_dir() or config.resume == "auto":
        run_dir, found = path, newest_checkpoint(path)
        if found is None and config.resume != "auto":
            raise CheckpointError("holds no checkpoint to resume (models/epoch_last.pt)", path)
        if found is None and config.overwrite:  # auto: a new run replacing the folder's
            return RunPlan(path, config)
        if found is None:  # auto: the run has not written a checkpoint yet
            saved = path / "config.yaml"
            if has_outputs(path):
                if not saved.is_file():
                    raise RunError("holds outputs of an unknown run; choose another --out or "
                                   "pass --overwrite", path)
                _same_run(load_yaml(saved), config, RUN_IDENTITY, saved)
            log.info(f"--resume auto: no checkpoint in {path} yet, starting the run")
            return RunPlan(path, config, reuse_folder=True)
        path, checkpoint = found
    else:
        checkpoint = load_checkpoint(path)
        found_dir = Path(config.out) if config.out else run_folder_of(path)
        if found_dir is None:
            raise RunError("is not inside a run folder (<run>/models/<file>.pt next to the "
                           "run's config.yaml); pass --out DIR for the resumed run's outputs",
                           path)
        run_dir = found_dir
    if not checkpoint.train_state:
        raise CheckpointError(NO_TRAINING_STATE, path)
    overrides = {k: v for k, v in given.items() if k != "resume"}
    resolved = build_config({**checkpoint.config, **overrides, "resume": config.resume})
    _same_run(checkpoint.config, resolved, [k for k in RUN_IDENTITY if k in overrides], path)
    log.info(f"resuming from {path}")
    return RunPlan(run_dir, resolved, checkpoint, reuse_folder=True)
