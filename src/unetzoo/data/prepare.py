"""From a dataset folder to what training or evaluation needs: pairs per split, checked
up front, with the task, classes and preprocessing."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..instances.targets import DEFAULT_REPRESENTATION
from ..task import Task
from .cache import SampleCache, choose_mode
from .classmap import find_class_map
from .dataset import (
    SAMPLE_SIZE,
    DatasetInfo,
    SegmentationDataset,
    channel_statistics,
    check_files,
    classes_not_in_training,
    read_masks,
    scan_dataset,
    spread_sample,
)
from .input_stats import InputStatistics
from .layouts import Pair, find_pairs
from .masks import MaskOptions, MaskReading, format_values, survey_pair
from .masks.targets import InstanceEncoder
from .split import split_for_run
from .split_record import SplitRecord
from .transforms import Preprocessing, ResizeMode, resize_transform

log = logging.getLogger("unetzoo")


@dataclass
class TrainData:
    """The splits, what the scan found, and the preprocessing of one run."""

    root: Path
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    info: DatasetInfo
    preprocessing: Preprocessing
    new_split: bool = False
    cache: str = "auto"  # see data.cache: auto, memory, disk or off
    record: SplitRecord | None = None  # the run's split, with each file's size and digest
    input_stats: InputStatistics | None = None  # what the training images' values look like
    # the instance task: labels -> the representation's targets, in the loading workers
    target_encoder: InstanceEncoder | None = None
    _caches: dict[tuple, SampleCache] = field(default_factory=dict, repr=False, compare=False)

    @property
    def reading(self) -> MaskReading:
        """How the masks are read (task, classes, stored values, evidence)."""
        assert self.info.reading is not None
        return self.info.reading

    def dataset(self, pairs: list[Pair], transform=None, seed: int | None = None
                ) -> SegmentationDataset:
        """A dataset of `pairs`; with a (training) `transform`, unreadable samples met while
        training are logged and skipped rather than stopping the epoch. Unless `cache` is
        off, files are decoded (and, for training in resize mode, resized) once per run."""
        data = SegmentationDataset(pairs, self.preprocessing, self.reading, transform, seed,
                                   skip_bad=transform is not None,
                                   target_encoder=self.target_encoder)
        data.cache = self.sample_cache(data, resized=transform is not None and
                                       self.preprocessing.resize_mode == "resize")
        return data

    def sample_cache(self, data: SegmentationDataset, resized: bool) -> SampleCache | None:
        """The cache of `data`'s pairs, made at its first use and kept for the run."""
        if self.cache == "off" or not data.pairs:
            return None
        size = self.preprocessing.img_size if resized else None
        key = (tuple(p.image for p in data.pairs), size)
        if key not in self._caches:
            channels = self.preprocessing.in_channels
            mode, why = choose_mode(self.cache, data.pairs, channels, size)
            reader = data.read
            if size is not None:
                resize = resize_transform(size)

                def reader(index: int) -> tuple:
                    image, target = data.read(index)
                    out = resize(image=image, mask=target) if target is not None else \
                        resize(image=image)
                    return out["image"], out.get("mask")

            # what shapes a target (not the survey's wording or size)
            rule = replace(self.reading, evidence="", surveyed=0)
            resized = f"{size}:centres" if size is not None else None  # how it resizes
            settings = f"channels={channels}|resize={resized}|{rule!r}"
            self._caches[key] = SampleCache(data.pairs, reader, mode, settings)
            log.info("sample cache for %d images: %s (%s)", len(data.pairs), mode, why)
        return self._caches[key]


@dataclass
class ScannedData:
    """A dataset's splits and what the scan found, before any setting of the run that a
    plan may choose (patch, resize mode, normalisation, cache) is applied: what a plan
    fingerprints (`data.fingerprint`), and what `finish_data` turns into `TrainData`."""

    root: Path
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    info: DatasetInfo
    new_split: bool = False
    record: SplitRecord | None = None

    @property
    def reading(self) -> MaskReading:
        """How the masks are read (task, classes, stored values, evidence)."""
        assert self.info.reading is not None
        return self.info.reading


