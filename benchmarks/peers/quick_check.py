"""A smoke check of a peer's predicted labels against the true test labels: object counts and
a quick AP@0.5 per image and over the split. Not the benchmark's scoring (that is unetzoo's
own matching core); only a sanity check that the written labels look right.

Matching: IoU between every true and predicted object, a one-to-one assignment maximising
the summed IoU (scipy.optimize.linear_sum_assignment), pairs with IoU >= 0.5 are true
positives; AP@0.5 = TP / (TP + FP + FN), the DSB 2018 / StarDist definition at one threshold.

    /work/peers/stardist-venv/bin/python benchmarks/peers/quick_check.py /tmp/peers/stardist \
        --data ../shared/data/dsb2018
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def match_counts(true: np.ndarray, pred: np.ndarray, threshold: float = 0.5
                 ) -> tuple[int, int, int]:
    """(TP, FP, FN) of a one-to-one matching at IoU >= `threshold` between two H x W instance
    label images (0 = background).

    Raises:
        ValueError: when the two images differ in shape.
    """
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    if true.shape != pred.shape:
        raise ValueError(f"shapes differ: true {true.shape}, predicted {pred.shape}")
    t_ids, t = np.unique(true, return_inverse=True)
    p_ids, p = np.unique(pred, return_inverse=True)
    t, p = t.reshape(true.shape), p.reshape(pred.shape)
    # joint histogram of (true index, predicted index) = intersections; areas from its margins
    inter = np.zeros((len(t_ids), len(p_ids)), np.int64)
    np.add.at(inter, (t.ravel(), p.ravel()), 1)
    area_t, area_p = inter.sum(axis=1), inter.sum(axis=0)
    keep_t, keep_p = t_ids > 0, p_ids > 0  # drop background
    inter, area_t, area_p = inter[keep_t][:, keep_p], area_t[keep_t], area_p[keep_p]
    n_true, n_pred = inter.shape
    if n_true == 0 or n_pred == 0:
        return 0, n_pred, n_true
    iou = inter / (area_t[:, None] + area_p[None, :] - inter)
    rows, cols = linear_sum_assignment(-iou)
    tp = int((iou[rows, cols] >= threshold).sum())
    return tp, n_pred - tp, n_true - tp


def main(argv: list[str] | None = None) -> int:
    """Print per-image counts for `--show` images and the split's quick AP@0.5."""
    import numpy as np
    from PIL import Image

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a peer's --out folder (with labels/)")
    parser.add_argument("--data", type=Path, required=True, help="the dataset folder")
    parser.add_argument("--show", type=int, default=8, help="images to print one by one")
    args = parser.parse_args(argv)

    names = [Path(rel).stem for rel in common.read_split_rows(args.data)["test"]]
    total = np.zeros(3, np.int64)
    n_true_all = n_pred_all = 0
    aps = []
    for i, name in enumerate(names):
        true = np.asarray(Image.open(args.data / "labels" / f"{name}.png")).astype(np.int64)
        pred = np.asarray(Image.open(args.run / "labels" / f"{name}.png")).astype(np.int64)
        tp, fp, fn = match_counts(true, pred)
        total += (tp, fp, fn)
        n_true, n_pred = tp + fn, tp + fp
        n_true_all, n_pred_all = n_true_all + n_true, n_pred_all + n_pred
        ap = tp / max(tp + fp + fn, 1)
        aps.append(ap)
        if i < args.show:
            print(f"{name[:12]}  {true.shape[1]:>4}x{true.shape[0]:<4} true {n_true:>4}  "
                  f"pred {n_pred:>4}  TP {tp:>4}  AP@0.5 {ap:.3f}")
    tp, fp, fn = (int(v) for v in total)
    print(f"{len(names)} test images: true objects {n_true_all}, predicted {n_pred_all}; "
          f"pooled AP@0.5 {tp / max(tp + fp + fn, 1):.3f} (TP {tp}, FP {fp}, FN {fn}); "
          f"mean per-image AP@0.5 {np.mean(aps):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
