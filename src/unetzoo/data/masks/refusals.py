"""Every refusal of the mask rule, one line each: the file, what was found, and the flag or
class-map entry that resolves it. The functions build the error; the rule and the encoders
raise it. Errors raised while deciding a dataset's reading are `DataError` (or
`ConfigError` for options that contradict the masks); errors met while encoding a mask the
reading cannot hold are `MaskValueError`, which training never skips."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataError, MaskValueError
from ..classmap import format_value, format_values
from .facts import MaskFacts, ObjectFacts

# -- deciding a dataset's reading -----------------------------------------------------------


def jpeg_index_masks(f: MaskFacts) -> DataError:
    return DataError(f"JPEG mask with values {{{f.shown()}}}: JPEG compression changes "
                     "class indices; store index masks as PNG or TIFF (binary JPEG masks "
                     "are read: 0 and one level plus noise)", f.path)


def probability_map(f: MaskFacts) -> DataError:
    return DataError(f"holds {len(f.values)} fractional values between "
                     f"{format_value(f.values.min())} and {format_value(f.values.max())} "
                     "(a probability map?), not 0 and one foreground level with soft edges;"
                     " pass --mask-threshold 0.5 to read values above 0.5 as foreground",
                     f.path)


def not_binary_for_task(f: MaskFacts) -> DataError:
    return DataError(f"mask values {{{f.shown()}}} are not 0 and one foreground level "
                     "(with soft edges or JPEG noise at most), as --task binary needs; drop "
                     "--task binary to read them as classes, or pass --instances to read "
                     "every non-zero value as foreground", f.path)


def negative_values(f: MaskFacts) -> DataError:
    return DataError(f"mask values {{{f.shown()}}} include negative values; class indices "
                     "are >= 0 (pass --ignore-index for a void value)", f.path)


def image_not_indices(f: MaskFacts) -> DataError:
    return DataError(f"holds {len(f.values)} distinct values ({f.shown()}) that change "
                     f"from pixel to pixel ({100 * f.flat / f.pixels:.0f} % of pixels inside "
                     "flat regions): an image or a probability map, not class indices; pass "
                     "--mask-threshold T to read values above T as foreground, or check "
                     "that the mask folder holds masks", f.path)


def instance_labels(f: MaskFacts, labels: np.ndarray, void_note: str) -> DataError:
    return DataError(f"holds {len(labels)} labels ({format_values(labels)}){void_note}, one "
                     "object each: an instance label image, not class indices; pass --task "
                     "instance to train on the objects, --instances to train foreground = any "
                     "label (binary), or --task multiclass if the values are classes", f.path)


def labels_for_binary(f: MaskFacts, labels: np.ndarray) -> DataError:
    return DataError(f"holds {len(labels)} labels ({format_values(labels)}), one object "
                     "each: an instance label image, not a binary mask (0 and one level) as "
                     "--task binary needs; pass --task instance to train on the objects, or "
                     "--instances to train foreground = any label (binary)", f.path)


def too_many_values(f: MaskFacts) -> DataError:
    return DataError(f"holds {len(f.values)} distinct values ({f.shown()}): not class "
                     "indices 0..254; if it is an image or a probability map, pass "
                     "--mask-threshold T to read values above T as foreground; if the "
                     "values are object labels, pass --instances", f.path)


def not_class_indices(f: MaskFacts, classes: Sequence[int], what: str) -> DataError:
    """Values that are not 0..K-1 (gaps) or hold no background 0: a class map is printed
    from them."""
    entries = ", ".join(f"{{name: class{k}, index: {v}}}" for k, v in enumerate(classes[:6]))
    more = ", ..." if len(classes) > 6 else ""
    why = "hold no background 0" if 0 not in classes else \
        f"are not class indices 0..{len(classes) - 1} (gaps)"
    return DataError(f"mask values {{{format_values(classes, 12)}}} in the dataset{what} "
                     f"{why}; give a class map (classes.yaml: classes: [{entries}{more}]), or "
                     "--task multiclass to read the values as class indices with unseen "
                     "classes", f.path)


def more_classes_than_given(values: Sequence[int], num_classes: int, path: Path
                            ) -> DataError:
    return DataError(f"mask values {{{format_values(values, 12)}}} hold {len(values)} "
                     f"classes, more than --num-classes {num_classes}", path)


def colour_masks(colours: int, shown: Sequence[int], lossy: bool, path: Path) -> DataError:
    """Colour masks of several colours (`shown`: packed 0xRRGGBB, the most common): a class
    map is printed from them."""
    entries = ", ".join(
        f"{{name: {'background' if c == 0 else f'class{k}'}, color: [{c >> 16}, "
        f"{(c >> 8) & 255}, {c & 255}]}}" for k, c in enumerate(sorted(shown)))
    what = f"JPEG colour masks ({colours} colours, most common shown)" if lossy else \
        f"colour masks with {colours} colours"
    return DataError(f"{what}: give a class map naming them (classes.yaml: classes: "
                     f"[{entries}{', ...' if colours > len(shown) else ''}])", path)


def colour_in_class_folder(f: MaskFacts) -> DataError:
    return DataError(f"class folders hold binary masks; this one holds colours "
                     f"{{{f.shown()}}}", f.path)


def index_masks_in_class_folder(f: MaskFacts) -> DataError:
    return DataError(f"class folder {f.path.parent.name}/ holds masks with values "
                     f"{{{f.shown()}}}, not binary masks (0 and one level): a folder per "
                     "class holds binary masks; keep index masks in one mask folder", f.path)


def instances_need_integer_labels(f: MaskFacts) -> DataError:
    return DataError(f"--instances reads integer label images; this mask holds "
                     f"{'colours' if f.colour else 'JPEG or float values'} "
                     f"{{{f.shown()}}}", f.path)


def threshold_needs_gray(f: MaskFacts) -> DataError:
    return DataError(f"--mask-threshold applies to gray masks; this one holds colours "
                     f"{{{f.shown()}}}", f.path)


def no_masks() -> DataError:
    return DataError("no labelled masks to read")


# -- instance label images (--task instance) -------------------------------------------------


def binary_for_instances(f: MaskFacts) -> MaskValueError:
    """A binary mask (0 and one level) where --task instance needs label images."""
    level = format_value(f.own_level or 0)
    pieces = f.objects.pieces if f.objects else 0
    found = f"0/{level} in {pieces} separate pieces" if f.two_level else \
        f"0/{level} with in-between values on its edges ({f.shown()})"
    return MaskValueError(f"holds {found}: a binary mask, not an instance label image (one "
                          "id per object) as an instance task needs; pass "
                          "--instances-from-components to read its connected components as "
                          "objects (touching objects then merge into one), or, training, "
                          "drop --task instance to train a binary model", f.path)


def colour_labels(f: MaskFacts) -> DataError:
    return DataError(f"holds colours {{{f.shown()}}}: --task instance reads gray label "
                     "images (0 background, one integer id per object: 16-bit PNG or TIFF); "
                     "save the objects as ids, not colours", f.path)


def jpeg_labels(f: MaskFacts) -> DataError:
    return DataError(f"JPEG mask with values {{{f.shown()}}}: JPEG compression changes "
                     "object ids; store label images as PNG or TIFF (16-bit for more than 255 "
                     "objects); a binary JPEG mask's connected components are read as objects "
                     "with --instances-from-components", f.path)


def image_not_labels(f: MaskFacts) -> DataError:
    thin = f.objects.thin if f.objects else 0
    return DataError(f"holds {len(f.values)} distinct values ({f.shown()}) that change "
                     f"from pixel to pixel ({thin} of them never fill a pixel's four "
                     "neighbours): an image or a probability map, not an instance label image "
                     "(one region per object); check that the mask folder holds label images",
                     f.path)


def fractional_labels(count: int, low: float, high: float, path: Path) -> MaskValueError:
    return MaskValueError(f"holds {count} fractional values between {format_value(low)} and "
                          f"{format_value(high)}: not object ids (whole numbers) as --task "
                          "instance needs; if it is a probability map, drop --task instance "
                          "and pass --mask-threshold 0.5 to read it as a binary mask", path)


def negative_labels(f: MaskFacts) -> DataError:
    return DataError(f"holds negative values ({f.shown()}): instance ids are >= 0, with 0 "
                     "as background (pass --ignore-index for a void value)", f.path)


def wrapped_ids(f: MaskFacts) -> MaskValueError:
    """More objects than the file's type holds: ids wrapped past its largest value."""
    objects = f.objects or ObjectFacts(0)
    larger = "16-bit PNG or TIFF" if f.bits == 8 else "32-bit TIFF"
    kind = f"{'an' if f.bits == 8 else 'a'} {f.bits}-bit"
    return MaskValueError(f"holds {objects.ids} ids in {kind} image, {objects.split} of them "
                          f"in distant pieces (id {objects.example[0]}: {objects.example[1]} "
                          f"pieces): more objects than {kind} label image holds, so the ids "
                          f"wrapped past {format_value(f.top)} and objects share ids; save "
                          f"the labels as {larger}", f.path)


