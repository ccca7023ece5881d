"""A bounded load test of `unetzoo serve` on localhost, against `unetzoo predict` on the same
images; and (`--batching`) whether gathering requests into batches pays on this machine.

Load test: starts `unetzoo serve --model M` in a subprocess, sends REQUESTS requests from
CLIENTS concurrent clients (asyncio + httpx), a fixed mix of good ones (image files to
`/v1/models/M/predict`, some as Open Inference Protocol JSON tensors to `/v2/.../infer`) and
bad ones (not an image, a cut PNG, an unknown model, a path as a model name, an image over
the pixel limit, a body over the size limit, malformed JSON, a wrong datatype or shape, a
wrong method). It checks that every good answer equals the file `unetzoo predict` wrote for
that image, that every bad one is a 4xx with one line of JSON, and that no request is lost;
it reports p50 / p99 latency, throughput, and the ratio of the server's throughput on the
good requests to `predict`'s over the same images, as many times (a folder of one copy per
good request; the `predict` loop's own time, measured before and after the load, without
model opening). The client runs on the same machine and
takes CPU from the server, as it would on one machine.

Batching (`--batching`): for one size of image (256 x 256 of dsb2018), the model's time per
image when B images run as one batch (B = 1, 2, 4, 8), in interleaved rounds (median per
B), for the backend `serve` runs by default and for torch: the measurement behind
`--max-batch`'s default.

    python benchmarks/serve_load.py                       # nuclei, 500 requests, 8 clients
    python benchmarks/serve_load.py --batching
    python benchmarks/serve_load.py --requests 100 --images 8   # a quick run

Needs ../shared/data/dsb2018 (the images) and the serve extra (and httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from report import machine, markdown, write_json

ROOT = Path(__file__).resolve().parents[1]
DSB = ROOT.parent / "shared" / "data" / "dsb2018" / "images"
MAX_PIXELS = 1_500_000  # the server's --max-pixels here: a 1300 x 1300 image is over it
MAX_MB = 8  # the server's --max-request-mb here


@dataclass
class Request:
    """One request of the mix: what is sent, and what answer it must get."""

    kind: str  # good-file, good-tensor, or bad-<what>
    method: str
    path: str
    image: str | None = None  # the dsb2018 stem whose mask a good answer must equal
    files: dict[str, Any] | None = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_path: bytes | None = None

    @property
    def good(self) -> bool:
        return self.kind.startswith("good")


@dataclass
class Answer:
    request: Request
    status: int | None
    seconds: float
    body: bytes = b""
    error: str | None = None


def pick_images(count: int) -> list[Path]:
    """`count` dsb2018 images spread over the sorted list, of the sizes most of its images
    have (256 x 256 up to 696 x 520; the few larger ones are left out to keep the run short),
    the first four 256 x 256 (sent as JSON tensors too)."""
    files = sorted(DSB.glob("*.png"))
    if not files:
        sys.exit(f"no images in {DSB}: this benchmark needs ../shared/data/dsb2018")
    sizes = {p: Image.open(p).size for p in files}
    small = [p for p in files if sizes[p] == (256, 256)][:4]
    rest = [p for p in files if p not in small and sizes[p][0] * sizes[p][1] <= 696 * 520]
    step = max(1, len(rest) // max(1, count - len(small)))
    return small + rest[::step][: max(0, count - len(small))]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def tensor_body(path: Path, datatype: str = "UINT8", shape: list[int] | None = None) -> bytes:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    return json.dumps({"id": path.stem, "inputs": [{
        "name": "image", "shape": shape or list(pixels.shape), "datatype": datatype,
        "data": pixels.ravel().tolist()}]}).encode()


def make_requests(model: str, images: list[Path], total: int, bad_share: float,
                  tensor_share: float, seed: int) -> list[Request]:
    """The mix: good files, good tensors and each kind of bad request, shuffled (seeded)."""
    rng = random.Random(seed)
    data = {p.stem: p.read_bytes() for p in images}
    tensors = {p.stem: tensor_body(p) for p in images[:4]}
    first = images[0]
    big = png(np.zeros((1300, 1300, 3), np.uint8))  # over MAX_PIXELS, a small file
    infer = f"/v2/models/{model}/infer"
    predict = f"/v1/models/{model}/predict"
    bad = [
        Request("bad-not-an-image", "POST", predict, files={"image": ("notes.png", b"hello")}),
        Request("bad-no-format", "POST", predict, files={"image": ("notes.txt", b"hello")}),
        Request("bad-cut-png", "POST", predict,
                files={"image": ("cut.png", data[first.stem][:300])}),
        Request("bad-unknown-model", "POST", "/v1/models/nomodel/predict",
                files={"image": (first.name, data[first.stem])}),
        Request("bad-path-as-name", "POST", "", raw_path=b"/v2/models/..%2F..%2Fetc/infer",
                content=b"{}"),
        Request("bad-dots-as-name", "GET", "", raw_path=b"/v2/models/%2E%2E/ready"),
        Request("bad-huge-image", "POST", predict, files={"image": ("big.png", big)}),
        Request("bad-body-too-large", "POST", infer, content=b"0" * (MAX_MB * 2**20 + 1)),
        Request("bad-json", "POST", infer, content=b'{"inputs": [',
                headers={"content-type": "application/json"}),
        Request("bad-datatype", "POST", infer, content=json.dumps({"inputs": [
            {"name": "image", "shape": [8, 8], "datatype": "INT64", "data": [1] * 64}]}).encode()),
        Request("bad-shape", "POST", infer, content=json.dumps({"inputs": [
            {"name": "image", "shape": [8, 8, 8], "datatype": "UINT8",
             "data": [1] * 512}]}).encode()),
        Request("bad-method", "GET", infer),
    ]
    requests: list[Request] = []
    bad_count = round(total * bad_share)
    tensor_count = round(total * tensor_share)
    for i in range(bad_count):
        requests.append(bad[i % len(bad)])
    for i in range(tensor_count):
        stem = list(tensors)[i % len(tensors)]
        requests.append(Request("good-tensor", "POST", infer, image=stem,
                                content=tensors[stem],
                                headers={"content-type": "application/json"}))
    for i in range(total - bad_count - tensor_count):
        path = images[i % len(images)]
        requests.append(Request("good-file", "POST", predict, image=path.stem,
                                files={"image": (path.name, data[path.stem])}))
    rng.shuffle(requests)
    return requests


async def send_all(url: str, requests: list[Request], clients: int) -> list[Answer]:
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    answers: list[Answer | None] = [None] * len(requests)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            r = requests[i]
            target = httpx.URL(url, raw_path=r.raw_path) if r.raw_path else url + r.path
            start = time.perf_counter()
            try:
                response = await http.request(r.method, target, files=r.files,
                                              content=r.content, headers=r.headers)
                answers[i] = Answer(r, response.status_code, time.perf_counter() - start,
                                    response.content)
            except httpx.HTTPError as exc:
                answers[i] = Answer(r, None, time.perf_counter() - start,
                                    error=f"{type(exc).__name__}: {exc}")

    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return [a for a in answers if a is not None]


def check(answers: list[Answer], expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """Every good answer equals predict's mask; every bad one is a one-line 4xx."""
    wrong: list[str] = []
    for a in answers:
        r = a.request
        if a.status is None:
            wrong.append(f"{r.kind}: no answer ({a.error})")
        elif r.good:
            if a.status != 200:
                wrong.append(f"{r.kind} {r.image}: {a.status} {a.body[:200]!r}")
                continue
            if r.kind == "good-file":
                got = np.asarray(Image.open(io.BytesIO(a.body)))
            else:
                out = json.loads(a.body)["outputs"][0]
                got = np.asarray(out["data"], np.uint8).reshape(out["shape"]) * 255
            assert r.image is not None
            if not np.array_equal(got, expected[r.image]):
                wrong.append(f"{r.kind} {r.image}: differs from predict in "
                             f"{int((got != expected[r.image]).sum())} pixels")
        else:
            try:
                body = json.loads(a.body)
                one_line = list(body) == ["error"] and "\n" not in body["error"]
            except ValueError:
                one_line = False
            if not 400 <= a.status < 500 or not one_line:
                wrong.append(f"{r.kind}: {a.status} {a.body[:200]!r}")
    return {"wrong": wrong[:20], "wrong_count": len(wrong)}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_predict(model: str, folder: Path, out: Path, backend: str) -> tuple[float, float]:
    """(the seconds of `unetzoo predict`'s loop over `folder`: its own report of reading,
    inference and writing, not model opening; the CPU seconds of the whole process)."""
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "unetzoo", "predict", "--model", model, "--input",
               str(folder), "--out", str(out), "--no-progress", "--backend", backend]
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    now = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"predict failed: {done.stderr or done.stdout}")
    found = re.search(r"\(\d+ files, ([\d.]+) s\)", done.stdout)
    if not found:
        sys.exit(f"predict printed no time: {done.stdout}")
    cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
    return float(found.group(1)), cpu


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a running process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: str, port: int, backend: str, max_batch: int | None,
                 log: Path) -> subprocess.Popen:
    import httpx

    command = [sys.executable, "-m", "unetzoo", "serve", "--model", model, "--port", str(port),
               "--backend", backend, "--max-pixels", str(MAX_PIXELS), "--max-request-mb",
               str(MAX_MB), "--no-access-log", "--max-queue", "64"]
    if max_batch:
        command += ["--max-batch", str(max_batch)]
    handle = open(log, "w")  # noqa: SIM115 (the server writes until it is stopped)
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server stopped: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2).status_code \
                    == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.terminate()
    sys.exit("the server did not start in 5 minutes")


