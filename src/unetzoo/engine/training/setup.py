"""Setting a training run up and running it: the `train()` API.

Everything that can be checked is checked before the run folder is touched: the run
folder's state, every image and mask (headers and a sample, see `data.dataset`), the model
and its options. The set-up goes one way, as nnU-Net orders it: scan the dataset (pairs,
splits, checks), take what `--init` fixes (architecture, normalisation), fingerprint and
plan (`--time-budget` without a recorded plan), build the final config, then prepare the
data once with its settings (patch, resize mode, normalisation, cache); nothing is patched
afterwards. Then the trainer runs (`trainer.Trainer`), and the best checkpoint is
evaluated on the test split.
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from ...artefacts.checkpoint import Checkpoint, read_checkpoint_file, save_checkpoint
from ...artefacts.initialise import init_from
from ...artefacts.references import load_checkpoint
from ...artefacts.runs import DATASET_FILE, SPLIT_FILE, check_run_dir, prepare_run_dir
from ...config import DEFAULT_REPRESENTATION, TrainConfig, build_config
from ...data.dataset import DatasetInfo, spread_sample
from ...data.io import read_header
from ...data.layouts import Pair
from ...data.prepare import ScannedData, TrainData, finish_data, scan_data
from ...data.transforms import Preprocessing
from ...errors import ConfigError, DataError
from ...fileio import atomic_write_text
from ...instances.labels import choose_thresholds
from ...instances.targets import get_representation
from ...losses import loss_name
from ...models import count_parameters, create_model
from ...runtime import Runtime
from ..distributed import Distributed
from ..evaluate import EvaluationResult, evaluate_sharded, format_summary
from ..inference.instance import InstanceDecoding
from ..inference.predictor import InferenceOptions, Predictor
from ..plan import plan_config
from .loggers import logging_callbacks
from .resume import RunPlan, plan_run
from .trainer import Callback, Trainer, TrainResult, data_workers

__all__ = ["TrainResult", "train"]

log = logging.getLogger("unetzoo")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(config: TrainConfig | None = None, *, given: dict[str, Any] | None = None,
          callbacks: list[Callback] | None = None, explicit: Collection[str] | None = None,
          **options: Any) -> TrainResult:
    """Train a model from a config (or keyword options) and evaluate it on the test split.

    With `resume`, the run continues with its saved config; options given explicitly
    (`given`, or keyword options) override it, e.g. a larger `epoch`. Under torchrun the
    processes train together (see `unetzoo.engine.distributed`); rank 0 checks and writes.

    Args:
        config: a validated `TrainConfig`; or None and the options as keywords
            (`train(dataset="data/", model="unet", epoch=50)`).
        given: the options the user set explicitly (they override a resumed run's config).
        callbacks: extra `Callback`s (loggers, reports) called by the trainer.
        explicit: the options the user chose (default: those of `given`); with a
            `time_budget` and no `plan` in the config, every other recipe option comes from
            `unetzoo plan` (see `engine.plan`).
        **options: `TrainConfig` fields, when `config` is None.

    Returns:
        A `TrainResult`: run folder, best and last checkpoints, history, test metrics.

    Raises:
        ConfigError: an option is unknown or out of range.
        DataError: a dataset file cannot be used (named in the message).
        RunError: the run folder or an output cannot be used.
        TrainingError: training cannot go on (e.g. a non-finite loss).
        TrainingInterrupted: stopped by SIGINT / SIGTERM after saving (resumable).

    Example:
        >>> result = train(dataset="data/", csvfile="split.csv", model="unet",
        ...                loss="bce+dice", epoch=50)            # doctest: +SKIP
        >>> result.best_checkpoint                               # doctest: +SKIP
        PosixPath('runs/unet-20261130-120000/models/best.pt')
    """
    if config is None:
        config = build_config(options)
        given = {**(given or {}), **options}
    context = Distributed.start()
    level = log.level
    if not context.is_main:
        log.setLevel(logging.ERROR)
    try:
        chosen = set(explicit if explicit is not None else (given or {}))
        return _train(config, given or {}, context, list(callbacks or []), chosen)
    finally:
        log.setLevel(level)
        context.stop()


def set_up_run(config: TrainConfig, given: dict[str, Any], explicit: Collection[str],
               processes: int = 1) -> tuple[RunPlan, TrainData]:
    """The run's plan (folder, checkpoint to continue, final config) and its data, in one
    direction: resolve `--resume`, check the run folder, read the `--init` source, scan the
    dataset (pairs, splits, checks), take what the source fixes, plan under a time budget
    (fingerprint, then the recipe; `processes` training together share each epoch), and
    prepare the data once with the final config's settings. Writes nothing.

    Raises:
        ConfigError, DataError, RunError, CheckpointError: as `train`.
    """
    explicit = set(explicit)
    plan = plan_run(config, given)
    cfg = plan.config
    if cfg.task == "instance" and cfg.representation is None:  # recorded, so a resume keeps it
        cfg = replace(cfg, representation=DEFAULT_REPRESENTATION)
    check_run_dir(plan.run_dir, resume=plan.reuse_folder, overwrite=cfg.overwrite)
    checkpoint = plan.checkpoint
    source = None
    if cfg.init and checkpoint is None:  # read before anything is written
        source = load_checkpoint(cfg.init, "--init")
    def scan(cfg: TrainConfig) -> ScannedData:
        return scan_data(cfg.dataset, cfg.csvfile, task=cfg.task,
                         num_classes=cfg.num_classes, class_names=cfg.class_names,
                         class_map=cfg.class_map, ignore_index=cfg.ignore_index,
                         instances=cfg.instances, mask_threshold=cfg.mask_threshold,
                         full_check=cfg.full_check, val_fraction=cfg.val_fraction,
                         seed=cfg.seed, resume_from=plan.split_record,
                         add_new=cfg.add_new, allow_duplicates=cfg.allow_duplicates,
                         allow_copies=cfg.allow_copies,
                         components=cfg.instances_from_components)

    if source is not None and source.task == "instance" and cfg.task is None \
            and not cfg.instances:
        cfg, scanned = _instance_from_init(cfg, source, scan)
    else:
        scanned = scan(cfg)
    kept: dict[str, str] = {}
    if source is not None:
        cfg, kept = init_config(cfg, source, scanned.info.in_channels, explicit)
    if cfg.time_budget and cfg.plan is None and checkpoint is None:
        cfg, recipe = plan_config(cfg, scanned, explicit, kept, processes)
        log.info("recipe from `unetzoo plan` (explicit options kept):")
        for reason in recipe.explained(explicit, kept):
            log.info(f"  {reason}")
    preprocessing: Preprocessing | None = None  # None: measured as the config says
    if checkpoint is not None:
        preprocessing = checkpoint.preprocessing
    elif source is not None and "normalize" in kept:
        preprocessing = init_preprocessing(cfg, source, scanned.info.in_channels)
    data = finish_data(scanned, img_size=cfg.img_size, resize_mode=cfg.resize_mode,
                       normalization=cfg.normalize, preprocessing=preprocessing,
                       cache=cfg.cache, representation=cfg.representation)
    return replace(plan, config=cfg), data


def _instance_from_init(cfg: TrainConfig, source: Checkpoint,
                        scan: Callable[[TrainConfig], ScannedData]
                        ) -> tuple[TrainConfig, ScannedData]:
    """No `--task` and `--init` an instance model: masks that read as instance label images
    train the instance task with the source's representation (unless `--representation`
    is given), said in one line; masks that do not (binary masks, class maps) are read by
    the usual rule. Label images whose ids recur in every image (10, 20, ..., 60) read as
    classes without the source; the source's task decides it.

    Raises:
        DataError, ConfigError: as `scan_data`, for the usual reading.
    """
    theirs = (source.instance or {}).get("representation") or DEFAULT_REPRESENTATION
    wanted = replace(cfg, task="instance", representation=cfg.representation or theirs)
    try:
        scanned = scan(wanted)
    except DataError:
        return cfg, scan(cfg)
    log.info(f"--init {cfg.init} is an instance model ({theirs}) and the masks read as "
             f"instance label images: training --task instance, {wanted.representation} "
             "representation")
    return wanted, scanned


def _train(config: TrainConfig, given: dict[str, Any], context: Distributed,
           callbacks: list[Callback], explicit: set[str]) -> TrainResult:
    plan, data = context.shared(
        lambda: set_up_run(config, given, explicit, context.world_size))
    config, run_dir = plan.config, plan.run_dir

    def set_up_here() -> tuple[Runtime, nn.Module]:
        runtime = Runtime.resolve(context.device(config.device), config.precision,
                                  config.channels_last, config.threads)
        if config.sync_bn and context.enabled and runtime.device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs "
                              "only); on CPUs use a per-sample norm, e.g. --model-args "
                              "norm=group")
        seed_everything(config.seed)
        model = build_model(config, data.info, plan.checkpoint)
        if context.is_main:
            prepare_run_dir(run_dir, resume=plan.reuse_folder, overwrite=config.overwrite,
                            needed_bytes=count_parameters(model) * 4 * 8)
        else:
            missing_files(data)
        return runtime, model

    runtime, model = context.agreed(set_up_here)
    handler = None
    if context.is_main:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    try:
        return _run(config, run_dir, runtime, data, model, plan.checkpoint, context, callbacks)
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()


def missing_files(data: TrainData) -> None:
    """Raise DataError for the first train or val file this process cannot see (a node
    whose copy of the dataset is incomplete)."""
    for pair in data.train + data.val:
        for path in (pair.image, pair.mask):
            if path is not None and not path.is_file():
                raise DataError("not found on this node (every node needs the whole "
                                "dataset at the same path)", path)



def build_model(config: TrainConfig, info: DatasetInfo, checkpoint: Checkpoint | None
                ) -> nn.Module:
    """The network of a run: rebuilt from `checkpoint` when resuming, else from the config
    with the dataset's channels and classes (initialised from `config.init` where names
    and shapes match)."""
    if checkpoint is not None:
        spec = checkpoint.model_spec
        return create_model(spec["name"], spec["in_channels"], spec["num_classes"],
                            **spec["kwargs"])
    model = create_model(config.model, info.in_channels, output_channels(config, info),
                         preset=config.preset, **config.model_args)
    if config.init:
        init_from(model, config.init)
    return model


def output_channels(config: TrainConfig, info: DatasetInfo) -> int:
    """The network's output channels: 1 for a binary task, the classes otherwise, the
    representation's channels for the instance task."""
    if info.task == "instance":
        return get_representation(config.representation or DEFAULT_REPRESENTATION).num_channels
    return 1 if info.task == "binary" else info.num_classes


