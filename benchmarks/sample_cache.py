"""What the sample cache saves: seconds to load one training epoch (no model), without a
cache and with it (first epoch: filling it; second epoch: reading it), in resize mode and
crop mode, on the full-size dsb2018 (532 training photographs of 256..1388 px).

    python benchmarks/sample_cache.py                    # dsb2018, about 2 min
    python benchmarks/sample_cache.py --quick            # 40 images
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from report import machine, markdown, write_json

from unetzoo.data.prepare import prepare_data
from unetzoo.data.transforms import train_transform

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def epoch_seconds(dataset, epoch: int) -> float:
    dataset.set_epoch(epoch)
    started = time.perf_counter()
    for index in range(len(dataset)):
        dataset[index]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=SHARED / "dsb2018")
    parser.add_argument("--quick", action="store_true", help="40 images")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["UNETZOO_CACHE_DIR"] = tmp  # a cold disk cache
        for mode, size in (("resize", 96), ("crop", 128)):
            for cache in ("off", "memory", "disk"):
                data = prepare_data(args.dataset, "split.csv", img_size=size,
                                    resize_mode=mode, cache=cache)
                train = data.train[:40] if args.quick else data.train
                started = time.perf_counter()
                dataset = data.dataset(train, train_transform(size, mode), seed=0)
                build = time.perf_counter() - started  # a memory cache is filled here
                first, second = epoch_seconds(dataset, 1), epoch_seconds(dataset, 2)
                rows.append({"mode": f"{mode} {size}", "cache": cache, "images": len(train),
                             "first_epoch_s": build + first, "later_epoch_s": second})
                print(markdown(rows[-1:]), flush=True)
    result = {"dataset": args.dataset.name, "machine": machine(), "rows": rows,
              "date": time.strftime("%Y-%m-%d")}
    write_json("sample_cache_quick" if args.quick else "sample_cache", result)
    print(markdown(rows))


if __name__ == "__main__":
    main()
