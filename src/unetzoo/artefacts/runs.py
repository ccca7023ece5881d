"""The run folder: the one place that knows its layout, how a checkpoint or a folder finds
its run, and where outputs go (created safely, never mixing two runs, checked before work
starts).

A run folder (what `unetzoo train` writes, `runs/<model>-<date-time>/` by default):

    config.yaml        the run's options (written first: a folder holding it is a run)
    dataset.json       what the run decided about its data (masks, channels, splits)
    split.csv          the run's split, with each file's size and content digest
    train.log          the log, appended line by line
    metrics.csv        one row per epoch; curves.png
    models/best.pt     the best validation checkpoint (weights for inference)
    models/epoch_last.pt   the full training state (resume)
    models/.openvino/  the OpenVINO conversions of its checkpoints (a cache)
    test/              the best checkpoint on the test split (metrics.json, per_image.csv)
    eval-<split>/      later `unetzoo eval` of the run's checkpoint
    report.html, report/   the report page and its pictures
    tensorboard/, mlflow_run_id.txt   training loggers

Everything else that writes outputs of a model asks this module where they go: inside the
run when the model belongs to one, else in the working folder, never elsewhere.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from ..errors import CheckpointError, RunError
from .checkpoint import Checkpoint, checkpoints_hint, read_checkpoint_file

log = logging.getLogger("unetzoo")

RUN_CONFIG = "config.yaml"  # written first by every run: a folder holding it is a run folder
MODELS = "models"
BEST = "best.pt"
LAST = "epoch_last.pt"
RUN_CHECKPOINT = Path(MODELS) / BEST  # what a run folder stands for
DATASET_FILE = "dataset.json"
SPLIT_FILE = "split.csv"
TRAIN_LOG = "train.log"
HISTORY = "metrics.csv"
CURVES = "curves.png"
TEST = "test"
REPORT = "report.html"
REPORT_ASSETS = "report"
OPENVINO_CACHE = ".openvino"
TENSORBOARD = "tensorboard"
MLFLOW_RUN_FILE = "mlflow_run_id.txt"
RUN_OUTPUTS = (MODELS, HISTORY, CURVES, SPLIT_FILE, RUN_CONFIG, TRAIN_LOG, TEST, "overlays",
               REPORT, REPORT_ASSETS, DATASET_FILE, TENSORBOARD, MLFLOW_RUN_FILE)
MODEL_FOLDER_CONFIG = "config.json"  # a model folder (artefacts/folders.py), not a run


def default_run_dir(model: str, root: Path | str = "runs") -> Path:
    """`runs/<model>-<date-time>` (in the working folder)."""
    return Path(root) / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def is_run_folder(path: Path | str) -> bool:
    """A training run's folder: it holds the run's `config.yaml` or a `models/` folder, and
    it is not a model folder (`config.json` + weights)."""
    path = Path(path)
    return path.is_dir() and not (path / MODEL_FOLDER_CONFIG).is_file() and (
        (path / RUN_CONFIG).is_file() or (path / MODELS).is_dir())


def run_of(path: Path | str) -> Path | None:
    """The run folder `path` belongs to: a run folder itself, or `<run>/models/<file>` of a
    run folder; None for anything else (a checkpoint copied elsewhere, an exported file, a
    model folder, a shipped name)."""
    path = Path(path)
    if is_run_folder(path):
        return path
    if path.is_file() and path.parent.name == MODELS and is_run_folder(path.parent.parent):
        return path.parent.parent
    return None


def run_checkpoint(path: Path | str) -> Path:
    """The file a model reference names: a training run's folder stands for its
    `models/best.pt` (said in one line); any other path is returned as given.

    Raises:
        CheckpointError: a run folder without `models/best.pt`, naming what it holds.
    """
    path = Path(path)
    if not is_run_folder(path):
        return path
    best = path / RUN_CHECKPOINT
    if best.is_file():
        log.info(f"{path}: a training run folder; using its best checkpoint {best}")
        return best
    found = (checkpoints_hint(path / MODELS, "models/ ") or
             "no checkpoint in models/ (the run saved none yet)")
    raise CheckpointError(f"a training run folder without {RUN_CHECKPOINT.as_posix()}; {found}",
                          path)


def evaluation_dir(model: Path | str | None, name: str, split: str = "{split}") -> Path:
    """Where `unetzoo eval` writes by default: `<run>/eval-<split>` for a model of a run
    (`eval-<stem>-<split>` for a checkpoint other than best.pt), else `eval-<name>-<split>`
    in the working folder (never beside a file elsewhere, never above the working folder).

    Args:
        model: the model file or folder as resolved (None for a shipped name).
        name: what to call the model in the folder name (its file stem or shipped name).
        split: the split evaluated (`{split}` is filled in later).
    """
    run = run_of(model) if model is not None else None
    if run is not None:
        file = Path(model) if Path(model).is_file() else run / RUN_CHECKPOINT  # type: ignore[arg-type]
        return run / (f"eval-{split}" if file.name == BEST else f"eval-{file.stem}-{split}")
    return Path(f"eval-{name}-{split}")


def conversion_cache_dir(source: Path | None) -> Path | None:
    """The folder beside a checkpoint file where its OpenVINO conversions are cached
    (`<folder>/.openvino`: in a run, `models/.openvino`); None for a model without a file of
    its own (a shipped name, a model in memory), whose conversions go to the user cache
    folder."""
    if source is None or not source.is_file():
        return None
    return source.parent / OPENVINO_CACHE


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


def newest_checkpoint(path: Path) -> tuple[Path, Checkpoint] | None:
    """The checkpoint in run folder `path` that lets training go on furthest: the newest
    readable `models/*.pt` holding training state. Unreadable or partial files are skipped
    with a warning; None when there is nothing to resume. Raises CheckpointError when
    checkpoints exist but none can be read."""
    found: tuple[tuple[int, int, int], Path, Checkpoint] | None = None
    problems = []
    for candidate in sorted((path / MODELS).glob("*.pt")):
        if candidate.name.startswith("."):
            continue
        try:
            checkpoint = read_checkpoint_file(candidate)
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