ARCHITECTURE = ("model", "preset", "model_args")  # the options that choose the network


def init_config(config: TrainConfig, source: Checkpoint, in_channels: int,
                explicit: Collection[str] = ()) -> tuple[TrainConfig, dict[str, str]]:
    """The config of a run started from `source` (`--init`), said in one line: its
    architecture, unless the run sets one (`--model`, `--preset` or `--model-args`), and
    its normalisation (what its weights learnt on), unless the run sets `--normalize` or
    the dataset has another number of channels.

    Returns:
        The config, and the options `source` fixed, each with what fixed it (for the
        plan's reasons: `RecipePlan.explained`).
    """
    spec, theirs = source.model_spec, source.preprocessing
    values = config.to_dict()
    kept: dict[str, str] = {}
    own = bool(set(ARCHITECTURE) & set(explicit)) or config.preset or config.model_args or \
        config.model != "unet"
    if own:
        what = [f"your --model {config.model} (weights loaded where names and shapes match)"]
    else:
        what = [f"{spec['name']} with "
                f"{', '.join(f'{k}={v}' for k, v in spec['kwargs'].items()) or 'defaults'}"]
        values.update(model=spec["name"], preset=None, model_args=dict(spec["kwargs"]))
        kept.update(dict.fromkeys(ARCHITECTURE, f"--init {config.init}'s architecture"))
    if "normalize" in explicit:
        what.append(f"your --normalize {config.normalize} (statistics of this dataset)")
    elif theirs.in_channels != in_channels:
        what.append(f"{theirs.in_channels} input channel(s) there, {in_channels} here: "
                    "normalisation from this dataset")
    else:
        what.append(f"its normalisation is kept ({_normalisation(theirs)})")
        values["normalize"] = theirs.normalization
        kept["normalize"] = f"--init {config.init}'s normalisation"
    log.info(f"--init {config.init}: {'; '.join(what)}")
    return (build_config(values) if kept else config), kept


