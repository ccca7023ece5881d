"""What `InstanceScores.update` costs: time and peak numpy memory per image. Not a test.

Cases (each label image scored against a copy of itself moved by a few pixels):
- dsb2018: the largest label image (1388 x 1040) and the one with most nuclei (375),
  moved by 2 px; needs ../shared/data/dsb2018 (skipped when absent);
- synthetic 4000 x 4000 with 5000 objects: separate discs, and a tiling in which every
  pixel belongs to an object (every object touches its neighbours; the worst case of the
  sparse pair count and of the AJI+ assignment), moved by (17, 23) px.

Prints one line per case: the median and the fastest of --repeat runs, and the peak of
memory traced by tracemalloc (numpy reports its buffers there) during one run.

    PYTHONPATH=src python benchmarks/instance_scores.py [--repeat 7] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

from unetzoo.instances import InstanceScores

ROOT = Path(__file__).resolve().parents[1]


def moved(labels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    out = np.zeros_like(labels)
    out[dy:, dx:] = labels[:labels.shape[0] - dy, :labels.shape[1] - dx]
    return out


def dsb_cases(data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    from PIL import Image

    labels = data / "labels"
    if not labels.is_dir():
        print(f"no dsb2018 labels at {labels}: dsb2018 cases skipped")
        return []
    files = sorted(labels.glob("*.png"))
    sizes = []
    for file in files:
        with Image.open(file) as image:
            sizes.append((image.size[0] * image.size[1], file))
    largest = max(sizes, key=lambda s: s[0])[1]
    most, most_count = None, -1
    for file in files:
        with Image.open(file) as image:
            count = int(np.array(image).max())
        if count > most_count:
            most, most_count = file, count
    cases = []
    for tag, file in (("largest", largest), ("most nuclei", most)):
        assert file is not None
        with Image.open(file) as image:
            true = np.array(image).astype(np.uint16)
        cases.append((f"dsb2018 {tag} {true.shape[1]} x {true.shape[0]}, "
                      f"{len(np.unique(true)) - 1} nuclei, moved 2 px", true, moved(true, 2, 2)))
    return cases


def synthetic_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    size, count = 4000, 5000
    yy, xx = np.mgrid[-20:20, -20:20]
    disc = yy**2 + xx**2 < 400
    discs = np.zeros((size, size), np.int32)
    k = 0
    for cy in range(28, size - 28, 56):
        for cx in range(28, size - 28, 56):
            if k == count:
                break
            k += 1
            discs[cy - 20:cy + 20, cx - 20:cx + 20][disc] = k
    rng = np.random.default_rng(0)
    seeds = np.zeros((size, size), np.int32)
    seeds[rng.integers(0, size, count), rng.integers(0, size, count)] = np.arange(1, count + 1)
    _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    tiling = seeds[iy, ix]
    return [(f"synthetic 4000 x 4000, {k} discs, moved (3, 2) px", discs, moved(discs, 3, 2)),
            (f"synthetic 4000 x 4000, {len(np.unique(tiling))} touching tiles, moved (17, 23)",
             tiling, moved(tiling, 17, 23))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/dsb2018")
    parser.add_argument("--no-synthetic", action="store_true")
    args = parser.parse_args()
    cases = dsb_cases(args.data) + ([] if args.no_synthetic else synthetic_cases())
    for label, true, pred in cases:
        scores = InstanceScores()
        scores.update(true, pred, "warm-up")
        times = []
        for k in range(args.repeat):
            start = time.perf_counter()
            scores.update(true, pred, f"run {k}")
            times.append(time.perf_counter() - start)
        tracemalloc.start()
        scores.update(true, pred, "traced")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"{label}: median {1000 * statistics.median(times):.1f} ms, fastest "
              f"{1000 * min(times):.1f} ms, peak {peak / 2**20:.0f} MiB traced "
              f"(images {(true.nbytes + pred.nbytes) / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
