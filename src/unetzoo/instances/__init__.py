"""Instance segmentation scores: one matching core for every per-object score in unetzoo.

Label images (2-D integer arrays, 0 = background, any other value = one object) of the truth
and of a prediction are compared object by object: the IoU of every overlapping pair, then
one-to-one matching at IoU thresholds (TP, FP, FN, precision, recall, F1, the DSB 2018 "AP"
and its mean over 0.5:0.95), panoptic quality, the aggregated Jaccard index (AJI and AJI+),
and counts of split, merged, missed and extra objects. `InstanceScores` accumulates them
over a dataset, both as the mean over images and pooled. `matching.py` holds the rules and
their sources.

This package sits low in the import layers: numpy, scipy and `unetzoo.errors` only.
"""

from __future__ import annotations

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

__all__ = [
    "DSB_THRESHOLDS",
    "EMPTY_RULES",
    "ImageCounts",
    "InstanceScores",
    "Matching",
    "ObjectErrors",
    "Overlap",
    "check_labels",
    "count_image",
    "image_scores",
    "label_overlap",
    "match",
    "object_errors",
    "score_dataset",
]
