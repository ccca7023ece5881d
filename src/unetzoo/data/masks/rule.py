"""The decision: from the facts of a dataset's masks (a spread sample, or every pair with
--full-check) and what the user said, one `MaskReading` for the whole dataset, or a refusal
naming a file. Each kind of mask has its rule: binary (`levels`), index (`index`), colour,
class folders, a class map, --instances and --mask-threshold (here)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from ...errors import DataError
from ...task import IGNORE_INDEX, Task
from ..classmap import ClassMap, format_value
from . import refusals
from .facts import MaskFacts, PairSurvey
from .index import first, index_reading, instance_like, label_example, label_values
from .instance import check_instance_options, instance_reading
from .levels import Levels
from .reading import MaskOptions, MaskReading

RULES = ("binary", "index", "instances", "threshold", "colour", "class-map", "class-folders",
         "labels", "components")


def decide(surveys: Sequence[PairSurvey], options: MaskOptions | None = None
           ) -> MaskReading:
    """The reading of a dataset's masks from the surveys of (a sample of) its pairs.

    Args:
        surveys: `survey_pair` of each pair read, labelled pairs only (with `objects=True`
            for the instance task).
        options: what the user said (task, classes, class map, ignore value, --instances,
            --mask-threshold, --instances-from-components); each overrides what the values
            alone would say. For the instance task `num_classes` is not the masks' (the
            target representation sets the model's channels) and is not compared.

    Returns:
        The MaskReading, its `evidence` one line such as "binary: 612 masks 0/255, 58
        masks 0/1, 31 masks with 0.4 % in-between pixels, threshold 50 %".

    Raises:
        DataError: one line naming a file, the values found and the flag or class-map
            entry that resolves it, when the values are not read as meant on their own.
        ConfigError: options that contradict each other or the layout.
    """
    options = options or MaskOptions()
    if not surveys:
        raise refusals.no_masks()
    folders = surveys[0].pair.class_names if surveys[0].pair.class_masks else ()
    facts = [f for s in surveys for f in s.masks]
    if options.task == "instance" or options.components:
        check_instance_options(options, bool(folders))
        # the number of output channels is the target representation's, not the masks'
        return replace(instance_reading(facts, options), surveyed=len(surveys))
    if options.class_map is not None:
        reading = _by_class_map(options, bool(folders))
    elif folders:
        reading = _class_folders(surveys, folders, options)
    elif options.instances:
        reading = _instances(facts, options)
    elif options.threshold is not None:
        reading = _thresholded(facts, options)
    elif any(f.colour for f in facts):
        reading = _colour(facts, options)
    else:
        reading = _gray(facts, options)
    if options.num_classes and options.num_classes != reading.num_classes:
        raise refusals.num_classes_misfit(options.num_classes, reading.evidence)
    return replace(reading, surveyed=len(surveys))


def read_as(task: Task, num_classes: int, *, ignore_index: int | None = None,
            class_map: ClassMap | None = None) -> MaskReading:
    """The reading given by a task alone (no survey): binary 0 and 1 or the full scale
    (multilabel: one such mask per class), multiclass class indices 0..K-1 with 255 void,
    or the class map's."""
    if class_map is not None:
        return _by_class_map(MaskOptions(task, num_classes, class_map), False)
    ignore = (ignore_index,) if ignore_index is not None else \
        (IGNORE_INDEX,) if task == "multiclass" else ()
    if task in ("binary", "multilabel"):
        rule = "binary" if task == "binary" else "class-folders"
        return MaskReading(task, num_classes, rule, f"{task}: 0 and 1 or the full scale",
                           (1.0,), True, ignore=ignore)
    return MaskReading(task, num_classes, "index", f"{task}: classes 0..{num_classes - 1}",
                       values=tuple(range(num_classes)), ignore=ignore)


def _check_given(options: MaskOptions, task: Task) -> None:
    if options.task is not None and options.task != task:
        raise refusals.task_misfit(options.task, task)
    if options.task == "multilabel":
        raise refusals.multilabel_needs_class_masks()


def _by_class_map(options: MaskOptions, folders: bool) -> MaskReading:
    cmap = options.class_map
    assert cmap is not None
    if folders:
        raise refusals.class_map_with_folders()
    task = options.task or ("binary" if cmap.num_classes == 2 else "multiclass")
    if task == "multilabel":
        raise refusals.class_map_is_exclusive()
    names = cmap.names[1:] if task == "binary" else cmap.names
    where = f" {cmap.source}" if cmap.source else ""
    return MaskReading(task, 1 if task == "binary" else cmap.num_classes, "class-map",
                       f"{task}: {cmap.num_classes} classes from the class map{where}",
                       class_map=cmap, class_names=tuple(names))