def _normalisation(pre: Preprocessing) -> str:
    if pre.normalization != "dataset":
        return f"{pre.normalization} normalisation"
    return (f"mean {', '.join(f'{m:.3g}' for m in pre.mean)}, std "
            f"{', '.join(f'{v:.3g}' for v in pre.std)}")


def init_preprocessing(config: TrainConfig, source: Checkpoint, in_channels: int
                       ) -> Preprocessing:
    """With `--init` keeping the source's normalisation (see `init_config`): its
    statistics and mode, with the run's patch size and resize mode."""
    theirs = source.preprocessing
    return Preprocessing(in_channels, theirs.mean, theirs.std, config.img_size,
                         config.resize_mode, theirs.normalization)


def _run(config: TrainConfig, run_dir: Path, runtime: Runtime, data: TrainData,
         model: nn.Module, checkpoint: Checkpoint | None, context: Distributed,
         callbacks: list[Callback]) -> TrainResult:
    info = data.info
    if context.is_main:
        if data.record is not None:  # the split the run keeps, with each file's digest
            data.record.write(run_dir / SPLIT_FILE)
        atomic_write_text(run_dir / "config.yaml",
                          yaml.safe_dump(config.to_dict(), sort_keys=False))
        atomic_write_text(run_dir / DATASET_FILE, json.dumps(dataset_facts(data), indent=2)
                          + "\n")
    loggers = logging_callbacks(config, run_dir) if context.is_main else []
    trainer = Trainer(config, data, model, run_dir, runtime, context, [*loggers, *callbacks])
    if checkpoint is not None:
        trainer.restore(checkpoint)
    params = count_parameters(model)
    processes = f" x {context.world_size} processes" if context.enabled else ""
    log.info(f"unetzoo train: {config.model} ({params / 1e6:.2f} M parameters) on {data.root}")
    log.info(f"  {info.task}, {len(info.class_names)} class(es), {info.in_channels} channel(s); "
             f"train {len(data.train)} / val {len(data.val)} / test {len(data.test)} images")
    log.info(f"  images: {info.images}")
    log.info(f"  masks: {data.reading.evidence}")
    length = f"time budget {config.time_budget:g} min" if config.time_budget else \
        f"{config.epoch} epochs"
    pre = data.preprocessing
    log.info(f"  patch {pre.img_size} ({pre.resize_mode}), batch {config.batch}"
             f"{processes}, {trainer.steps_per_epoch} steps/epoch, {length}, "
             f"loss {_loss_text(config, info.task)}, {config.optimizer} lr "
             f"{config.lr:g} ({config.schedule})"
             f"{f', EMA {config.ema:g}' if config.ema else ''}")
    log.info(f"  runtime: {runtime.describe()}")
    log.info(f"  run folder: {run_dir}{_resume_note(trainer) if checkpoint else ''}")
    trainer.fit()
    if data.info.task == "instance":
        context.shared(lambda: choose_instance_thresholds(config, runtime, data,
                                                          trainer.best_path))
    result = TrainResult(run_dir, trainer.best_path, trainer.last_path, trainer.history,
                         trainer.best_score)
    if data.test and config.test:
        result.test = _test(config, runtime, data, context, result.best_checkpoint)
        if context.is_main:
            result.test.write(run_dir / "test")
        log.info(format_summary(result.test, f"test split, best checkpoint "
                                             f"({result.best_checkpoint.name}):"))
    trainer.callbacks.on_train_end(trainer, result)
    log.info(f"run folder: {run_dir}")
    return result


