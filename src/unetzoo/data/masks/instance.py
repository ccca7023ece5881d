"""The instance rule (--task instance): the masks are instance label images, 0 background
and one integer id per object (8, 16 or 32 bits, ids need not be consecutive), read as
int32 label images with their ids (`labels.encode_labels`).

Refused with one line naming the file (the flag that resolves it in the message): colour,
JPEG and fractional masks, negative values, a binary mask (0 and one level in several
distant pieces, or with soft edges: --instances-from-components reads its connected
components as objects), many values that form no region (an image or a probability map:
most values without a pixel whose four neighbours share it), a label image of 8 or 16 bits
whose ids wrapped past the type's largest value (ids filling the type, several in distant
pieces), and more than `MAX_SPLIT_SHARE` of the ids lying in distant pieces (a void value,
or class indices). Fewer split ids are read as one object each and counted in the evidence.
Objects that touch under one id cannot be told apart from one object, and are not looked
for.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..classmap import format_values
from . import refusals
from .facts import MaskFacts, ObjectFacts
from .index import SMOOTH_VALUES
from .labels import binary_among_labels, wrapped
from .reading import MaskOptions, MaskReading

MAX_SPLIT_SHARE = 0.05  # of the ids read: more in distant pieces is not one id per object
# Objects are regions: with more than SMOOTH_VALUES ids, more than MAX_THIN_SHARE of them
# without a pixel whose four neighbours share its id is an image or a probability map.
MAX_THIN_SHARE = 0.5


def check_instance_options(options: MaskOptions, folders: bool) -> None:
    """Options that contradict --task instance (or --instances-from-components without it).

    Raises:
        ConfigError: one line naming the options.
    """
    if options.task != "instance":
        raise refusals.components_without_task()
    if options.class_map is not None:
        raise refusals.class_map_for_instances()
    if folders:
        raise refusals.class_folders_for_instances()
    if options.instances:
        raise refusals.instances_flag_with_task()
    if options.threshold is not None:
        raise refusals.threshold_with_instances()


def instance_reading(facts: Sequence[MaskFacts], options: MaskOptions) -> MaskReading:
    """The reading of instance label images (see the module docstring) from the facts of
    masks surveyed with `objects=True`.

    Raises:
        DataError: one line naming the file (MaskValueError for a binary mask or wrapped
            ids), for masks that are not label images as --task instance reads them.
        ValueError: facts surveyed without their objects (a caller's mistake).
    """
    components = options.components
    for f in facts:
        _check_file(f, components)
    binary = [f for f in facts if components and f.looks_binary]
    labels = [f for f in facts if not (components and f.looks_binary)]
    split = sum(_objects(f).split for f in labels)
    ids = sum(_objects(f).ids for f in labels)
    if split > MAX_SPLIT_SHARE * ids:
        worst = max(labels, key=lambda f: (_objects(f).split, _objects(f).example[1]))
        raise refusals.split_ids(worst, split, ids, len(labels))
    return MaskReading("instance", 1, "components" if components else "labels",
                       _evidence(labels, binary, options), ignore=options.ignore)


def _objects(f: MaskFacts) -> ObjectFacts:
    if f.objects is None:
        raise ValueError(f"{f.path}: surveyed without its objects; --task instance needs "
                         "survey_pair(..., objects=True)")
    return f.objects


def _check_file(f: MaskFacts, components: bool) -> None:
    """Refuse a mask --task instance cannot read as a label image."""
    if f.colour:
        raise refusals.colour_labels(f)
    if f.is_float:
        raise refusals.fractional_labels(len(f.values), float(f.values.min()),
                                         float(f.values.max()), f.path)
    if components and f.looks_binary:
        return
    if f.lossy:
        raise refusals.jpeg_labels(f)
    if binary_among_labels(f):
        raise refusals.binary_for_instances(f)
    if f.values.min(initial=0) < 0:
        raise refusals.negative_labels(f)
    objects = _objects(f)
    if objects.ids > SMOOTH_VALUES and objects.thin > MAX_THIN_SHARE * objects.ids:
        raise refusals.image_not_labels(f)
    if wrapped(f):
        raise refusals.wrapped_ids(f)


def _evidence(labels: list[MaskFacts], binary: list[MaskFacts], options: MaskOptions) -> str:
    """One line: "instance labels: 664 label images, 28,986 objects, up to 375 per image,
    ids 1..375", with binary masks read as components, empty masks, the void value and ids
    in distant pieces where there are any."""
    per_image = [_objects(f).ids for f in labels] + [_objects(f).pieces for f in binary]
    kinds = [f"{len(labels)} label images"] if labels or not binary else []
    if binary:
        kinds.append(f"{len(binary)} binary masks read as connected components (touching "
                     "objects merge)")
    text = (f"instance labels: {' and '.join(kinds)}, {sum(per_image):,} objects, up to "
            f"{max(per_image, default=0)} per image")
    with_ids = [_objects(f) for f in labels if _objects(f).ids]
    if with_ids:
        text += f", ids {min(o.low for o in with_ids)}..{max(o.high for o in with_ids)}"
    empty = sum(count == 0 for count in per_image)
    if empty:
        text += f", {empty} without objects"
    if options.ignore:
        text += f"; {format_values(options.ignore)} = void (ignored)"
    return text + _split_note(labels)


def _split_note(labels: list[MaskFacts]) -> str:
    """The evidence's note on ids in distant pieces ("; 2 ids in distant pieces, each read
    as one object (e.g. ...)"), or nothing."""
    split = [f for f in labels if _objects(f).split]
    if not split:
        return ""
    worst = max(split, key=lambda f: _objects(f).example[1])
    label, pieces = _objects(worst).example
    count = sum(_objects(f).split for f in split)
    return (f"; {count} {'id' if count == 1 else 'ids'} in distant pieces, each read as one "
            f"object (e.g. id {label} of {worst.path.name}: {pieces} pieces)")