def _instances(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    _check_given(options, "binary")
    bad = first(facts, lambda f: f.colour or f.noisy)
    if bad is not None:
        raise refusals.instances_need_integer_labels(bad)
    labels = [len(f.nonzero) for f in facts]
    top = max((float(f.values.max(initial=0)) for f in facts), default=0.0)
    return MaskReading("binary", 1, "instances",
                       f"binary (--instances): foreground = any non-zero label, {len(facts)} "
                       f"label images with {min(labels)} to {max(labels)} labels (largest "
                       f"{format_value(top)})", ignore=options.ignore)


def _thresholded(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    _check_given(options, "binary")
    bad = first(facts, lambda f: f.colour)
    if bad is not None:
        raise refusals.threshold_needs_gray(bad)
    low = min(float(f.values.min(initial=0)) for f in facts)
    high = max(float(f.values.max(initial=0)) for f in facts)
    return MaskReading("binary", 1, "threshold",
                       f"binary (--mask-threshold): stored values above "
                       f"{format_value(options.threshold or 0)} are foreground (values "
                       f"{format_value(low)}..{format_value(high)} in {len(facts)} masks)",
                       threshold=options.threshold, ignore=options.ignore)


def _colour(facts: list[MaskFacts], options: MaskOptions) -> MaskReading:
    """Colour masks: black plus one colour is binary; more colours need a class map."""
    colours: Counter = Counter()
    for f in facts:
        if f.colour:
            colours.update(dict(zip(f.values.tolist(), f.counts.tolist(), strict=True)))
        else:  # gray value v is the colour (v, v, v)
            colours.update({int(v) * 0x010101: int(c) for v, c in zip(
                f.values.tolist(), f.counts.tolist(), strict=True)})
    lossy = first(facts, lambda f: f.colour and f.lossy)
    others = [c for c in colours if c != 0]
    if lossy is None and len(others) == 1 and options.task in (None, "binary"):
        color = (others[0] >> 16, (others[0] >> 8) & 255, others[0] & 255)
        return MaskReading("binary", 1, "colour",
                           f"binary: colour {color} = foreground, black = background in "
                           f"{len(facts)} RGB masks", color=color)
    shown = [c for c, _ in colours.most_common(8 if lossy else 12)]
    example = first(facts, lambda f: f.colour) or facts[0]
    raise refusals.colour_masks(len(colours), shown, lossy is not None,
                                (lossy or example).path)


def _class_folders(surveys: Sequence[PairSurvey], folders: tuple[str, ...],
                   options: MaskOptions) -> MaskReading:
    """One binary mask per class folder (a single folder of index masks is read as the
    mask folder)."""
    facts = [f for s in surveys for f in s.masks]
    coloured = first(facts, lambda f: f.colour)
    if coloured is not None:
        raise refusals.colour_in_class_folder(coloured)
    levels = Levels()
    not_binary = levels.add_all(facts)
    if not_binary or not levels.binary:
        return _index_folder(facts, folders, options, levels, not_binary)
    overlap = any(s.overlap for s in surveys)
    task = options.task or ("multilabel" if overlap else "binary" if len(folders) == 1
                            else "multiclass")
    if task == "binary" and len(folders) != 1:
        raise refusals.binary_needs_one_folder(len(folders))
    base = levels.reading(len(facts))
    count, names = (len(folders) + 1, ("background", *folders)) if task == "multiclass" \
        else (len(folders), folders)
    kind = "overlapping" if overlap else "exclusive"
    text = (f"{task}: {len(folders)} class folder(s) ({', '.join(folders)}) of {kind} "
            f"binary masks: {base.evidence.removeprefix('binary: ')}")
    return replace(base, task=task, num_classes=count, rule="class-folders", evidence=text,
                   class_names=names, ignore=options.ignore)


def _index_folder(facts: list[MaskFacts], folders: tuple[str, ...], options: MaskOptions,
                  levels: Levels, not_binary: list[MaskFacts]) -> MaskReading:
    """Class-folder masks that are not binary: one folder of index masks is read as the
    mask folder; several are refused, naming a mask that is not binary, or one of another
    level than the first."""
    if len(folders) == 1 and options.task != "multilabel":
        reading = _gray(facts, options, f" of {folders[0]}/")
        note = f" ({folders[0]}/ holds index masks: read as the mask folder)"
        return replace(reading, evidence=reading.evidence + note)
    f = not_binary[0] if not_binary else next(
        x for x in facts if x.path == list(levels.files.values())[-1])
    raise refusals.index_masks_in_class_folder(f)


def _gray(facts: list[MaskFacts], options: MaskOptions, what: str = "") -> MaskReading:
    """Gray masks: binary when every mask is 0 and one level (unless --task multiclass),
    else index masks."""
    if options.task == "multilabel":
        _check_given(options, "multilabel")
    if options.task != "multiclass":
        levels = Levels()
        if not levels.add_all(facts) and levels.binary:
            return replace(levels.reading(len(facts)), ignore=options.ignore)
    _refuse_noisy_indices(facts, options)
    return _index_or_binary(facts, options, what)


def _refuse_noisy_indices(facts: list[MaskFacts], options: MaskOptions) -> None:
    """JPEG masks that are not binary, and fractional values, are not class indices."""
    lossy = first(facts, lambda f: not f.two_level and f.lossy and (
        options.task == "multiclass" or not f.looks_soft))
    if lossy is not None:
        raise refusals.jpeg_index_masks(lossy)
    floats = first(facts, lambda f: f.is_float)
    if floats is not None:
        raise refusals.probability_map(floats)


def _index_or_binary(facts: list[MaskFacts], options: MaskOptions, what: str) -> MaskReading:
    """Index masks; with --task binary, only those read as binary (0/1 class indices)."""
    try:
        reading: MaskReading | None = index_reading(facts, options, what)
    except DataError:
        if options.task != "binary":
            raise
        reading = None
    if options.task == "binary" and (reading is None or reading.task != "binary"):
        if instance_like(facts):
            f = label_example(facts)
            raise refusals.labels_for_binary(f, label_values(f)[0])
        f = first(facts, lambda f: not f.two_level and not f.looks_soft) or facts[0]
        raise refusals.not_binary_for_task(f)
    assert reading is not None
    return reading
