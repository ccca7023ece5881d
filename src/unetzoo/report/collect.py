"""Collect what a run folder (or an evaluation folder) holds into one structure.

A run folder (written by `unetzoo train`) holds `config.yaml`, `metrics.csv` (one row per
epoch), `train.log`, `models/best.pt`, `split.csv`, optionally `dataset.json` (the task and
class decision with its evidence) and evaluations: `test/` and `eval-<split>/` folders with
`metrics.json` and `per_image.csv` (written by `unetzoo eval`). An evaluation folder may also
be given on its own; the run of its checkpoint is then found through `metrics.json`.
Everything is optional except one of `config.yaml`, `metrics.csv` or `metrics.json`: what is
missing is left out of the page, never guessed.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from ..artefacts.checkpoint import Checkpoint
from ..artefacts.references import resolve_model
from ..artefacts.runs import is_run_folder, run_of
from ..errors import CheckpointError, ConfigError, RunError
from ..losses import loss_name
from ..metrics import METRIC_NAMES
from ..task import TASKS

log = logging.getLogger("unetzoo")

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_SPLITS = re.compile(r"train (\d+) / val (\d+) / test (\d+) images")


@dataclass
class Evaluation:
    """One evaluation folder: `metrics.json` (summary, FPS, what was evaluated) and the rows
    of `per_image.csv` (image name and the headline metrics as floats)."""

    folder: Path
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return self.folder.name

    @property
    def metric_names(self) -> list[str]:
        """The per-image metric columns, in METRIC_NAMES order where known."""
        if not self.per_image:
            return []
        keys = [k for k in self.per_image[0] if k != "image"]
        return [k for k in METRIC_NAMES if k in keys] + [k for k in keys if k not in
                                                         METRIC_NAMES]

    @property
    def overlays(self) -> Path | None:
        """`overlays/` written by `unetzoo eval --debug`, when present."""
        folder = self.folder / "overlays"
        return folder if folder.is_dir() else None


@dataclass
class LogFacts:
    """What `train.log` says about the sessions of a run (a resumed run has several)."""

    sessions: int = 0
    started: datetime | None = None
    ended: datetime | None = None
    splits: dict[str, int] = field(default_factory=dict)
    runtimes: list[str] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)  # the last session's header lines

    @property
    def wall_seconds(self) -> float | None:
        if self.started and self.ended:
            return (self.ended - self.started).total_seconds()
        return None


@dataclass
class RunData:
    """Everything the report shows about one run (or one evaluation)."""

    path: Path  # the folder the report is about (run folder or evaluation folder)
    name: str
    run_dir: Path | None
    config: dict[str, Any]
    history: list[dict[str, Any]]
    checkpoint_path: Path | None
    checkpoint: Checkpoint | None
    log: LogFacts
    dataset_json: dict[str, Any] | None
    evaluation: Evaluation | None
    other_evaluations: list[Path]

    @property
    def task(self) -> str | None:
        if self.checkpoint is not None:
            return self.checkpoint.task
        return self.config.get("task")

    @property
    def loss(self) -> str | None:
        """The loss as it ran (`ce+dice` of a binary run is `bce+dice`, as the log says)."""
        name, task = self.config.get("loss"), self.task
        if not isinstance(name, str) or task not in TASKS:
            return name
        return loss_name(name, task)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.checkpoint.class_names if self.checkpoint is not None else ()

    @property
    def model_name(self) -> str | None:
        if self.checkpoint is not None:
            return str(self.checkpoint.model_spec["name"])
        return self.config.get("model")

    @property
    def best_epoch(self) -> int | None:
        if self.checkpoint is not None and "epoch" in self.checkpoint.metrics:
            return int(self.checkpoint.metrics["epoch"])
        return None

    @property
    def training_seconds(self) -> float | None:
        seconds = [row.get("seconds") for row in self.history]
        values = [s for s in seconds if isinstance(s, float)]
        return sum(values) if values else None


def _number(text: str) -> Any:
    """A CSV cell as int or float where it is one (empty -> None), else the text."""
    if text == "":
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file with numbers parsed (the image column stays text)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: (v if k == "image" else _number(v)) for k, v in row.items()}
                for row in csv.DictReader(fh)]


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON mapping, or None (with a warning) when it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning(f"report: cannot read {path} ({exc}); left out")
        return None
    return data if isinstance(data, dict) else None


def read_evaluation(folder: Path) -> Evaluation | None:
    """The evaluation in `folder` (metrics.json, with per_image.csv when present)."""
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        return None
    table = folder / "per_image.csv"
    rows = read_csv_rows(table) if table.is_file() else []
    for row in rows:
        for key, value in row.items():
            if key != "image" and not isinstance(value, (int, float)):
                row[key] = math.nan
    return Evaluation(folder, metrics, rows)


def read_log(path: Path) -> LogFacts:
    """Sessions, time span, split sizes, runtime and machine lines of `train.log`."""
    facts = LogFacts()
    if not path.is_file():
        return facts
    collecting = False
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stamp = _STAMP.match(line)
        if stamp:
            when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")
            facts.started = facts.started or when
            facts.ended = when
        message = line[24:] if stamp else line
        if message.startswith("unetzoo train:"):
            facts.sessions += 1
            facts.header, collecting = [message], True
            continue
        collecting = collecting and message.startswith("  ")
        if not collecting:
            continue
        facts.header.append(message)
        text = message.strip()
        splits = _SPLITS.search(text)
        if splits:
            facts.splits = dict(zip(("train", "val", "test"), map(int, splits.groups()),
                                    strict=True))
        if text.startswith("runtime:"):
            facts.runtimes.append(text.partition(":")[2].strip())
        if text.startswith("machine:"):
            facts.machines.append(text.partition(":")[2].strip())
    return facts


def _load_checkpoint(path: Path | None) -> Checkpoint | None:
    """The checkpoint an evaluation scored, with its weights where it has them (the page's
    pictures need them), else None; said in one line when it cannot be read."""
    if path is None:
        return None
    try:
        reference = resolve_model(path)
        return reference.checkpoint() if reference.has_weights else None
    except (CheckpointError, ConfigError) as exc:
        log.warning(f"report: {exc}; the model facts are left out")
        return None


def _evaluated_checkpoint(evaluation: Evaluation | None, run_dir: Path | None
                          ) -> Path | None:
    """The checkpoint an evaluation scored: the path `metrics.json` records (as given, else
    the file of that name in the run's `models/`, for a run folder that moved); the run's
    `best.pt` when nothing is recorded (the test evaluation after training); None when the
    recorded file is gone (the page then has no pictures rather than another model's)."""
    recorded = evaluation.metrics.get("checkpoint") if evaluation else None
    if not recorded:
        return run_dir / "models" / "best.pt" if run_dir else None
    path = Path(recorded)
    try:
        return resolve_model(path).path
    except (CheckpointError, ConfigError):
        pass
    moved = run_dir / "models" / path.name if run_dir else None
    if moved is not None and moved.is_file():
        return moved
    log.warning(f"report: the evaluated checkpoint {path} is not found; no pictures")
    return None


def find_evaluations(run_dir: Path) -> list[Path]:
    """Evaluation folders of a run: `test/` first, then `eval-*` newest first."""
    found = [run_dir / "test"] if (run_dir / "test" / "metrics.json").is_file() else []
    others = [p for p in run_dir.glob("eval-*") if (p / "metrics.json").is_file()]
    return found + sorted(others, key=lambda p: p.stat().st_mtime, reverse=True)


def collect_run(path: Path | str, evaluation: Path | str | None = None) -> RunData:
    """Read a run folder, or an evaluation folder, into a `RunData`.

    Args:
        path: a run folder (`config.yaml`, `metrics.csv` or `models/`) or an evaluation
            folder (`metrics.json` and `per_image.csv`, e.g. `RUN/eval-test`).
        evaluation: the evaluation folder to show for a run folder (default: `test/`, else
            the newest `eval-*` folder).

    Returns:
        The collected data; parts that are absent are None or empty.

    Raises:
        RunError: `path` is neither a run folder nor an evaluation folder.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunError("not found" if not path.exists() else "not a folder", path)
    run_dir: Path | None
    chosen: Evaluation | None = None
    if (path / "metrics.json").is_file() and not is_run_folder(path):
        chosen = read_evaluation(path)
        run_dir = None
        given = (chosen.metrics.get("checkpoint") if chosen else None) or ""
        candidates = [run_of(given)] if given else []
        candidates.append(path.parent if is_run_folder(path.parent) else None)
        run_dir = next((c for c in candidates if c is not None), None)
    elif is_run_folder(path):
        run_dir = path
    else:
        raise RunError("neither a run folder (config.yaml, models/) nor an "
                       "evaluation folder (metrics.json)", path)
    evaluations = find_evaluations(run_dir) if run_dir else []
    if chosen is None:
        folder = Path(evaluation) if evaluation else (evaluations[0] if evaluations else None)
        if folder is not None:
            chosen = read_evaluation(folder)
            if chosen is None:
                raise RunError("holds no readable metrics.json", folder)
    config: dict[str, Any] = {}
    if run_dir and (run_dir / "config.yaml").is_file():
        loaded = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        config = loaded if isinstance(loaded, dict) else {}
    history = read_csv_rows(run_dir / "metrics.csv") if run_dir and \
        (run_dir / "metrics.csv").is_file() else []
    checkpoint_path = _evaluated_checkpoint(chosen, run_dir)
    checkpoint = _load_checkpoint(checkpoint_path)
    if checkpoint is not None and not config:
        config = dict(checkpoint.config)
    facts = read_log(run_dir / "train.log") if run_dir else LogFacts()
    dataset_json = read_json(run_dir / "dataset.json") if run_dir else None
    others = [e for e in evaluations if chosen is None or e.resolve() != chosen.folder.resolve()]
    name = path.name if run_dir is None or path == run_dir else f"{run_dir.name}/{path.name}"
    return RunData(path, name, run_dir, config, history,
                   checkpoint_path if checkpoint is not None else None, checkpoint, facts,
                   dataset_json, chosen, others)
