"""Start-up cost of a large dataset: from `prepare_data` to the first training batch.

Writes `--count` pairs of 32 x 32 PNGs (images RGB, masks 0/255; a few distinct files
repeated under new names, so writing is fast) into a temporary folder, then measures, in
one process and with a warm page cache (the files were just written):
- listing: `find_pairs` (folder listing and stem matching);
- prepare (default): `prepare_data` with the default checks (every file stat-ed, headers of
  up to HEADER_LIMIT pairs, pixels of SAMPLE_SIZE spread pairs, normalisation statistics)
  plus the first batch of a training DataLoader;
- prepare (--full-check): the same reading every image and mask, as the scan did before;
- per-phase throughput: stat checks, header checks and full reads in pairs per second.
Peak memory (max RSS) is reported too. Writes JSON and prints a markdown table. Not a test.

    PYTHONPATH=src python benchmarks/dataset_scale.py [--quick] [--count 100000]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from report import machine
from torch.utils.data import DataLoader, RandomSampler

from unetzoo.data import dataset as dataset_module
from unetzoo.data.dataset import check_headers, verify_pairs
from unetzoo.data.io import check_file
from unetzoo.data.layouts import find_pairs
from unetzoo.data.masks import read_as
from unetzoo.data.prepare import prepare_data
from unetzoo.data.transforms import train_transform
from unetzoo.engine.bench import peak_memory_mb
from unetzoo.fileio import atomic_write_text

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "dataset_scale.json"


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def write_dataset(root: Path, count: int, size: int = 32, variants: int = 64) -> float:
    """`count` pairs in root/images and root/masks; returns the seconds it took."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    blobs = []
    for _ in range(variants):
        image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        mask = (rng.random((size, size)) < 0.3).astype(np.uint8) * 255
        blobs.append((_png(image), _png(mask)))
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = blobs[i % variants]
        (root / "images" / f"{i:06d}.png").write_bytes(image)
        (root / "masks" / f"{i:06d}.png").write_bytes(mask)
    return time.perf_counter() - start


def first_batch_seconds(root: Path, full_check: bool, workers: int, batch: int = 16) -> dict:
    start = time.perf_counter()
    data = prepare_data(root, full_check=full_check, img_size=32)
    prepared = time.perf_counter() - start
    train = data.dataset(data.train, train_transform(32, "crop"), seed=0)
    sampler = RandomSampler(train, num_samples=batch * 4,
                            generator=torch.Generator().manual_seed(0))
    loader = DataLoader(train, batch_size=batch, sampler=sampler, num_workers=workers)
    next(iter(loader))
    return {"prepare_s": prepared, "first_batch_s": time.perf_counter() - start,
            "pixels_checked": data.info.pixels_checked,
            "headers_checked": data.info.headers_checked}


def throughput(root: Path, limit: int) -> dict:
    """Pairs per second of each kind of check, on up to `limit` pairs."""
    pairs = find_pairs(root)[:limit]
    reading = read_as("binary", 1)
    out = {}
    checks = {"stat": lambda: [check_file(p) for pair in pairs
                               for p in (pair.image, *pair.mask_files)],
              "header": lambda: check_headers(pairs),
              "full read": lambda: verify_pairs(pairs, reading, full=True)}
    for name, check in checks.items():
        start = time.perf_counter()
        check()
        out[name] = len(pairs) / (time.perf_counter() - start)
    return out


def run(count: int, workers: int, folder: Path | None) -> dict:
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="unetzoo-scale-"))
    try:
        written = 0.0
        if not (root / "images").is_dir():
            written = write_dataset(root, count)
        start = time.perf_counter()
        pairs = find_pairs(root)
        listing = time.perf_counter() - start
        default = first_batch_seconds(root, False, workers)
        full = first_batch_seconds(root, True, workers)
        rates = throughput(root, min(count, 20_000))
    finally:
        if folder is None:
            shutil.rmtree(root, ignore_errors=True)
    return {
        "pairs": len(pairs), "image_size": 32, "workers": workers, "write_s": written,
        "listing_s": listing, "default": default, "full_check": full,
        "pairs_per_s": rates, "sample_size": dataset_module.SAMPLE_SIZE,
        "header_limit": dataset_module.HEADER_LIMIT,
        "max_rss_mb": peak_memory_mb(torch.device("cpu")), "machine": machine(),
    }


def table(report: dict) -> str:
    d, f = report["default"], report["full_check"]
    rates = report["pairs_per_s"]
    lines = [
        f"{report['pairs']:,} pairs of 32x32 PNG, warm page cache, {report['workers']} "
        "loader workers",
        "",
        "| start-up | prepare_data | to first batch | pairs whose pixels were read |",
        "|---|---|---|---|",
        f"| default checks | {d['prepare_s']:.1f} s | {d['first_batch_s']:.1f} s | "
        f"{d['pixels_checked']:,} (headers: {d['headers_checked']:,}) |",
        f"| --full-check | {f['prepare_s']:.1f} s | {f['first_batch_s']:.1f} s | "
        f"{f['pixels_checked']:,} |",
        "",
        f"listing (find_pairs): {report['listing_s']:.1f} s; throughput in pairs/s: "
        + ", ".join(f"{k} {v:,.0f}" for k, v in rates.items())
        + f"; peak RSS {report['max_rss_mb']:.0f} MB",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="pairs to generate")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--dir", type=Path, help="reuse (or keep) the dataset in this folder")
    parser.add_argument("--quick", action="store_true", help="5,000 pairs")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    report = run(5_000 if args.quick else args.count, args.workers, args.dir)
    atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    main()