def scan_data(dataset: str | Path | None, csvfile: str | Path | None = None, *,
              task: Task | None = None, num_classes: int | None = None,
              class_names: Sequence[str] | None = None, class_map: str | Path | None = None,
              ignore_index: int | None = None, instances: bool = False,
              mask_threshold: float | None = None, full_check: bool = False,
              val_fraction: float = 0.1, seed: int = 0, resume_from: Path | None = None,
              add_new: str | None = None, allow_duplicates: bool = False,
              allow_copies: bool = False, record: bool = True,
              components: bool = False) -> ScannedData:
    """Find pairs, assign splits and check the files (all of them with `full_check`, else
    headers and a sample: see `data.dataset`): the first half of `prepare_data`, whose
    arguments these are.

    Raises:
        ConfigError: no dataset, train/val rows without masks, or options that contradict
            the masks.
        DataError: naming the file, for the first unreadable, mismatched or misread pair,
            or a split that fails its checks.
    """
    if not dataset:
        raise ConfigError("--dataset is required")
    root = Path(dataset)
    pairs = find_pairs(root, csvfile)
    source = None
    if csvfile is not None:
        source = Path(csvfile) if Path(csvfile).is_file() else root / csvfile
    split = split_for_run(pairs, root, csvfile=source, val_fraction=val_fraction, seed=seed,
                          resume_from=resume_from, add_new=add_new,
                          allow_duplicates=allow_duplicates, allow_copies=allow_copies,
                          record=record)
    for level, line in split.lines:
        log.log(level, line)
    train, val, test, made = split.train, split.val, split.test, split.made
    missing = [p for p in train + val if not p.labelled]
    if missing:
        raise ConfigError(f"{len(missing)} train/val rows have no mask, e.g. {missing[0].image}")
    unlabelled = [p for p in test if not p.labelled]
    if unlabelled:
        log.info("%d test image(s) without masks are left out of the test evaluation",
                 len(unlabelled))
        test = [p for p in test if p.labelled]
    options = MaskOptions(task, num_classes, find_class_map(root, class_map),  # type: ignore[arg-type]
                          ignore_index, instances, mask_threshold, components)
    info = scan_dataset(train + val + test, options, class_names, full=full_check)
    for line in classes_not_in_training(info, train, val + test, len(train + val + test)):
        log.warning(line)
    return ScannedData(root, train, val, test, info, made, split.record)


def finish_data(scanned: ScannedData, *, img_size: int = 256, resize_mode: ResizeMode = "crop",
                normalization: str = "dataset", preprocessing: Preprocessing | None = None,
                cache: str = "auto", representation: str | None = None) -> TrainData:
    """The second half of `prepare_data`: `scanned` with its preprocessing, given (resume,
    `--init`) or fixed here (`img_size`, `resize_mode`, `normalization`, and the
    normalisation statistics measured on the training images); for the instance task, the
    target `representation` its samples are encoded in (`InstanceEncoder`).

    Raises:
        DataError: none of the sampled training images can be read.
        ConfigError: a resize mode or normalisation that does not exist.
    """
    if preprocessing is None:
        mean, std = channel_statistics(scanned.train, scanned.info.in_channels)
        preprocessing = Preprocessing(scanned.info.in_channels, mean, std, img_size,
                                      resize_mode, normalization)
    per_image = preprocessing.normalize if preprocessing.normalization != "dataset" else None
    stats = InputStatistics.measure([p.image for p in scanned.train],
                                    scanned.info.in_channels, per_image)
    encoder = InstanceEncoder(representation or DEFAULT_REPRESENTATION) \
        if scanned.info.task == "instance" else None
    return TrainData(scanned.root, scanned.train, scanned.val, scanned.test, scanned.info,
                     preprocessing, scanned.new_split, cache, record=scanned.record,
                     input_stats=stats, target_encoder=encoder)


def prepare_data(dataset: str | Path | None, csvfile: str | Path | None = None, *,
                 task: Task | None = None, num_classes: int | None = None,
                 class_names: Sequence[str] | None = None, class_map: str | Path | None = None,
                 ignore_index: int | None = None, instances: bool = False,
                 mask_threshold: float | None = None, full_check: bool = False,
                 val_fraction: float = 0.1, seed: int = 0, img_size: int = 256,
                 resize_mode: ResizeMode = "crop", preprocessing: Preprocessing | None = None,
                 cache: str = "auto", normalization: str = "dataset",
                 resume_from: Path | None = None, add_new: str | None = None,
                 allow_duplicates: bool = False, allow_copies: bool = False,
                 record: bool = True, components: bool = False,
                 representation: str | None = None) -> TrainData:
    """Find pairs, assign splits, check the files (all of them with `full_check`, else
    headers and a sample: see `data.dataset`), and fix the preprocessing (normalisation
    from the training images) unless one is given (resume): `scan_data`, then
    `finish_data`. A planned run (`--time-budget`) calls the two itself, with the plan
    between them, so that the data are prepared once with the planned settings.

    The class map is `class_map`, else `classes.yaml` in the dataset folder when present.
    Test images without masks are left out of the test evaluation. `info.reading` says how
    the masks are read (task, classes, evidence; see `data.masks`). `cache` says how decoded
    samples are kept (see `data.cache`); `normalization` how images are normalised (see
    `Preprocessing`). The split is checked and, for a resumed run, kept as the run recorded
    it (`resume_from`, `add_new`, `allow_duplicates`, `allow_copies`, `record`: see
    `data.split.split_for_run`); `TrainData.record` is the run's split record to write.

    Raises:
        ConfigError, DataError: as `scan_data` and `finish_data`.
    """
    scanned = scan_data(dataset, csvfile, task=task, num_classes=num_classes,
                        class_names=class_names, class_map=class_map,
                        ignore_index=ignore_index, instances=instances,
                        mask_threshold=mask_threshold, full_check=full_check,
                        val_fraction=val_fraction, seed=seed, resume_from=resume_from,
                        add_new=add_new, allow_duplicates=allow_duplicates,
                        allow_copies=allow_copies, record=record, components=components)
    return finish_data(scanned, img_size=img_size, resize_mode=resize_mode,
                       normalization=normalization, preprocessing=preprocessing, cache=cache,
                       representation=representation)


