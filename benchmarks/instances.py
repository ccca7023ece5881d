"""Objects side by side (issue 21): unetzoo's instance task against StarDist 2D and Cellpose,
each trained from scratch on ../shared/data/dsb2018 (its split.csv, labels/) under the same
CPU budget, one after the other, then scored on the test split by unetzoo's one matching core
(`instances.matching`: AP@0.5, mean AP 0.5:0.95, PQ, AJI per image then averaged, and
pooled), beside the shipped `nuclei` model.

    PYTHONPATH=src python benchmarks/instances.py --minutes 30 \\
        --stardist-python /work/peers/stardist-venv/bin/python \\
        --cellpose-python /work/peers/cellpose-venv/bin/python

- unetzoo: `unetzoo train --task instance --time-budget MINUTES` with no recipe flags, then
  its test split scored (the thresholds chosen on the validation split after training).
- StarDist, Cellpose: benchmarks/peers/ (their own venvs: benchmark dependencies, never
  runtime ones); each writes a label image per test image, scored here.
- Every method runs on the CPUs `--cpus` names (taskset), with `--threads` threads.
Writes benchmarks/results/instances.json and prints the table (with the date, the machine
and the load average before each run).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unetzoo.data.io import read_mask  # noqa: E402
from unetzoo.instances.matching import InstanceScores  # noqa: E402


def labels_csv(data: Path, out: Path) -> Path:
    """The dataset's split with the mask column pointing at labels/ (the instance labels)."""
    rows = list(csv.DictReader((data / "split.csv").open()))
    path = out / "labels_split.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "mask", "split"])
        for row in rows:
            writer.writerow([row["image"], row["mask"].replace("masks/", "labels/", 1),
                             row["split"]])
    return path


def test_names(data: Path) -> list[str]:
    rows = csv.DictReader((data / "split.csv").open())
    return [Path(r["image"]).name for r in rows if r["split"] == "test"]


def score(data: Path, predicted: Path, names: list[str]) -> dict:
    """Every test image's predicted labels (`predicted/<name>` as PNG or TIFF) against its
    true labels."""
    scores = InstanceScores()
    for name in names:
        truth = read_mask(data / "labels" / name)
        stem = Path(name).stem
        found = next((p for p in (predicted / name, predicted / f"{stem}.tif",
                                  predicted / f"{stem}.png") if p.is_file()), None)
        pred = read_mask(found) if found is not None else np.zeros_like(truth)
        scores.update(truth.astype(np.int64), pred.astype(np.int64), name)
    summary = scores.summary()
    out = {}
    for kind in ("mean_over_images", "pooled"):
        part = summary[kind]
        out[kind] = {"ap50": part["per_threshold"][0]["ap"], "map": part["mean_ap"],
                     "pq": part["pq"], "aji": part["aji"], "splits": part["splits"],
                     "merges": part["merges"], "missed": part["missed"],
                     "extra": part["extra"]}
    out["n_true"], out["n_pred"] = summary["n_true"], summary["n_pred"]
    return out


def load() -> float:
    return os.getloadavg()[0]


def run(command: list[str], cpus: str, log: Path, env: dict | None = None) -> float:
    """Run `command` pinned to `cpus`, its output into `log`; the wall time in seconds."""
    start = time.monotonic()
    with log.open("w") as fh:
        code = subprocess.run(["taskset", "-c", cpus, *command], stdout=fh,
                              stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"{command[0]} failed (exit {code}); see {log}")
    return time.monotonic() - start


