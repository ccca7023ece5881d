"""Large images: `unetzoo predict` on 1024^2 to 8192^2 RGB images, wall time and peak memory
(a report, not a test).

Each size runs `unetzoo predict` in a fresh process that reports its own peak resident
set (ru_maxrss) and the time spent in predict (reading the image, sliding-window inference,
writing the mask), after a warm-up prediction of a 512 x 512 image (interpreter start-up,
imports and first-call set-up excluded). The model is a U-Net at a
reduced width (`--width`, default 32: 5 levels 32-512, 7.8 M parameters, 24.1 GFLOPs per
256 x 256 tile) with random weights (speed and memory do not depend on them); tiles of 256
with the default overlap 0.25 and batch 4, the default precision (bf16 where the CPU has
it). Images are synthetic nuclei tiled to size, stored as uncompressed TIFF; `--shared` adds
the real images of ../shared/data (the first isbi2012_em slice, 512 x 512, and the largest
dsb2018 image) next to the synthetic sizes. Each image runs in every backend of
`--backends` (`auto`, the default path: OpenVINO where installed, converted once and cached
by the warm-up; `torch`: bf16 + channels-last), through the same tiling.

    PYTHONPATH=src python benchmarks/large_image.py --quick
    PYTHONPATH=src python benchmarks/large_image.py --shared --sizes 8192   # ~15 min

`--slide` measures reading alone (no model yet): it generates, once, a 40,000 x 40,000 RGB
tiled pyramidal BigTIFF (512-pixel JPEG tiles, 6 levels as SubIFDs, OME metadata with a
0.25 µm pixel size: a whole-slide image; about 1.5 GB, kept at `--slide-file` and reused
by later runs), then, in a fresh process, opens it with `unetzoo.data.large.open_large` and
reads it region by region (`--slide-region` pixels a side, row by row; all of them or
`--slide-regions` spread over the image), reporting the peak resident memory and the
seconds per megapixel of reading (decoding and scaling to float32), and the time of an
overview read from the pyramid (what normalisation statistics need). Memory is the child's
VmHWM (its peak resident set since it started; `ru_maxrss` would report the parent's).

    PYTHONPATH=src python benchmarks/large_image.py --slide       # ~3 min + the first write

`--predict-slide` measures `unetzoo predict` on the slide end to end, region by region
(reading, the model, writing a tiled BigTIFF mask): in a fresh process, after a warm-up
prediction of a 512 x 512 image, `unetzoo predict --large-megapixels 64` (the default) with
the default flags (backend `auto`, batch 4, overlap 0.25) and a tiny untrained U-Net
(`--slide-model tiny`: preset "tiny", 29,625 parameters, patch 256; `--slide-model width32`:
the 7.8 M-parameter U-Net above), its last bias shifted so that about half of the slide is
foreground (a mask that compresses as a real one does, not a constant). It reports seconds
per megapixel, the peak resident memory (VmHWM) and the ratio of the end-to-end time to the
model-only time of the same tiles (batches of random tiles through the same predictor, timed
alone: `--model-batches` of them, scaled to the slide's tile count). `--slide-size` makes a
smaller slide where the 40,000 one takes too long (about 11 minutes with the tiny model on
one core, plus its first write); the size is in the results' name and rows.

    PYTHONPATH=src python benchmarks/large_image.py --predict-slide --slide-size 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch
from report import machine, markdown, write_json

from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
from unetzoo.data.synthetic import synthesize
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.tiling import tile_starts
from unetzoo.models import count_parameters, create_model

CHILD = """
import json, resource, sys, time
from unetzoo.cli import main
warm_up, argv = json.loads(sys.argv[1])
main(warm_up)
start = time.perf_counter()
code = main(argv)
seconds = time.perf_counter() - start
print(json.dumps({"code": code, "seconds": seconds,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_image(path: Path, side: int) -> None:
    image, _ = synthesize(0, 0, 1024)
    image = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    reps = -(-side // 1024)
    tifffile.imwrite(path, np.tile(image, (reps, reps, 1))[:side, :side])


def shared_images() -> list[Path]:
    """The first isbi2012_em slice and the largest dsb2018 image (by pixels)."""
    from PIL import Image

    root = Path(__file__).resolve().parents[2] / "shared" / "data"
    found = []
    isbi = sorted((root / "isbi2012_em" / "images").glob("*"))
    if isbi:
        found.append(isbi[0])
    dsb = list((root / "dsb2018" / "images").glob("*"))
    if dsb:
        found.append(max(dsb, key=lambda p: (lambda s: s[0] * s[1])(Image.open(p).size)))
    return found


def predict(checkpoint: Path, image: Path, warm_up: Path, out: Path, extra: list[str]
            ) -> dict:
    """Predict `image` in a fresh process after a warm-up prediction of `warm_up`."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    argv = [["predict", "--model", str(checkpoint), "--input", str(source), "--output",
             str(out), "--overwrite", "--no-progress", *extra] for source in (warm_up, image)]
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(argv)], env=env,
                          check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["code"] != 0:
        raise RuntimeError(done.stderr)
    return result


SLIDE_SIDE = 40_000
SLIDE_TILE = 512

SLIDE_CHILD = """
import json, resource, sys, time
import numpy as np
from unetzoo.data.large import open_large
path, region, count = json.loads(sys.argv[1])
def rss():  # peak resident MB of this process since exec: VmHWM (ru_maxrss keeps the parent's)
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rss_start = rss()
start = time.perf_counter()
image = open_large(path)
opened = time.perf_counter() - start
rss_open = rss()
height, width = image.shape
starts = [(y, x) for y in range(0, height, region) for x in range(0, width, region)]
if count and count < len(starts):
    starts = [starts[i * len(starts) // count] for i in range(count)]
pixels, checksum = 0, 0.0
start = time.perf_counter()
for y, x in starts:
    part = image.read_region(y, min(y + region, height), x, min(x + region, width))
    pixels += part.shape[0] * part.shape[1]
    checksum += float(part[0, 0, 0])
seconds = time.perf_counter() - start
rss_regions = rss()
start = time.perf_counter()
overview = image.overview(4_000_000)
overview_seconds = time.perf_counter() - start
print(json.dumps({"open_seconds": opened, "rss_imports_mb": rss_start,
                  "rss_after_open_mb": rss_open, "regions": len(starts),
                  "megapixels": pixels / 1e6, "seconds": seconds,
                  "peak_rss_regions_mb": rss_regions, "peak_rss_mb": rss(),
                  "overview_shape": list(overview.shape), "overview_seconds": overview_seconds,
                  "reader": image.reader, "levels": image.levels, "chunk": image.chunk,
                  "pixel_size": str(image.pixel_size), "checksum": checksum}))
"""


def slide_tiles(source: np.ndarray, side: int, tile: int, step: int):
    """The tiles, row by row, of pyramid level `step` (1, 2, 4 ...) of a `side` x `side`
    image that repeats `source`: pixel (y, x) of the level is `source` at (y, x) * step,
    wrapped. Generated one at a time: the image is never held."""
    n = source.shape[0]
    length = -(-side // step)
    for y in range(0, length, tile):
        rows = ((y + np.arange(tile)) * step) % n
        for x in range(0, length, tile):
            cols = ((x + np.arange(tile)) * step) % n
            yield source[rows[:, None], cols[None, :]]


def write_slide(path: Path, side: int = SLIDE_SIDE, tile: int = SLIDE_TILE,
                compression: str = "jpeg") -> float:
    """Write the pyramidal test slide (see the module docstring); the seconds it took."""
    import time

    image, _ = synthesize(0, 0, 1024)
    source = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    levels = 1
    while -(-side // 2 ** levels) >= 1024:
        levels += 1
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    common = {"tile": (tile, tile), "compression": compression, "photometric": "rgb",
              "dtype": np.uint8}
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as tif:
        tif.write(slide_tiles(source, side, tile, 1), shape=(side, side, 3),
                  subifds=levels - 1, metadata={"axes": "YXS", "PhysicalSizeX": 0.25,
                                                "PhysicalSizeY": 0.25}, **common)
        for level in range(1, levels):
            length = -(-side // 2 ** level)
            tif.write(slide_tiles(source, side, tile, 2 ** level), shape=(length, length, 3),
                      subfiletype=1, **common)
    tmp.replace(path)
    return time.perf_counter() - start


def slide_file(args: argparse.Namespace) -> tuple[Path, float | None]:
    """The slide of `--slide-size` (written once: its path, and the seconds that took)."""
    path = Path(args.slide_file or Path(tempfile.gettempdir()) / "unetzoo-bench"
                / f"slide_{args.slide_size}.ome.tif")
    generated = None
    if not path.exists():
        side = args.slide_size
        print(f"writing the {side:,} x {side:,} slide to {path} (once)", flush=True)
        generated = write_slide(path, side)
        print(f"  written in {generated:.0f} s", flush=True)
    return path, generated


def slide(args: argparse.Namespace) -> None:
    """The `--slide` measurement: generate the slide once, then read it in a fresh process."""
    path, generated = slide_file(args)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", SLIDE_CHILD,
                           json.dumps([str(path), args.slide_region, args.slide_regions])],
                          env=env, check=True, capture_output=True, text=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row |= {"file_gb": path.stat().st_size / 1e9, "generate_seconds": generated,
            "region": args.slide_region, "s/megapixel": row["seconds"] / row["megapixels"],
            "megapixels/s": row["megapixels"] / row["seconds"],
            "whole_image_gb_uint8": args.slide_size ** 2 * 3 / 1e9}
    result = {"machine": machine(), "slide": str(path), "rows": [row]}
    out = write_json("large_image_slide", result)
    print(markdown([row], ["region", "regions", "megapixels", "seconds", "s/megapixel",
                           "megapixels/s", "rss_imports_mb", "rss_after_open_mb",
                           "peak_rss_regions_mb", "peak_rss_mb",
                           "overview_seconds", "file_gb", "reader"]))
    print(f"\nwrote {out}")


PREDICT_SLIDE_CHILD = """
import json, resource, sys, time
import torch
from unetzoo.cli import main
from unetzoo.engine.inference.predictor import Predictor
warm_up, argv, batches = json.loads(sys.argv[1])
def rss():  # peak resident MB of this process since exec: VmHWM
    try:
        status = open("/proc/self/status").read()
        return int(status.split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
opened = []
open_predictor = Predictor.open
def spy(*args, **kwargs):  # the predictor predict opens: its model time and its backend
    opened.append(open_predictor(*args, **kwargs))
    return opened[-1]
Predictor.open = spy
main(warm_up)
rss_warm = rss()
opened[-1].model_seconds = 0.0
start = time.perf_counter()
code = main(argv)
seconds = time.perf_counter() - start
peak = rss()
predictor = opened[-1]
in_run = predictor.model_seconds
size = predictor.preprocessing.img_size
batch = torch.randn(predictor.options.batch_size, predictor.preprocessing.in_channels, size,
                    size)
predictor.forward(batch)
predictor.model_seconds = 0.0
for _ in range(batches):
    predictor.forward(batch)
print(json.dumps({"code": code, "seconds": seconds, "peak_rss_mb": peak,
                  "rss_after_warm_up_mb": rss_warm, "model_seconds_in_run": in_run,
                  "model_seconds_per_tile": predictor.model_seconds / (batches * batch.shape[0]),
                  "backend": predictor.runtime.backend,
                  "precision": predictor.runtime.precision}))
"""


def predict_slide(args: argparse.Namespace) -> None:
    """The `--predict-slide` measurement (see the module docstring)."""
    from unetzoo.data.large import open_large

    path, generated = slide_file(args)
    side = args.slide_size
    torch.manual_seed(0)
    if args.slide_model == "tiny":
        model = create_model("unet", 3, 1, preset="tiny")
    else:
        model = create_model("unet", 3, 1, base_channels=32)
    patch = 256
    pre = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=patch)
    state = model.state_dict()  # head shifted so that about half the pixels are foreground
    sample, _ = synthesize(0, 0, 1024)
    with torch.no_grad():
        logits = model.eval()(pre.to_tensor(sample.astype(np.float32) / 255)[None])
    head = [k for k in state if k.endswith(".bias") and state[k].shape == (1,)][-1]
    state[head] = state[head] - logits.median()
    info = Checkpoint(model.unetzoo_spec, "binary", ("nucleus",), pre, state)
    before = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = save_checkpoint(folder / "model.pt", info)
        warm_up = folder / "warm_up.tif"
        write_image(warm_up, 2 * patch)
        out = folder / "masks"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        argv = [["predict", "--model", str(checkpoint), "--input", str(source), "--output",
                 str(out), "--overwrite", "--no-progress", *args.args]
                for source in (warm_up, path)]
        done = subprocess.run([sys.executable, "-c", PREDICT_SLIDE_CHILD,
                               json.dumps([argv[0], argv[1], args.model_batches])],
                              env=env, check=True, capture_output=True, text=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result["code"] != 0:
            raise RuntimeError(done.stderr)
        mask = out / (path.name.split(".")[0] + ".tif")
        with open_large(mask) as written:
            written_shape, pixel = written.shape, str(written.pixel_size)
            foreground = float(written.overview(1_000_000).mean())
        said = [line for line in done.stderr.splitlines() + done.stdout.splitlines()
                if "region by region" in line]
        mask_mb = mask.stat().st_size / 1e6
    tiles = len(tile_starts(side, patch, 0.25)) ** 2
    megapixels = side * side / 1e6
    model_only = result["model_seconds_per_tile"] * tiles
    row = {"size": f"{side} x {side}", "megapixels": megapixels, "tiles": tiles,
           "model": args.slide_model, "params": count_parameters(model),
           "backend": result["backend"], "precision": result["precision"],
           "seconds": result["seconds"], "s/megapixel": result["seconds"] / megapixels,
           "megapixels/s": megapixels / result["seconds"],
           "model_only_seconds": model_only, "model_batches": args.model_batches,
           "ratio_to_model_only": result["seconds"] / model_only,
           "model_seconds_in_run": result["model_seconds_in_run"],
           "peak_rss_mb": result["peak_rss_mb"],
           "rss_after_warm_up_mb": result["rss_after_warm_up_mb"],
           "whole_image_float32_mb": side * side * 3 * 4 / 1e6,
           "mask_mb": mask_mb, "mask_shape": list(written_shape), "mask_pixel_size": pixel,
           "mask_foreground_fraction": foreground, "generate_seconds": generated,
           "logged": said}
    result = {"machine_before": before, "machine_after": machine(), "slide": str(path),
              "command": "benchmarks/large_image.py --predict-slide --slide-size "
                         f"{side} --slide-model {args.slide_model}"
                         + (f" --args {' '.join(args.args)}" if args.args else ""),
              "predict_args": args.args, "rows": [row]}
    name = f"large_image_predict_slide_{side}"
    out_json = write_json(name, result)
    print(markdown([row], ["size", "tiles", "backend", "precision", "seconds", "s/megapixel",
                           "model_only_seconds", "ratio_to_model_only", "peak_rss_mb",
                           "whole_image_float32_mb"]))
    print(f"\nwrote {out_json}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", action="store_true",
                        help="read a generated 40,000 x 40,000 tiled pyramidal TIFF region by "
                             "region (no model): peak memory and seconds per megapixel")
    parser.add_argument("--predict-slide", action="store_true",
                        help="unetzoo predict on the generated slide end to end, region by "
                             "region: seconds per megapixel, peak memory, ratio to model time")
    parser.add_argument("--slide-size", type=int, default=SLIDE_SIDE,
                        help="side of the generated slide (default 40,000)")
    parser.add_argument("--slide-model", choices=("tiny", "width32"), default="tiny",
                        help="--predict-slide: the U-Net (preset tiny, or width 32)")
    parser.add_argument("--model-batches", type=int, default=300,
                        help="--predict-slide: batches timed for the model-only time")
    parser.add_argument("--slide-file", default=None,
                        help="where the slide is written once and reused (default: "
                             "<tmp>/unetzoo-bench/slide_<size>.ome.tif)")
    parser.add_argument("--slide-region", type=int, default=1024, help="region side (pixels)")
    parser.add_argument("--slide-regions", type=int, default=0,
                        help="read only this many regions, spread over the slide (0: all)")
    parser.add_argument("--quick", action="store_true", help="512 to 2048, width 8")
    parser.add_argument("--width", type=int, default=32, help="U-Net base channels")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--shared", action="store_true",
                        help="also the real images of ../shared/data (512 and ~1024 px)")
    parser.add_argument("--backends", nargs="+", default=["auto"],
                        help="predict backends to run each image in (e.g. auto torch)")
    parser.add_argument("--args", nargs=argparse.REMAINDER, default=[],
                        help="extra predict flags, e.g. --args --precision fp32")
    args = parser.parse_args()
    if args.slide:
        slide(args)
        return
    if args.predict_slide:
        predict_slide(args)
        return
    sizes, width = ([512, 1024, 2048], 8) if args.quick else (args.sizes, args.width)
    torch.manual_seed(0)
    model = create_model("unet", 3, 1, base_channels=width)
    info = Checkpoint(model.unetzoo_spec, "binary", ("nucleus",),
                      Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=args.patch),
                      model.state_dict())
    rows = []
    before = machine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = save_checkpoint(folder / "model.pt", info)
        warm_up = folder / "warm_up.tif"
        write_image(warm_up, 2 * args.patch)
        sources = [(path, None) for path in shared_images()] if args.shared else []
        sources += [(folder / f"image_{side}.tif", side) for side in sizes]
        for image, side in sources:
            if side is not None:
                write_image(image, side)
            from PIL import Image

            width_px, height_px = Image.open(image).size if side is None else (side, side)
            tiles = len(tile_starts(height_px, args.patch, 0.25)) * len(
                tile_starts(width_px, args.patch, 0.25))
            megapixels = width_px * height_px / 1e6
            for backend in args.backends:
                result = predict(checkpoint, image, warm_up, folder / "masks",
                                 ["--backend", backend, *args.args])
                rows.append({"image": image.name if side is None else "synthetic",
                             "size": f"{height_px} x {width_px}", "backend": backend,
                             "megapixels": megapixels, "tiles": tiles,
                             "seconds": result["seconds"],
                             "megapixels/s": megapixels / result["seconds"],
                             "s/megapixel": result["seconds"] / megapixels,
                             "ms/tile": 1e3 * result["seconds"] / tiles,
                             "peak_rss_mb": result["peak_rss_mb"]})
                print(rows[-1], flush=True)
            if side is not None:
                image.unlink()
    for row in rows:
        base = next(r for r in rows if r["backend"] == row["backend"])["s/megapixel"]
        row["time vs linear"] = row["s/megapixel"] / base
    result = {"machine_before": before, "machine_after": machine(), "width": width,
              "params": count_parameters(model), "patch": args.patch,
              "predict_args": args.args, "rows": rows}
    path = write_json("large_image" + ("_quick" if args.quick else ""), result)
    print(f"{before['cpu']}, {before['threads']} threads, load average "
          f"{before['load_average'][0]:.2f} before, "
          f"{result['machine_after']['load_average'][0]:.2f} after; U-Net width {width} "
          f"({result['params']:,} parameters), patch {args.patch}, "
          f"flags {' '.join(args.args) or '(defaults)'}\n")
    print(markdown(rows, ["image", "size", "backend", "tiles", "seconds", "megapixels/s",
                          "ms/tile", "peak_rss_mb"]))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
