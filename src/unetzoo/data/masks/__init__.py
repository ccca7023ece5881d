"""What stored mask values mean: one rule for the whole dataset, used by `inspect`, `train`,
`eval`, the converters and the class-folder layout.

`survey_pair` reads what the masks of a pair hold (`MaskFacts`: distinct values and their
pixel counts, the type's full scale, JPEG or not, in-between values and where they lie,
objects per label); `decide` turns the facts of a dataset (a spread sample, or every pair
with --full-check) into a `MaskReading`: the task, the classes, which stored value or colour
is which class, the ignored values, the threshold, and the evidence as one line. The reading
then encodes every mask into the task's target and stops, naming the file, at a value it
cannot hold. The rules (docs/datasets.md has them as a table):

- binary: every mask holds 0 and one foreground level. 1 and the type's full scale (255,
  65535) are both foreground when they never share a file (datasets merged from two
  sources); any single level is foreground when it is the only one (0/100 masks).
- binary with in-between values: masks whose values cluster at 0 and their foreground level,
  the in-between values on thin edges (anti-aliasing, interpolation: no flat regions, on both
  sides of the middle, many distinct values) or JPEG noise, are thresholded at half their
  level (a 0/1 JPEG at 0.5, a 0/255 one at 127.5); the in-between share is reported.
- multiclass: the values are class indices 0..K-1 (255 is void when it shares files with
  other labels, as in Pascal VOC), or evenly spaced values (0/85/170/255) read as classes in
  their order; the mapping is printed.
- refused with one line naming a file, its values and what resolves it: indices with gaps or
  without a background 0 (a class map, or --task multiclass), instance label images (one
  integer per object: --task instance trains on the objects, --instances trains foreground =
  any label), hundreds of values or
  intensity-like values such as a probability map or an image saved as a mask
  (--mask-threshold), colour masks of several colours (a class map: a ready one is printed),
  JPEG index masks.
- colour masks: gray stored as RGB is gray (io.read_mask); black plus one colour is binary.
- class folders hold one binary mask per class, read by the binary rule; a single folder of
  index masks is read as index masks instead, several are refused.
- instance (--task instance): instance label images, 0 background and one integer id per
  object, read as int32 label images with their ids (`instance`, `labels`); binary masks,
  label images whose ids wrapped past their type, and ids in distant pieces are refused
  (--instances-from-components reads binary masks' connected components as objects).

A region-of-interest mask (DRIVE's field of view) turns the pixels outside it into ignored
pixels of the target.

The package, bottom to top: `facts` (what a file holds) -> `refusals` (every one-line
refusal and the flag that resolves it) -> `labels` (instance label images as int32
targets) -> `reading` (MaskOptions, MaskReading: what the values mean, and encoding a mask
under it) -> `levels` (the binary rule), `index` (the index rule and label-image
detection), `instance` (the instance rule) -> `rule` (`decide`: the decision per kind of
mask) -> `targets` (a pair's target: `load_target`, `binarize`).
"""

from __future__ import annotations

from ..classmap import format_value, format_values
from .facts import (
    BALANCE_PIXELS,
    FAR_PIECES,
    LEVEL_PIXELS,
    MAX_BETWEEN_SHARE,
    MAX_LABEL_OBJECTS,
    MAX_PLATEAU_SHARE,
    MIN_PIECE,
    MIN_SIDE_SHARE,
    NOISE,
    SINGLE_OBJECT_SHARE,
    LabelFacts,
    MaskFacts,
    ObjectFacts,
    PairSurvey,
    SoftFacts,
    mask_facts,
    object_facts,
    survey_pair,
)
from .index import (
    INSTANCE_FILE_SHARE,
    MANY_VALUES,
    MAX_INDEX,
    MIN_FLAT_SHARE,
    SMOOTH_VALUES,
)
from .instance import MAX_SPLIT_SHARE
from .labels import WRAP_FILL, WRAP_SPLIT, encode_labels
from .reading import MaskOptions, MaskReading
from .rule import RULES, decide, read_as
from .targets import binarize, load_target

__all__ = [
    "BALANCE_PIXELS", "FAR_PIECES", "INSTANCE_FILE_SHARE", "LEVEL_PIXELS", "MANY_VALUES",
    "MAX_BETWEEN_SHARE", "MAX_INDEX", "MAX_LABEL_OBJECTS", "MAX_PLATEAU_SHARE",
    "MAX_SPLIT_SHARE", "MIN_FLAT_SHARE", "MIN_PIECE", "MIN_SIDE_SHARE", "NOISE", "RULES",
    "SINGLE_OBJECT_SHARE", "SMOOTH_VALUES", "WRAP_FILL", "WRAP_SPLIT", "LabelFacts",
    "MaskFacts", "MaskOptions", "MaskReading", "ObjectFacts", "PairSurvey", "SoftFacts",
    "binarize", "decide", "encode_labels", "format_value", "format_values", "load_target",
    "mask_facts", "object_facts", "read_as", "survey_pair",
]