def unetzoo_run(args: argparse.Namespace, data: Path, out: Path, names: list[str]) -> dict:
    split = labels_csv(data, out)
    run_dir = out / "unetzoo-run"
    before = load()
    seconds = run([sys.executable, "-m", "unetzoo", "train", "--dataset", str(data),
                   "--csvfile", str(split), "--task", "instance", "--time-budget",
                   str(args.minutes), "--out", str(run_dir), "--threads", str(args.threads),
                   "--no-report", "--no-progress", "--overwrite"], args.cpus,
                  out / "unetzoo-train.log", env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    predicted = out / "unetzoo-labels"
    shutil.rmtree(predicted, ignore_errors=True)
    test_dir = out / "test-images"
    test_dir.mkdir(exist_ok=True)
    for name in names:
        target = test_dir / name
        if not target.exists():
            target.symlink_to((data / "images" / name).resolve())
    start = time.monotonic()
    run([sys.executable, "-m", "unetzoo", "predict", "--model", str(run_dir), "--input",
         str(test_dir), "--out", str(predicted), "--threads", str(args.threads),
         "--no-progress"], args.cpus, out / "unetzoo-predict.log",
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    checkpoint = json.loads((run_dir / "test" / "metrics.json").read_text())
    return {"method": "unetzoo train --task instance --time-budget "
                      f"{args.minutes:g} (no recipe flags)",
            "train_seconds": seconds, "predict_seconds": time.monotonic() - start,
            "load_before": before, "scores": score(data, predicted, names),
            "run_test_metrics": {k: checkpoint["mean_over_images"].get(k)
                                 for k in ("ap50", "map", "pq", "aji")}}


def peer_run(name: str, python: str, args: argparse.Namespace, data: Path, out: Path,
             names: list[str]) -> dict:
    peer_out = out / name
    shutil.rmtree(peer_out, ignore_errors=True)
    before = load()
    seconds = run([python, str(ROOT / "benchmarks" / "peers" / f"{name}_run.py"), "--data",
                   str(data), "--out", str(peer_out), "--minutes", str(args.minutes),
                   "--threads", str(args.threads), "--seed", "0"], args.cpus,
                  out / f"{name}.log")
    facts = json.loads((peer_out / "run.json").read_text())
    return {"method": f"{name} from scratch, {args.minutes:g} min", "wall_seconds": seconds,
            "load_before": before, "run": facts,
            "scores": score(data, peer_out / "labels", names)}


def shipped_run(args: argparse.Namespace, data: Path, out: Path, names: list[str]) -> dict:
    predicted = out / "nuclei-labels"
    shutil.rmtree(predicted, ignore_errors=True)
    test_dir = out / "test-images"
    start = time.monotonic()
    run([sys.executable, "-m", "unetzoo", "predict", "--model", "nuclei", "--input",
         str(test_dir), "--out", str(predicted), "--threads", str(args.threads),
         "--no-progress"], args.cpus, out / "nuclei-predict.log",
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return {"method": "the shipped nuclei model (no training here)",
            "predict_seconds": time.monotonic() - start, "scores": score(data, predicted, names)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "dsb2018"),
                        type=Path)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpus", default="0,1", help="CPUs every method is pinned to")
    parser.add_argument("--out", type=Path, default=Path("/tmp/unetzoo-instances"))
    parser.add_argument("--stardist-python", default="/work/peers/stardist-venv/bin/python")
    parser.add_argument("--cellpose-python", default="/work/peers/cellpose-venv/bin/python")
    parser.add_argument("--only", nargs="+", default=["unetzoo", "stardist", "cellpose",
                                                      "shipped"])
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks" / "results" / "instances.json")
    args = parser.parse_args()
    data = args.data.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    names = test_names(data)
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results.update(date=time.strftime("%Y-%m-%d"), minutes=args.minutes, threads=args.threads,
                   test_images=len(names))
    methods = results.setdefault("methods", {})
    if "unetzoo" in args.only:
        methods["unetzoo"] = unetzoo_run(args, data, args.out, names)
    if "stardist" in args.only:
        methods["stardist"] = peer_run("stardist", args.stardist_python, args, data,
                                       args.out, names)
    if "cellpose" in args.only:
        methods["cellpose"] = peer_run("cellpose", args.cellpose_python, args, data,
                                       args.out, names)
    if "shipped" in args.only:
        if not (args.out / "test-images").is_dir():
            (args.out / "test-images").mkdir()
            for name in names:
                (args.out / "test-images" / name).symlink_to((data / "images" / name).resolve())
        methods["shipped"] = shipped_run(args, data, args.out, names)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    print(f"dsb2018 test split ({len(names)} images), {args.minutes:g} min of training each, "
          f"{args.threads} threads; mean over images (pooled)")
    print(f"{'method':<12} {'AP@0.5':>14} {'mean AP':>14} {'PQ':>14} {'AJI':>14}")
    for key, result in methods.items():
        mean, pooled = result["scores"]["mean_over_images"], result["scores"]["pooled"]
        cells = [f"{mean[k]:.3f} ({pooled[k]:.3f})" for k in ("ap50", "map", "pq", "aji")]
        print(f"{key:<12} " + " ".join(f"{c:>14}" for c in cells))


if __name__ == "__main__":
    main()
