"""A folder of 10,000 images with 1% bad files survives `predict` (issue 24): every good image
predicted, every bad one named, and a re-run after a kill finishes the rest with identical
outputs.

    PYTHONPATH=src python benchmarks/predict_folder.py [--images 10000] [--bad 0.01]

Generates the folder (64 x 64 RGB PNGs; the bad ones truncated, of another format, empty, or
larger than the pixel limit, in equal shares) and a tiny U-Net checkpoint, then:
1. predicts it whole once (the reference), timing it;
2. predicts it again into another folder, killed (SIGKILL) after `--kill-after` seconds;
3. re-runs that with `--skip-existing` and compares every output with the reference, byte
   for byte; checks that every bad file is named in `unreadable.txt` and none is predicted.
Writes benchmarks/results/predict_folder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def make_folder(folder: Path, count: int, bad_share: float, seed: int = 0) -> list[str]:
    """The images, and the names of the bad files (truncated, wrong format, empty, huge)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    bad_count = round(count * bad_share)
    bad_at = set(rng.choice(count, bad_count, replace=False).tolist())
    bad: list[str] = []
    for i in range(count):
        name = f"img_{i:05d}.png"
        if i not in bad_at:
            pixels = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name)
            continue
        kind = len(bad) % 4
        if kind == 0:  # truncated
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
                folder / name)
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[: len(data) // 3])
        elif kind == 1:  # another format under a .png name
            (folder / name).write_bytes(b"%PDF-1.4 not an image at all\n")
        elif kind == 2:  # empty
            (folder / name).write_bytes(b"")
        else:  # larger than the pixel limit set below (UNETZOO_MAX_IMAGE_PIXELS)
            Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(folder / name)
        bad.append(name)
    return bad


def model(path: Path) -> Path:
    import torch

    from unetzoo import create_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(path, create_model("unet", 3, 1, preset="tiny"))


def predict(checkpoint: Path, folder: Path, out: Path, *extra: str,
            kill_after: float | None = None) -> tuple[int, float, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "UNETZOO_MAX_IMAGE_PIXELS": "10000"}
    command = [sys.executable, "-m", "unetzoo", "predict", "--model", str(checkpoint),
               "--input", str(folder), "--out", str(out), "--backend", "torch",
               "--precision", "fp32", "--threads", "2", "--no-progress", *extra]
    start = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
    text, _ = process.communicate()
    return process.returncode, time.monotonic() - start, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--bad", type=float, default=0.01)
    parser.add_argument("--kill-after", type=float, default=20.0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/unetzoo-predict-folder"))
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks" / "results" / "predict_folder.json")
    args = parser.parse_args()
    work = args.work
    folder = work / "images"
    bad = make_folder(folder, args.images, args.bad) if not folder.is_dir() else \
        json.loads((work / "bad.json").read_text())
    (work / "bad.json").write_text(json.dumps(bad))
    checkpoint = model(work / "tiny.pt")
    for name in ("whole", "killed"):
        os.system(f"rm -rf {work / name}")
    code, whole_seconds, text = predict(checkpoint, folder, work / "whole")
    listed = [Path(line.split("\t")[0]).name
              for line in (work / "whole" / "unreadable.txt").read_text().splitlines()]
    empty_named = "empty file" in text  # empty files are named before any work
    code_killed, _, _ = predict(checkpoint, folder, work / "killed",
                                             kill_after=args.kill_after)
    done_at_kill = len(list((work / "killed").glob("*.png")))
    code_rest, rest_seconds, _ = predict(checkpoint, folder, work / "killed",
                                         "--skip-existing")
    reference = {p.name: p.read_bytes() for p in (work / "whole").glob("*.png")}
    resumed = {p.name: p.read_bytes() for p in (work / "killed").glob("*.png")}
    temporaries = [p.name for p in (work / "killed").iterdir() if p.name.startswith(".")]
    result = {
        "date": time.strftime("%Y-%m-%d"), "images": args.images, "bad": len(bad),
        "whole": {"exit": code, "seconds": whole_seconds,
                  "images_per_second": (args.images - len(bad)) / whole_seconds,
                  "predicted": len(reference), "named_bad_in_list": len(listed),
                  "empty_named_before_work": empty_named},
        "killed_after_seconds": args.kill_after, "kill_exit": code_killed,
        "outputs_at_kill": done_at_kill, "temporaries_left": temporaries,
        "rerun": {"exit": code_rest, "seconds": rest_seconds},
        "identical_to_reference": resumed == reference,
        "every_good_image_predicted": len(reference) == args.images - len(bad),
        "every_bad_file_named": sorted(listed + [n for n in bad if n not in listed and
                                                 (folder / n).stat().st_size == 0])
        == sorted(bad),
        "no_bad_file_predicted": not any(n in reference for n in bad),
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
