"""How far images lie from a model's training images (`data.input_stats`), measured on real
shifts, to set what "far" means (`input_stats.FAR`).

On ../shared/data/dsb2018: the statistics of the training split's fluorescence images (grey)
are taken as a model stores them, once as the 8-bit files are and once as 12-bit data saved
in 16-bit files (values x 16, the way many microscopes store them). Then the distance of each
test image is measured as it is, under mild changes a model should take (brightness x0.8 and
x1.25, gamma 0.8 and 1.25, a JPEG re-encode at quality 75), and under shifts it should name:
the 8-bit export of the 12-bit data, a contrast-stretched export (1st..99th percentiles to
the full range), and another modality (the split's brightfield / H&E test images against
fluorescence training images). Both for a fixed (dataset) normalisation and for per-image
percentile normalisation (the distance in the space the model sees).

    PYTHONPATH=src python benchmarks/input_shift.py [--data ../shared/data/dsb2018]

Writes benchmarks/results/input_shift.json and prints min / median / max per condition.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from unetzoo.data.input_stats import FAR, InputStatistics, image_quantiles
from unetzoo.data.layouts import find_pairs
from unetzoo.data.transforms import Preprocessing


def grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), np.uint8)


def is_fluorescence(pixels: np.ndarray) -> bool:
    return float(pixels.mean()) < 100  # dark background (SOURCE.md: brightfield means > 144)


def stats_of(images: list[np.ndarray], normalize) -> InputStatistics:
    return InputStatistics.from_quantiles(
        [image_quantiles(normalize(i) if normalize else i) for i in images],
        "normalised" if normalize else "stored", ["uint8"])


def jpeg(pixels: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=75)
    return np.asarray(Image.open(buffer), np.uint8)


def stretch(pixels: np.ndarray) -> np.ndarray:
    low, high = np.percentile(pixels, (1, 99))
    return np.clip((pixels - low) / max(high - low, 1) * 255, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/dsb2018", type=Path)
    parser.add_argument("--out", default="benchmarks/results/input_shift.json", type=Path)
    args = parser.parse_args()
    pairs = find_pairs(args.data, "split.csv")
    train = [grey(p.image) for p in pairs if p.split == "train"][:200]
    test = [grey(p.image) for p in pairs if p.split == "test"]
    train_fl = [p for p in train if is_fluorescence(p)]
    test_fl = [p for p in test if is_fluorescence(p)]
    test_other = [p for p in test if not is_fluorescence(p)]
    as8 = lambda u: (u.astype(np.float32) / 255)[..., None]  # noqa: E731
    as12in16 = lambda u: ((u.astype(np.float32) * 16) / 65535)[..., None]  # noqa: E731
    percentile = Preprocessing(1, (0.0,), (1.0,), normalization="percentile").normalize
    conditions = {
        "same source (8-bit)": (as8, [as8(u) for u in test_fl]),
        "brightness x0.8": (as8, [as8(np.clip(u * 0.8, 0, 255).astype(np.uint8))
                                  for u in test_fl]),
        "brightness x1.25": (as8, [as8(np.clip(u * 1.25, 0, 255).astype(np.uint8))
                                   for u in test_fl]),
        "gamma 0.8": (as8, [as8((255 * (u / 255) ** 0.8).astype(np.uint8)) for u in test_fl]),
        "gamma 1.25": (as8, [as8((255 * (u / 255) ** 1.25).astype(np.uint8)) for u in test_fl]),
        "JPEG q75": (as8, [as8(jpeg(u)) for u in test_fl]),
        "contrast-stretched export": (as8, [as8(stretch(u)) for u in test_fl]),
        "another modality (brightfield/H&E)": (as8, [as8(u) for u in test_other]),
        "12-bit in 16-bit: same source": (as12in16, [as12in16(u) for u in test_fl]),
        "12-bit in 16-bit: its 8-bit export": (as12in16, [as8(u) for u in test_fl]),
        "12-bit in 16-bit: contrast-stretched": (as12in16, [as8(stretch(u)) for u in test_fl]),
    }
    results: dict[str, dict[str, list[float]]] = {}
    for space, normalize in (("dataset", None), ("percentile", percentile)):
        cache: dict[int, InputStatistics] = {}
        for name, (stored, images) in conditions.items():
            key = id(stored)
            if key not in cache:
                cache[key] = stats_of([stored(u) for u in train_fl], normalize)
            stats = cache[key]
            distances = [stats.distance(normalize(i) if normalize else i) for i in images]
            results.setdefault(name, {})[space] = distances
    print(f"{len(train_fl)} fluorescence training images; far = more than {FAR:g} spreads")
    print(f"{'condition':<40} {'n':>4} | {'dataset norm: min/median/max':>30} | "
          f"{'percentile norm: min/median/max':>31}")
    for name, spaces in results.items():
        cells = []
        for space in ("dataset", "percentile"):
            d = np.asarray(spaces[space])
            cells.append(f"{d.min():7.1f} {np.median(d):7.1f} {d.max():7.1f} "
                         f"({(d > FAR).mean():4.0%} far)")
        print(f"{name:<40} {len(spaces['dataset']):>4} | {cells[0]:>30} | {cells[1]:>31}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"far": FAR, "train_images": len(train_fl),
                                    "distances": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
