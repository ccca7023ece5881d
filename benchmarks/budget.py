"""Side by side in one run: `unetzoo train --time-budget M` against the MONAI baseline.

For each dataset (dsb2018_96, isbi2012_em, dsb2018 full-size and tiled), runs
`unetzoo train --dataset D --csvfile split.csv --time-budget M` (no recipe flags: the plan
chooses) and the MONAI BasicUNet baseline of issue 11 (monai_baseline.py) under the same
budget, split, machine and thread count, one after the other, and reports test Dice and IoU
(mean over images and dataset-global, both scored by unetzoo's metric code) with wall
times. Writes benchmarks/results/budget.json after every run and a markdown table.

Duration: about (2 x M + 3) minutes per dataset, so with the default M = 15 about 1 h 40 min
for the three datasets. Run it on a quiet machine (the load average is recorded).

    python benchmarks/budget.py                         # the benchmark (about 1 h 40 min)
    python benchmarks/budget.py --datasets dsb2018_96 --minutes 15
    python benchmarks/budget.py --quick                 # a smoke run: 0.3 min, two datasets
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import RESULTS, machine, markdown, write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DATASETS = ("dsb2018_96", "isbi2012_em", "dsb2018")
# the baseline's training patch: whole images where they are small, else 128 (what the plan
# chooses on a CPU), predicted with MONAI's sliding window
BASELINE_PATCH = {"dsb2018_96": 96, "isbi2012_em": 128, "dsb2018": 128}


def _run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{tail}")
    return time.perf_counter() - started


def _scores(summary: dict[str, Any]) -> dict[str, float]:
    mean, glob = summary["mean_over_images"], summary["global"]
    return {"dice": mean["dice"], "iou": mean["iou"], "global_dice": glob["dice"],
            "global_iou": glob["iou"]}


def unetzoo_run(dataset: Path, minutes: float, threads: int, folder: Path) -> dict[str, Any]:
    """`unetzoo train --time-budget` with no recipe flags; test scores and what it did."""
    run = folder / f"unetzoo-{dataset.name}"
    command = [sys.executable, "-m", "unetzoo", "train", "--dataset", str(dataset),
               "--csvfile", "split.csv", "--time-budget", str(minutes), "--out", str(run),
               "--threads", str(threads), "--no-progress", "--overwrite"]
    wall = _run(command, folder / f"unetzoo-{dataset.name}.log")
    test = json.loads((run / "test" / "metrics.json").read_text())
    log = (run / "train.log").read_text().splitlines()
    spent = next((ln.split(" ", 2)[2] for ln in log if "time budget" in ln and "spent" in ln),
                 "")
    return {"method": "unetzoo --time-budget", **_scores(test), "wall_seconds": wall,
            "budget": spent}


def monai_run(dataset: Path, minutes: float, threads: int, folder: Path) -> dict[str, Any]:
    """The MONAI baseline under the same budget, in its own process."""
    out = folder / f"monai-{dataset.name}.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "monai_baseline.py"), str(dataset),
               "--minutes", str(minutes), "--threads", str(threads), "--out", str(out),
               "--patch", str(BASELINE_PATCH.get(dataset.name, 128))]
    wall = _run(command, folder / f"monai-{dataset.name}.log")
    result = json.loads(out.read_text())
    return {"method": "MONAI BasicUNet", **_scores(result["test"]), "wall_seconds": wall,
            "budget": f"{result['steps']} steps, validation {result['validation_seconds']:.0f} s"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of the datasets")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 0.3 min each")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.datasets = 0.3, ["dsb2018_96", "isbi2012_em"]
    name = "budget_quick" if args.quick else "budget"
    out: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "minutes": args.minutes,
                           "threads": args.threads, "machine": machine(), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for dataset in args.datasets:
            path = args.data / dataset
            for runner in (unetzoo_run, monai_run):
                row = {"dataset": dataset, **runner(path, args.minutes, args.threads, folder)}
                out["rows"].append(row)
                write_json(name, out)
                print(markdown([row], list(row)), flush=True)
    out["machine_after"] = machine()
    write_json(name, out)
    columns = ["dataset", "method", "dice", "iou", "global_dice", "global_iou", "wall_seconds"]
    print(f"\n{args.minutes:g} min budget, {args.threads} threads, {out['date']}, load "
          f"{out['machine']['load_average']} -> {out['machine_after']['load_average']}\n"
          f"{markdown(out['rows'], columns)}\n(results in {RESULTS / name}.json)")


if __name__ == "__main__":
    main()