def load_test(args: argparse.Namespace) -> dict[str, Any]:
    images = pick_images(args.images)
    with tempfile.TemporaryDirectory(prefix="unetzoo-serve-load-") as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        for path in images:
            shutil.copy(path, folder / path.name)
        out = Path(tmp) / "masks"
        run_predict(args.model, folder, out, args.backend)  # warm: caches, conversions
        one = Path(tmp) / "one"
        one.mkdir()
        shutil.copy(images[0], one / images[0].name)
        _, fixed_cpu = run_predict(args.model, one, Path(tmp) / "one_out", args.backend)
        expected = {p.stem: np.asarray(Image.open(p)) for p in out.glob("*.png")}
        requests = make_requests(args.model, images, args.requests, args.bad_share,
                                 args.tensor_share, args.seed)
        # predict's baseline: the same images as the good requests, as many times
        same = Path(tmp) / "same"
        same.mkdir()
        for i, r in enumerate(x for x in requests if x.good):
            shutil.copy(folder / f"{r.image}.png", same / f"{i:04d}_{r.image}.png")
        before, before_cpu = run_predict(args.model, same, out, args.backend)
        port = free_port()
        process = start_server(args.model, port, args.backend, args.max_batch,
                               Path(tmp) / "server.log")
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(send_all(url, requests[: args.clients * 2], args.clients))  # warm
            start, cpu_start = time.perf_counter(), process_cpu(process.pid)
            answers = asyncio.run(send_all(url, requests, args.clients))
            wall = time.perf_counter() - start
            server_cpu = process_cpu(process.pid) - cpu_start
            import httpx

            served = httpx.get(f"{url}/v1/models", timeout=10).json()["models"][0]
            alive = process.poll() is None
        finally:
            process.terminate()
            process.wait(30)
        server_log = (Path(tmp) / "server.log").read_text()
        after, after_cpu = run_predict(args.model, same, out, args.backend)
    checked = check(answers, expected)
    good = [a for a in answers if a.request.good]
    bad = [a for a in answers if not a.request.good]
    files = [a for a in good if a.request.kind == "good-file"]
    file_seconds = sum(a.seconds for a in files)
    predict_rate = len(good) / ((before + after) / 2)
    # the server's rate on good requests: good images answered per second of the run, the
    # bad requests' (small) share of the time included
    serve_rate = len(good) / wall
    result = {
        "model": args.model, "backend": args.backend, "max_batch": args.max_batch or "default",
        "requests": len(requests), "answered": len(answers),
        "lost": len(requests) - sum(a.status is not None for a in answers),
        "good": len(good), "good_errors": sum(a.status != 200 for a in good),
        "bad": len(bad), "bad_5xx": sum((a.status or 0) >= 500 for a in bad),
        "bad_4xx": sum(400 <= (a.status or 0) < 500 for a in bad),
        "mismatches": checked["wrong_count"], "wrong": checked["wrong"],
        "clients": args.clients, "images": len(images),
        "image_sizes": sorted({f"{Image.open(p).width}x{Image.open(p).height}"
                               for p in images}),
        "wall_s": wall, "throughput_rps": len(answers) / wall,
        "good_images_per_s": serve_rate,
        "p50_ms": 1000 * percentile([a.seconds for a in answers], 50),
        "p99_ms": 1000 * percentile([a.seconds for a in answers], 99),
        "good_p50_ms": 1000 * percentile([a.seconds for a in good], 50),
        "good_p99_ms": 1000 * percentile([a.seconds for a in good], 99),
        "bad_p50_ms": 1000 * percentile([a.seconds for a in bad], 50),
        "mean_file_request_ms": 1000 * file_seconds / max(1, len(files)),
        "predict_s_before": before, "predict_s_after": after,
        "predict_images_per_s": predict_rate,
        "ratio_to_predict": serve_rate / predict_rate,
        # CPU seconds per good image: robust where other processes share the machine
        # (predict: the process less that of a one-image run: imports, model opening)
        "server_cpu_s_per_good_image": server_cpu / max(1, len(good)),
        "predict_cpu_s_per_image": ((before_cpu + after_cpu) / 2 - fixed_cpu) /
                                   max(1, len(good) - 1),
        "server_max_batch": served["max_batch"],
        "model_calls": served["model_calls"],
        "rows_per_model_call": (served["rows"] / served["model_calls"]
                                if served["model_calls"] else None),
        "server_alive_after": alive,
        "server_tracebacks": server_log.count("Traceback"),
        "machine": machine(),
    }
    result["cpu_ratio_to_predict"] = (result["predict_cpu_s_per_image"]
                                      / result["server_cpu_s_per_good_image"])
    return result


