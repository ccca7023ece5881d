"""Write reference.json: StarDist's and Cellpose's instance scores on the fixtures of
fixtures.py, for test_matching.py to compare unetzoo.instances against.

Run it in a throwaway venv, never the project's (neither package is a unetzoo dependency):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install stardist==0.9.2            # numba, csbdeep; no tensorflow
    /tmp/refvenv/bin/pip install --no-deps cellpose==4.2.1.1
    /tmp/refvenv/bin/pip install opencv-python-headless fastremap fill_voids
    /tmp/refvenv/bin/python tests/instances/make_reference.py --data ../shared/data/dsb2018

`stardist.matching` needs numba only (no tensorflow). `cellpose.metrics` needs cellpose's
`utils` (opencv, fastremap, fill_voids) but not torch; `cellpose/__init__.py` imports torch
through `cellpose.version`, so the script loads `cellpose.metrics` under a bare package
module that skips that `__init__`. The JSON written records the versions used; the stored
reference.json was produced by stardist 0.9.2, csbdeep 0.8.2, numba 0.68.1, cellpose
4.2.1.1, numpy 2.4.6, scipy 1.17.1 on CPython 3.11.7.

Fixtures: the synthetic pairs (SYNTHETIC_SEEDS) and handmade pairs of fixtures.py, and,
with --data, four dsb2018 label images against three perturbed versions of themselves.
Per pair: StarDist `matching` at REFERENCE_THRESHOLDS; Cellpose `average_precision` at the
ten DSB thresholds and `aggregated_jaccard_index`, on the same objects renumbered 1..N
(Cellpose builds a dense matrix the size of the largest ids: 60000 x 60000 would not fit).
Over the synthetic pairs: StarDist `matching_dataset` with by_image=True and
by_image=False. NaN is written as null.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.instances.fixtures import (  # noqa: E402
    DSB_IMAGES,
    DSB_PERTURBATIONS,
    REFERENCE_THRESHOLDS,
    SYNTHETIC_SEEDS,
    fingerprint,
    handmade_pairs,
    perturbed,
    read_label_png,
    synthetic_pair,
)

DSB_THRESHOLDS = REFERENCE_THRESHOLDS[2:]
STARDIST_FIELDS = ("tp", "fp", "fn", "precision", "recall", "accuracy", "f1", "n_true",
                   "n_pred", "mean_matched_score", "mean_true_score", "panoptic_quality")


def _number(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _cellpose_metrics() -> types.ModuleType:
    spec = importlib.util.find_spec("cellpose")
    if spec is None or spec.submodule_search_locations is None:
        raise SystemExit("cellpose is not installed in this venv")
    package = types.ModuleType("cellpose")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["cellpose"] = package
    import cellpose.metrics as metrics

    return metrics


def _stardist(stats: Any) -> dict[str, list[Any]]:
    return {key: [_number(getattr(s, key)) for s in stats] for key in STARDIST_FIELDS}


def consecutive(labels: np.ndarray) -> np.ndarray:
    """The same objects numbered 1..N in id order (0 stays background)."""
    values, inverse = np.unique(labels, return_inverse=True)
    return (inverse.reshape(labels.shape) + (values[0] != 0)).astype(np.int32)


def reference_case(kind: str, name: str, true: np.ndarray, pred: np.ndarray,
                   cp: types.ModuleType) -> dict[str, Any]:
    from stardist.matching import matching

    stats = matching(true, pred, thresh=list(REFERENCE_THRESHOLDS))
    # Cellpose sizes a dense matrix by the largest ids (60000 x 60000 would not fit): it is
    # given the same objects numbered consecutively
    ct, cpred = consecutive(true), consecutive(pred)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap, tp, fp, fn = cp.average_precision([ct], [cpred], threshold=list(DSB_THRESHOLDS))
        aji = cp.aggregated_jaccard_index([ct], [cpred])
    return {
        "kind": kind, "name": name, "fingerprint": fingerprint(true, pred),
        "stardist": _stardist(stats),
        "cellpose": {"ap": [_number(v) for v in ap[0]], "tp": [int(v) for v in tp[0]],
                     "fp": [int(v) for v in fp[0]], "fn": [int(v) for v in fn[0]],
                     "aji": _number(aji[0])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018",
                        help="the dsb2018 folder (with labels/); skipped when absent")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("reference.json"))
    args = parser.parse_args()
    from stardist.matching import matching_dataset

    cp = _cellpose_metrics()
    cases = []
    synthetic = [synthetic_pair(seed) for seed in SYNTHETIC_SEEDS]
    for seed, (true, pred) in zip(SYNTHETIC_SEEDS, synthetic, strict=True):
        cases.append(reference_case("synthetic", f"seed {seed}", true, pred, cp))
    for name, (true, pred) in handmade_pairs().items():
        cases.append(reference_case("handmade", name, true, pred, cp))
    labels = args.data / "labels"
    if labels.is_dir():
        for file in DSB_IMAGES:
            true = read_label_png(labels / file)
            for kind in DSB_PERTURBATIONS:
                cases.append(reference_case("dsb2018", f"{file} {kind}", true,
                                            perturbed(true, kind), cp))
    else:
        print(f"no dsb2018 labels at {labels}: dsb2018 cases left out", file=sys.stderr)
    dataset = {}
    for by_image in (True, False):
        stats = matching_dataset([t for t, _ in synthetic], [p for _, p in synthetic],
                                 thresh=list(REFERENCE_THRESHOLDS), by_image=by_image,
                                 show_progress=False)
        dataset["by_image" if by_image else "pooled"] = _stardist(stats)
    versions = {name: importlib.metadata.version(name)
                for name in ("stardist", "csbdeep", "numba", "cellpose", "numpy", "scipy")}
    versions["python"] = platform.python_version()
    out = {"versions": versions, "reference_thresholds": list(REFERENCE_THRESHOLDS),
           "dsb_thresholds": list(DSB_THRESHOLDS), "cases": cases,
           "stardist_dataset_synthetic": dataset}
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(out, indent=1) + "\n")
    os.replace(partial, args.out)
    print(f"wrote {args.out}: {len(cases)} cases; {versions}")


if __name__ == "__main__":
    main()