def run_reading(task: Task, num_classes: int, dataset: str | Path, pairs: Sequence[Pair],
                config: Mapping[str, Any] | None = None,
                recorded: Mapping[str, Any] | None = None) -> MaskReading:
    """How a trained run reads the masks of `pairs` of `dataset` (evaluation).

    A run's class mapping (index values, colours, class map) is re-applied as recorded in
    its checkpoint; binary levels and class folders are read from the pairs with the run's
    options (task, ignore value, --instances, --mask-threshold, class map), so masks stored
    as 0/1 evaluate a model trained on 0/255 ones.

    Raises:
        DataError: naming a file, when the masks do not fit the run's task and classes.
    """
    config = config or {}
    if recorded and recorded.get("rule") in ("index", "colour", "class-map"):
        reading = MaskReading.from_dict(dict(recorded))
        if reading.rule == "index":
            _check_void_beside_labels(reading, spread_sample(list(pairs), SAMPLE_SIZE))
    else:
        given = config.get("class_map")
        root = Path(dataset)
        if given and not (Path(given).is_file() or (root / given).is_file()):
            given = None
        options = MaskOptions(task, None if task == "instance" else num_classes,
                              find_class_map(root, given), config.get("ignore_index"),
                              bool(config.get("instances")), config.get("mask_threshold"),
                              bool(config.get("instances_from_components")))
        reading = read_masks(spread_sample(list(pairs), SAMPLE_SIZE), options)
    if task == "instance":  # an instance model's channels are its representation's
        if reading.task != "instance":
            raise DataError(f"the masks read as {reading.evidence}, but the model finds "
                            "objects in instance label images", Path(dataset))
    elif (reading.task, reading.num_classes) != (task, num_classes):
        raise DataError(f"the masks read as {reading.evidence}, but the model was trained "
                        f"for {task} with {num_classes} output(s)", Path(dataset))
    return reading


def _check_void_beside_labels(reading: MaskReading, pairs: Sequence[Pair]) -> None:
    """Refuse masks where the run's void value is the only non-zero value and never sits
    beside class labels: their objects would be ignored, and every such image would score as
    if nothing had been missed (a 0/255 binary dataset under a run that reads 255 as void)."""
    void = set(reading.ignore)
    if not void:
        return
    alone: list[tuple[Path, list[int]]] = []
    for pair in pairs:
        if pair.mask is None:
            continue
        facts = survey_pair(pair).masks[0]
        labels = set(facts.nonzero.tolist())
        if labels & void and labels - void:
            return  # void beside labels, as in the run's own data
        if labels and labels <= void:
            alone.append((pair.mask, sorted(labels)))
    if alone:
        path, values = alone[0]
        raise DataError(f"holds only 0 and {format_values(values)}, which the model reads as "
                        f"void; so do {len(alone)} of {len(pairs)} masks, none with a class "
                        "label beside it: their objects would go unscored (the model: "
                        f"{reading.evidence})", path)


def labelled_split(dataset: str | Path, csvfile: str | Path | None, split: str | None
                   ) -> tuple[list[Pair], str | None]:
    """The labelled pairs of one split and the split used: `split` None evaluates the test
    split when the layout has splits, else every pair; "all" every pair; a named split
    must exist.

    Raises:
        DataError: a named split the layout does not have (or has no rows of), or pairs
            without masks.
    """
    pairs = find_pairs(dataset, csvfile)
    where = Path(dataset)
    if csvfile:  # named as find_pairs found it: as given, else relative to the dataset
        where = Path(csvfile) if Path(csvfile).is_file() else where / csvfile
    found = sorted({p.split for p in pairs if p.split})
    if split == "all" or (split is None and not found):
        chosen, used = pairs, None
    else:
        wanted = split or "test"
        if not found:
            raise DataError(f"has no split information (no split column or train/val/test "
                            f"folders), so there is no {wanted!r} split; pass --split all to "
                            "evaluate every image, or --csvfile with the split a run saved "
                            "(<run>/split.csv)", where)
        chosen, used = [p for p in pairs if p.split == wanted], wanted
        if not chosen:
            has = sorted({p.split or "none" for p in pairs})
            raise DataError(f"no rows of split {wanted!r}; the split has: {', '.join(has)}; "
                            f"pass --split {found[-1]} (or "
                            "--split all for every image)", where)
    unlabelled = [p for p in chosen if not p.labelled]
    if unlabelled:
        raise DataError("has no mask to evaluate against (use `unetzoo predict` for "
                        "unlabelled images)", unlabelled[0].image)
    check_files(chosen)
    return chosen, used