def batching(args: argparse.Namespace) -> dict[str, Any]:
    """ms per image of the model alone at batch sizes 1, 2, 4, 8 (interleaved rounds)."""
    import torch

    from unetzoo.data.io import read_image
    from unetzoo.engine.inference.predictor import InferenceOptions, Predictor
    from unetzoo.runtime import Runtime

    files = [p for p in sorted(DSB.glob("*.png")) if Image.open(p).size == (256, 256)][:8]
    rows = []
    for backend in (args.backend, "torch"):
        predictor = Predictor.open(args.model, InferenceOptions(Runtime.resolve(
            backend=backend)))
        pre = predictor.preprocessing
        tensors = []
        for path in files:
            image = read_image(path, pre.in_channels)
            tensors.append(pre.to_tensor(image, pre.statistics(image)))
        sizes = (1, 2, 4, 8)
        times: dict[int, list[float]] = {b: [] for b in sizes}
        for b in sizes:
            predictor.forward(torch.stack(tensors[:b]))  # warm each shape
        for _ in range(args.rounds):
            for b in sizes:
                start = time.perf_counter()
                for i in range(0, 8, b):
                    predictor.forward(torch.stack(tensors[i: i + b]))
                times[b].append((time.perf_counter() - start) / 8)
        same = all(torch.equal(predictor.forward(torch.stack(tensors[:8]))[i],
                               predictor.forward(tensors[i][None])[0]) for i in range(8))
        one = statistics.median(times[1])
        for b in sizes:
            ms = 1000 * statistics.median(times[b])
            rows.append({"backend": predictor.runtime.backend, "batch": b,
                         "ms_per_image": ms, "speed_vs_batch_1": 1000 * one / ms,
                         "batch_8_equals_batch_1": same})
    return {"model": args.model, "image": "256x256", "rounds": args.rounds, "rows": rows,
            "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--images", type=int, default=24, help="dsb2018 images used")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bad-share", type=float, default=0.2)
    parser.add_argument("--tensor-share", type=float, default=0.04,
                        help="share of requests sent as JSON tensors (good ones)")
    parser.add_argument("--max-batch", type=int, default=None, help="the server's --max-batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batching", action="store_true",
                        help="measure batching instead of the load test")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of --batching")
    parser.add_argument("--name", default=None, help="results file name (benchmarks/results)")
    args = parser.parse_args()
    if args.batching:
        result = batching(args)
        print(markdown(result["rows"]))
        path = write_json(args.name or "serve_batching", result)
    else:
        result = load_test(args)
        shown = {k: v for k, v in result.items() if k not in ("wrong", "machine")}
        print(markdown([{"measure": k, "value": v} for k, v in shown.items()]))
        for line in result["wrong"]:
            print("WRONG:", line)
        path = write_json(args.name or "serve_load", result)
    print(f"load average {result['machine']['load_average']}; written to {path}")


if __name__ == "__main__":
    main()