def split_ids(f: MaskFacts, split: int, ids: int, files: int) -> DataError:
    """Too many ids lie in distant pieces: not one id per object."""
    objects = f.objects or ObjectFacts(0)
    label, pieces = objects.example
    return DataError(f"id {label} lies in {pieces} distant pieces; {split} of the {ids:,} ids "
                     f"in the {files} label images read ({100 * split / max(ids, 1):.0f} %) "
                     "lie in distant pieces: --task instance reads one id per object; if "
                     f"{label} marks void (borders, unlabelled), pass --ignore-index {label}; "
                     "if the values are classes, use --task multiclass", f.path)


def class_map_for_instances() -> ConfigError:
    return ConfigError("a class map names classes; --task instance reads label images (one "
                       "id per object): drop the class map or --task instance")


def class_folders_for_instances() -> ConfigError:
    return ConfigError("--task instance reads one label image per image (0 background, one "
                       "id per object); class folders hold a binary mask per class")


def instances_flag_with_task() -> ConfigError:
    return ConfigError("--instances trains a binary model on the foreground of label "
                       "images; --task instance trains on the objects: pass one of them")


def threshold_with_instances() -> ConfigError:
    return ConfigError("--mask-threshold reads binary masks; --task instance reads label "
                       "images: pass one of them")


