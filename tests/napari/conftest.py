"""Fixtures of the napari plugin's tests: tiny models and a tiny run, made here, and a
display for OpenGL.

Qt runs headless: `QT_QPA_PLATFORM=offscreen` is set before any Qt application starts.
napari draws layers with OpenGL, which Qt's offscreen platform gets from an X display
(GLX; Mesa's software renderer does): `gl_display` starts a virtual one (Xvfb) where
`DISPLAY` is not set. The widget tests skip where napari, pytest-qt, a Qt binding or Qt's
libraries are missing, or where there is neither a display nor Xvfb.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from unetzoo.artefacts.checkpoint import Checkpoint, as_checkpoint, save_checkpoint
from unetzoo.data.synthetic import synthesize
from unetzoo.engine.inference.instance import InstanceDecoding
from unetzoo.instances.labels import Thresholds
from unetzoo.instances.targets import get_representation
from unetzoo.models import create_model


def tiny_checkpoint(task: str = "binary", channels: int = 3, img_size: int = 256,
                    classes: int = 3) -> Checkpoint:
    """An untrained tiny U-Net's checkpoint for `task` (instance: the distance
    representation with thresholds 0, so that every plane holds one object)."""
    if task == "instance":
        representation = get_representation("distance")
        model = create_model("unet", channels, representation.num_channels, preset="tiny")
        checkpoint = replace(as_checkpoint(model, task="multilabel"), task="instance",
                             class_names=("object",),
                             instance=InstanceDecoding(representation,
                                                       Thresholds(0.0, 0.0)).to_dict())
    else:
        outputs = 1 if task == "binary" else classes
        checkpoint = as_checkpoint(create_model("unet", channels, outputs, preset="tiny"),
                                   task=task)  # type: ignore[arg-type]
    return replace(checkpoint, preprocessing=replace(checkpoint.preprocessing,
                                                     img_size=img_size))


@pytest.fixture
def tiny_model(tmp_path: Path):
    """A function writing a tiny checkpoint (`tiny_checkpoint`'s arguments) and returning
    its path."""

    def make(task: str = "binary", **kwargs) -> Path:
        path = tmp_path / f"tiny-{task}-{len(list(tmp_path.glob('tiny-*')))}.pt"
        save_checkpoint(path, tiny_checkpoint(task, **kwargs))
        return path

    return make


def nuclei_image(index: int = 0, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic RGB uint8 image of nuclei and its 0/255 mask."""
    return synthesize(0, index, size)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder of one epoch of a tiny U-Net on 4 synthetic images (with dataset.json
    and split.csv), trained once for the session."""
    from tests.helpers import write_pairs
    from unetzoo.engine.training.setup import train

    root = tmp_path_factory.mktemp("tiny-run")
    dataset = write_pairs(root / "data", count=4, size=48)
    csv = dataset / "split.csv"
    csv.write_text("image,mask,split\n" + "".join(
        f"images/img_{i:03d}.png,masks/img_{i:03d}.png,{s}\n"
        for i, s in enumerate(("train", "train", "val", "test"))))
    result = train(dataset=str(dataset), csvfile=str(csv), model="unet", preset="tiny",
                   epoch=1, batch=2, img_size=48, out=str(root / "run"), workers=0,
                   progress=False, logger="none", test=False, report=False)
    return result.run_dir


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent exits (Linux `prctl`), so that a
    virtual display outlives the Qt application's teardown and no longer than the tests."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def gl_display() -> str:
    """An X display for OpenGL: `DISPLAY` where set, else a virtual one (Xvfb, on the first
    free display number, ended when the test process exits: Qt holds its connection until
    then); skips the test without either."""
    if os.environ.get("DISPLAY"):
        return os.environ["DISPLAY"]
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("no display for OpenGL (napari draws layers with it): install Xvfb "
                    "(apt-get install xvfb) or run with DISPLAY set")
    read, write = os.pipe()
    process = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1024x768x24",
                                "-nolisten", "tcp"], pass_fds=(write,),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent)
    os.close(write)
    number = b""
    while not number.endswith(b"\n") and select.select([read], [], [], 20)[0]:
        chunk = os.read(read, 16)
        if not chunk:
            break
        number += chunk
    os.close(read)
    if not number.strip().isdigit():
        process.kill()
        pytest.skip("Xvfb did not start: no display for OpenGL")
    os.environ["DISPLAY"] = f":{number.decode().strip()}"
    return os.environ["DISPLAY"]
