"""Instance segmentation scores: one matching core for every per-object score in unetzoo.

Label images (2-D integer arrays, 0 = background, any other value = one object) of the truth
and of a prediction are compared object by object: the IoU of every overlapping pair, then
one-to-one matching at IoU thresholds (TP, FP, FN, precision, recall, F1, the DSB 2018 "AP"
and its mean over 0.5:0.95), panoptic quality, the aggregated Jaccard index (AJI and AJI+),
and counts of split, merged, missed and extra objects. `InstanceScores` accumulates them
over a dataset, both as the mean over images and pooled. `matching.py` holds the rules and
their sources.

The instance task's two numpy halves live here too: `targets.encode` turns a label image
into training targets in one of several representations (`REPRESENTATIONS`: three_class,
distance, contour_touch, hover), each with a table of channels (activation, losses);
`labels.decode` turns a network's activated outputs back into a label image (seeds and a
seeded watershed), and `labels.choose_thresholds` picks its thresholds on validation images.

This package sits low in the import layers: numpy, scipy, scikit-image (imported by
`decode` when first used) and `unetzoo.errors` only.
"""

from __future__ import annotations

from .labels import (
    ThresholdChoice,
    Thresholds,
    choose_thresholds,
    decode,
    object_maps,
)
from .matching import (
    DSB_THRESHOLDS,
    EMPTY_RULES,
    ImageCounts,
    InstanceScores,
    Matching,
    ObjectErrors,
    Overlap,
    check_labels,
    count_image,
    image_scores,
    label_overlap,
    match,
    object_errors,
    score_dataset,
)
from .targets import (
    DEFAULT_REPRESENTATION,
    REPRESENTATIONS,
    Channel,
    Encoded,
    Representation,
    encode,
    get_representation,
)

__all__ = [
    "DEFAULT_REPRESENTATION",
    "DSB_THRESHOLDS",
    "EMPTY_RULES",
    "REPRESENTATIONS",
    "Channel",
    "Encoded",
    "ImageCounts",
    "InstanceScores",
    "Matching",
    "ObjectErrors",
    "Overlap",
    "Representation",
    "ThresholdChoice",
    "Thresholds",
    "check_labels",
    "choose_thresholds",
    "count_image",
    "decode",
    "encode",
    "get_representation",
    "image_scores",
    "label_overlap",
    "match",
    "object_errors",
    "object_maps",
    "score_dataset",
]