def dataset_facts(data: TrainData) -> dict[str, Any]:
    """What the run decided about its dataset (the run folder's dataset.json): how the
    masks are read (task, classes, stored values, evidence), channels, split sizes and how
    much was read before training."""
    info = data.info
    return {"dataset": str(data.root), "dataset_path": str(Path(data.root).resolve()),
            "in_channels": info.in_channels,
            "class_names": list(info.class_names), "masks": data.reading.to_dict(),
            "splits": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
            "images": info.images, "pixels_checked": info.pixels_checked,
            "headers_checked": info.headers_checked}


THRESHOLD_VALUES = 60_000_000  # output values (channels x pixels) held to choose thresholds


def _loss_text(config: TrainConfig, task: str) -> str:
    """The loss as the start lines say it: its name, or an instance model's representation
    and its terms per channel."""
    if task == "instance":
        return get_representation(config.representation or DEFAULT_REPRESENTATION).loss_text()
    return loss_name(config.loss, task)


def choose_instance_thresholds(config: TrainConfig, runtime: Runtime, data: TrainData,
                               best_path: Path) -> None:
    """Choose the thresholds that turn the best checkpoint's outputs into objects on the
    validation images (else a spread sample of the training images, said in one line), as
    StarDist chooses its thresholds after training (`instances.labels.choose_thresholds`:
    a grid of foreground and seed thresholds and minimum sizes, scored by the DSB mean AP),
    and write them into `best.pt`; one line says what was chosen and how it scored.
    At most `THRESHOLD_VALUES` output values are held (a spread sample of the images)."""
    best = read_checkpoint_file(best_path)
    decoding = InstanceDecoding.from_dict(best.instance, str(best_path))
    pairs, split = (data.val, "validation") if data.val else (data.train, "training")
    if not data.val:
        log.warning("no validation images: the instance thresholds are chosen on training "
                    "images, which flatter them (keep a val split to choose them fairly)")
    channels = decoding.representation.num_channels
    pixels = sum(h * w for h, w in (_size(p) for p in pairs)) or 1
    keep = max(1, min(len(pairs), int(len(pairs) * THRESHOLD_VALUES / (pixels * channels))))
    pairs = spread_sample(pairs, keep)
    predictor = Predictor.from_checkpoint(best, InferenceOptions(
        runtime.for_backend("torch"), batch_size=config.batch))
    outputs, truths, names = [], [], []
    dataset = data.dataset(pairs)
    for index in range(len(pairs)):
        sample = dataset[index]
        outputs.append(np.asarray(predictor.probabilities(sample["image"])))
        truths.append(np.maximum(sample["labels"].numpy(), 0))
        names.append(str(sample["name"]))
    choice = choose_thresholds(outputs, truths, decoding.representation, names=names)
    chosen = {**choice.to_dict(), "split": split}
    instance = replace(decoding, thresholds=choice.thresholds, chosen=chosen).to_dict()
    save_checkpoint(best_path, replace(best, instance=instance))
    t = choice.thresholds
    log.info(f"objects: thresholds chosen on {choice.images} {split} image(s): foreground > "
             f"{t.foreground:g}, seed > {t.seed:g}, objects of {t.min_size}+ pixels (mean AP "
             f"{choice.mean_ap:.4f}, AP@0.5 {choice.ap50:.4f}; {choice.seconds:.0f} s)")


def _size(pair: Pair) -> tuple[int, int]:
    header = read_header(pair.image)
    return header.height, header.width


def _test(config: TrainConfig, runtime: Runtime, data: TrainData, context: Distributed,
          best_path: Path) -> EvaluationResult:
    """The best checkpoint on the test split (sharded across processes)."""
    best = context.shared(lambda: read_checkpoint_file(best_path))
    predictor = Predictor.from_checkpoint(best, InferenceOptions(runtime, batch_size=config.batch,
                                                                tta=config.test_tta))
    return evaluate_sharded(context, predictor, data, data.test, data.info.class_names,
                            workers=data_workers(config.workers), progress=config.progress)


def _resume_note(trainer: Trainer) -> str:
    done = math.ceil(trainer.progress.samples / trainer.global_batch)
    if not done:
        return f" (resuming after epoch {trainer.epoch})"
    return (f" (resuming in epoch {trainer.epoch + 1} after step {trainer.step}, "
            f"{done}/{trainer.steps_per_epoch} of its batches done)")
