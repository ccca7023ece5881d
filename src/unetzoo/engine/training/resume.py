"""Which run a `train` call continues or starts: `--resume` (a run folder, a checkpoint file,
or auto) resolved into a `RunPlan`, the saved config merged with the options given."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...artefacts.checkpoint import Checkpoint, read_checkpoint_file
from ...artefacts.runs import (
    RUN_CONFIG,
    SPLIT_FILE,
    default_run_dir,
    has_outputs,
    newest_checkpoint,
    run_of,
)
from ...config import TrainConfig, build_config, load_yaml
from ...errors import CheckpointError, ConfigError, RunError

log = logging.getLogger("unetzoo")

NO_TRAINING_STATE = ("holds no training state (best.pt is for inference; resume from "
                     "models/epoch_last.pt)")
# Options that make a run what it is: a resumed run must keep them.
RUN_IDENTITY = ("model", "preset", "model_args", "task", "representation", "num_classes",
                "class_names", "img_size", "resize_mode", "normalize")


@dataclass
class RunPlan:
    """Where a run goes, the checkpoint it continues (if any) and its final config."""

    run_dir: Path
    config: TrainConfig
    checkpoint: Checkpoint | None = None
    reuse_folder: bool = False
    split_record: Path | None = None  # the resumed run's split (its split.csv), kept



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
            saved = path / RUN_CONFIG
            if has_outputs(path):
                if not saved.is_file():
                    raise RunError("holds outputs of an unknown run; choose another --out or "
                                   "pass --overwrite", path)
                # the options given now (a planned run's saved patch or normalisation
                # is the plan's, which planning again gives)
                _same_run(load_yaml(saved), config, [k for k in RUN_IDENTITY if k in given],
                          saved)
            log.info(f"--resume auto: no checkpoint in {path} yet, starting the run")
            return RunPlan(path, config, reuse_folder=True)
        path, checkpoint = found
    else:
        checkpoint = read_checkpoint_file(path)
        found_dir = Path(config.out) if config.out else run_of(path)
        if found_dir is None:
            raise RunError("is not inside a run folder (<run>/models/<file>.pt next to the "
                           "run's config.yaml); pass --out DIR for the resumed run's outputs",
                           path)
        run_dir = found_dir
    if not checkpoint.train_state:
        raise CheckpointError(NO_TRAINING_STATE, path)
    overrides = {k: v for k, v in given.items() if k != "resume"}
    # --add-new applies to the resume it was given to, never again from the saved config
    saved = {k: v for k, v in checkpoint.config.items() if k != "add_new"}
    resolved = build_config({**saved, **overrides, "resume": config.resume})
    _same_run(checkpoint.config, resolved, [k for k in RUN_IDENTITY if k in overrides], path)
    log.info(f"resuming from {path}")
    source_run = run_of(path) or run_dir
    return RunPlan(run_dir, resolved, checkpoint, reuse_folder=True,
                   split_record=source_run / SPLIT_FILE)