def components_without_task() -> ConfigError:
    return ConfigError("--instances-from-components reads binary masks as objects for "
                       "--task instance; pass --task instance with it")


# -- options that contradict the masks or each other -----------------------------------------


def num_classes_misfit(num_classes: int, evidence: str) -> ConfigError:
    return ConfigError(f"--num-classes {num_classes} does not fit these masks, read "
                       f"as {evidence}")


def task_misfit(given: str, task: str) -> ConfigError:
    return ConfigError(f"--task {given} does not fit these masks (read as {task}); "
                       f"drop --task or change the masks")


def multilabel_needs_class_masks() -> ConfigError:
    return ConfigError("multilabel targets are built from one binary mask per class "
                       "(class folders or mask:<class> CSV columns)")


def binary_needs_one_folder(folders: int) -> ConfigError:
    return ConfigError(f"a binary task needs one class folder, found {folders}")


def class_map_with_folders() -> ConfigError:
    return ConfigError("a class map applies to index or colour masks; class folders "
                       "take their class names from the folder names")


def class_map_is_exclusive() -> ConfigError:
    return ConfigError("a class map gives exclusive classes: use --task multiclass")


# -- encoding a mask under a dataset's reading ------------------------------------------------


def more_hint(surveyed: int) -> str:
    """How the reading was decided, for a value it cannot hold."""
    return (f" (decided from {surveyed} masks; --full-check reads every mask before "
            "training)" if surveyed else "")


def colours_of(mask: np.ndarray) -> str:
    """The first colours of an `H x W x 3` mask, as written in messages."""
    flat = np.unique(mask.reshape(-1, mask.shape[-1]), axis=0)
    shown = ", ".join(str(tuple(int(c) for c in row)) for row in flat[:4])
    return shown + (f", ... ({len(flat)} colours)" if len(flat) > 4 else "")


def colour_among_gray(mask: np.ndarray, path: Path) -> MaskValueError:
    return MaskValueError(f"colour mask ({colours_of(mask)}) in a dataset of gray "
                          "masks; store it as gray or give a class map with colours", path)


def negative_instance_label(low: float, path: Path) -> MaskValueError:
    return MaskValueError(f"instance labels must be >= 0, found {format_value(low)}", path)


def other_level(value: float, levels: str, surveyed: int, path: Path) -> MaskValueError:
    return MaskValueError(f"holds 0/{format_value(value)}, but this dataset's masks "
                          f"were read as {levels}" + more_hint(surveyed), path)


def not_soft(f: MaskFacts, levels: str, surveyed: int) -> MaskValueError:
    return MaskValueError(f"holds values {{{f.shown()}}}: not 0 and one foreground "
                          "level with anti-aliased edges or JPEG noise (a third value, or a "
                          f"region of in-between values), but this dataset's masks were "
                          f"read as {levels}" + more_hint(surveyed), f.path)


def unknown_values(unknown: Sequence[float], mapping: str, surveyed: int, path: Path
                   ) -> MaskValueError:
    return MaskValueError(
        f"holds value(s) {{{format_values(unknown)}}} that the classes read from the "
        f"masks ({mapping}) cannot hold; if the survey of "
        f"{surveyed} masks missed a class, pass --num-classes (class indices) or "
        "--full-check, or give a class map", path)


def other_colour(found: Sequence[int], color: Sequence[int], path: Path) -> MaskValueError:
    return MaskValueError(f"holds colour {tuple(int(c) for c in found)}, but this "
                          f"dataset's masks were read as black background and "
                          f"{tuple(color)} foreground; give a class map with "
                          "colours", path)


def class_masks_differ(sizes: str, path: Path) -> DataError:
    return DataError(f"class masks differ in size: {sizes}", path)


def class_masks_overlap(folders: Sequence[str], pixels: int, path: Path) -> DataError:
    return DataError(f"class masks {', '.join(folders)} overlap at {pixels} "
                     "pixel(s); a multiclass target needs exclusive masks (use --task "
                     "multilabel)", path)


def mask_size(target: np.ndarray, image: Path, size: Sequence[int], path: Path
              ) -> DataError:
    return DataError(f"mask is {target.shape[1]}x{target.shape[0]} (W x H) but its image "
                     f"{image} is {size[1]}x{size[0]}", path)


def roi_size(roi: np.ndarray, target: np.ndarray, path: Path) -> DataError:
    return DataError(f"region-of-interest mask is {roi.shape[1]}x{roi.shape[0]} but its "
                     f"mask is {target.shape[1]}x{target.shape[0]}", path)


def not_one_channel(mask: np.ndarray, path: Path) -> DataError:
    return DataError(f"expected a one-channel binary mask, got shape {mask.shape}", path)


def not_a_binary_mask(f: MaskFacts) -> DataError:
    return DataError(f"holds values {{{f.shown()}}}: not a binary mask (0 and one "
                     "level, with soft edges or JPEG noise at most)", f.path)
