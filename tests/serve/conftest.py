"""A tiny model, a few images and a real server (uvicorn on a free port, in a thread) for the
server's tests; `predict_files` gives what `unetzoo predict` writes for the same images."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers import write_pairs
from unetzoo.artefacts.checkpoint import Checkpoint, save_checkpoint
from unetzoo.data.synthetic import synthesize
from unetzoo.data.transforms import Preprocessing
from unetzoo.engine.inference.predict import predict_paths
from unetzoo.engine.inference.predictor import InferenceOptions
from unetzoo.models import create_model
from unetzoo.runtime import Runtime

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("python_multipart")
pytest.importorskip("httpx")

PATCH = 32  # images of 48 x 48 are tiled in 32 x 32 patches


def options() -> InferenceOptions:
    """Torch in float32 on the CPU: quick to open, the same numbers every time."""
    return InferenceOptions(Runtime.resolve("cpu", "fp32", channels_last=False))


def tiny_checkpoint(path: Path, task: str = "binary", classes: int = 1) -> Path:
    """An untrained tiny U-Net whose last bias is set to minus the median logit of each
    class on the test images, so that its labels follow the image (about half foreground,
    boundaries everywhere: a strict test of equal answers)."""
    torch.manual_seed(0)
    model = create_model("unet", 3, classes, preset="tiny").eval()
    preprocessing = Preprocessing(3, (0.5,) * 3, (0.25,) * 3, img_size=PATCH)
    batch = torch.stack([preprocessing.to_tensor(synthesize(0, i, PATCH)[0] / 255.0)
                         for i in range(3)])
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        logits = model(batch)
        last.bias -= logits.transpose(0, 1).reshape(classes, -1).median(dim=1).values
    names = ("nucleus",) if classes == 1 else tuple(f"c{i}" for i in range(classes))
    info = Checkpoint(model.unetzoo_spec, task, names,  # type: ignore[arg-type]
                      preprocessing, model.state_dict())
    return save_checkpoint(path, info)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="session")
def checkpoint(workdir: Path) -> Path:
    return tiny_checkpoint(workdir / "tiny.pt")


@pytest.fixture(scope="session")
def images(workdir: Path) -> Path:
    """Three 48 x 48 RGB PNGs and a 40 x 56 one (another size)."""
    folder = write_pairs(workdir / "data", count=3, size=48) / "images"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
        folder / "odd.png")
    return folder


def predict_files(checkpoint: Path, source: Path, out: Path) -> dict[str, np.ndarray]:
    """What `unetzoo predict` writes for each image of `source`, by stem (read as stored)."""
    predict_paths(checkpoint, source, out, options(), progress=False, overwrite=True)
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(out.glob("*.png"))}


@pytest.fixture(scope="session")
def predicted(checkpoint: Path, images: Path, workdir: Path) -> dict[str, np.ndarray]:
    masks = predict_files(checkpoint, images, workdir / "predicted")
    for mask in masks.values():  # every mask has both kinds of pixels
        assert 0.1 < (mask == 255).mean() < 0.9
    return masks


@contextmanager
def running(app) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(values: list[str], **limits) -> Iterator[tuple[str, list]]:
    """The models `values` name, opened and served with `limits` (ServeOptions fields);
    yields (URL, the served models)."""
    from unetzoo.serve.app import build_app
    from unetzoo.serve.models import ServeOptions
    from unetzoo.serve.runner import open_models

    serve_options = ServeOptions(options(), **limits)
    models = open_models(values, serve_options)
    with running(build_app(models, serve_options)) as url:
        yield url, models
