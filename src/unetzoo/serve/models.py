"""The served models: each opened once through the one door (`Predictor.open`), run off the
event loop by worker threads of its own, behind a bounded queue.

A request's labels come from `Predictor.labels` on the image `data.io` reads, exactly as
`unetzoo predict` makes them (`engine/inference/predict.py`), so a response equals the file
`predict` writes for the same image. A model holds at most `max_queue` requests (waiting
or running); one more is answered 503 with `Retry-After` at once, before its body is read.
`max_batch` worker threads decode images and run `labels` side by side, their model calls
of one input size gathered into one batch (`serve.batching`); so at most `max_batch` images
of a model are decoded at a time, whatever the queue holds. Answers are encoded outside the
workers.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..data.io import read_image
from ..engine.inference.predictor import InferenceOptions, Predictor
from .batching import Gatherer
from .inputs import INPUT_NAME, Upload
from .naming import NamedModel
from .replies import RequestError

log = logging.getLogger("unetzoo")

T = TypeVar("T")


@dataclass(frozen=True)
class ServeOptions:
    """How the server runs and what it takes.

    Attributes:
        inference: runtime, backend, tiling, TTA, threshold, post-processing (as `predict`).
        max_body_bytes: the largest request body read (bytes); more is answered 413.
        max_pixels: the most pixels an upload or a tensor may hold; more is answered 413.
        max_queue: requests a model holds, waiting or running; more are answered 503.
        max_batch: requests of one model run side by side with their model calls of one
            input size gathered into one batch; None: 8 on a GPU, 4 on a CPU (see
            `serve.batching`); 1: one request at a time, no gathering.
        batch_wait_ms: how long a model call waits for others of its size (milliseconds).
    """

    inference: InferenceOptions
    max_body_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 4096 * 4096
    max_queue: int = 32
    max_batch: int | None = None
    batch_wait_ms: float = 5.0


class ServedModel:
    """One model of the server: its predictor, its workers and its queue.

    Args:
        named: the model's URL name and reference.
        options: the server's options.
        predictor: an already opened predictor (tests); else opened from the reference.

    Raises:
        CheckpointError, ConfigError, ExportError: a model that cannot be opened (from
            `Predictor.open`).
    """

    def __init__(self, named: NamedModel, options: ServeOptions,
                 predictor: Predictor | None = None) -> None:
        self.name = named.name
        self.reference = named.reference
        self.predictor = predictor or Predictor.open(named.reference, options.inference)
        checkpoint = self.predictor.checkpoint
        assert checkpoint is not None
        self.checkpoint = checkpoint
        device = self.predictor.runtime.device.type
        self.max_batch = options.max_batch or (8 if device != "cpu" else 4)
        self.max_queue = max(1, options.max_queue)
        self.in_flight = 0  # touched on the event loop only
        self.served = 0
        self._local = threading.local()
        self.gatherer: Gatherer | None = None
        if self.max_batch > 1:
            self.gatherer = Gatherer(self.predictor._module,
                                     self.max_batch * self.predictor.options.batch_size,
                                     options.batch_wait_ms / 1000)
        self._pool = ThreadPoolExecutor(self.max_batch, thread_name_prefix=f"serve-{self.name}")
        self._reader = getattr(self.predictor.model, "read_input", None)  # other tools' packages

    # -- what it is -----------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.checkpoint.preprocessing.in_channels)

    @property
    def task(self) -> str:
        return str(self.checkpoint.task)

    @property
    def class_names(self) -> list[str]:
        return list(self.checkpoint.class_names)

    def metadata(self) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata (`GET /v2/models/{name}`): one
        input, `image` (`-1` for dynamic axes), one output, `labels`; `parameters` says what
        else the input may be and what the labels mean."""
        labels: list[int] = [-1, -1]
        if self.task == "multilabel":
            labels = [len(self.class_names), -1, -1]
        pre = self.checkpoint.preprocessing
        return {
            "name": self.name,
            "versions": [],
            "platform": f"unetzoo-{self.predictor.runtime.backend}",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                        "shape": [-1, -1, self.channels]}],
            "outputs": [{"name": "labels", "datatype": labels_datatype(self.task),
                         "shape": labels}],
            "parameters": {
                "task": self.task, "class_names": self.class_names,
                "input_datatypes": ["UINT8", "UINT16", "FP32"],
                "input_layouts": ["HWC", "CHW", "HW", "NHWC", "NCHW", "NHW"],
                "input_values": "UINT8 / 255, UINT16 / 65535, FP32 as sent ([0, 1])",
                "labels": _labels_meaning(self.task),
                "patch_size": pre.img_size, "resize_mode": pre.resize_mode,
                "backend": self.predictor.runtime.backend,
                "threshold": self.predictor.instance.thresholds.foreground
                if self.predictor.instance is not None else self.predictor.options.threshold,
                "source": self.reference.kind,
            },
        }

    def summary(self) -> dict[str, Any]:
        """What the page lists of the model (`GET /v1/models`), with what it has served:
        images, and the model calls and rows (images or tiles) run when calls are
        gathered (`rows / model_calls` is the mean batch)."""
        gatherer = self.gatherer
        return {"name": self.name, "task": self.task, "class_names": self.class_names,
                "channels": self.channels, "backend": self.predictor.runtime.backend,
                "source": self.reference.kind, "max_batch": self.max_batch,
                "served": self.served, "model_calls": gatherer.calls if gatherer else None,
                "rows": gatherer.rows if gatherer else None}

    # -- running --------------------------------------------------------------------------
    def admit(self) -> None:
        """Take a request into the queue (on the event loop).

        Raises:
            RequestError: 503 with `Retry-After` when the queue is full.
        """
        if self.in_flight >= self.max_queue:
            raise RequestError(503, f"model {self.name!r} is busy: {self.in_flight} requests "
                                    "queued; retry shortly", {"Retry-After": "1"})
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` in one of the model's worker threads (off the event loop)."""
        return await asyncio.wrap_future(self._pool.submit(work))

    def _worker_predictor(self) -> Predictor:
        """This thread's copy of the model's predictor (a predictor keeps per-image state),
        whose model calls go through the shared gatherer."""
        own = getattr(self._local, "predictor", None)
        if own is None:
            own = copy.copy(self.predictor)
            own._module = self.gatherer
            self._local.predictor = own
        return own

    def read_upload(self, item: Upload) -> Any:
        """The model's input for an upload, read as `predict` reads the file."""
        if self._reader is not None:
            return self._read_with_reader(item.path.name, item.data)
        return read_image(item.path, self.channels, data=item.data)

    def read_pixels(self, pixels: np.ndarray) -> Any:
        """The model's input for a tensor's stored pixels (`H x W x C`)."""
        from .inputs import tensor_image

        if self._reader is not None:  # a package of another tool reads its own input
            import io

            buffer = io.BytesIO()
            np.save(buffer, pixels[..., 0] if pixels.shape[2] == 1 else pixels)
            return self._read_with_reader("tensor.npy", buffer.getvalue())
        return tensor_image(pixels, self.channels)

    def shows(self, image: Any) -> bool:
        """Whether the model's input is an image to show (`H x W x C` in [0, 1]); a package
        of another tool reads its own, normalised input."""
        return isinstance(image, np.ndarray)

    def display_image(self, item: Upload) -> np.ndarray:
        """An upload as `H x W x C` in [0, 1], to show under an overlay."""
        return read_image(item.path, None, data=item.data)

    def _read_with_reader(self, name: str, data: bytes) -> Any:
        assert self._reader is not None
        with tempfile.TemporaryDirectory(prefix="unetzoo-serve-") as folder:
            path = Path(folder) / name
            path.write_bytes(data)
            return self._reader(path)

    def labels(self, image: Any) -> np.ndarray:
        """Hard labels of one image, as `predict` makes them (`Predictor.labels`): uint8
        `H x W` (binary 0/1, multiclass class indices) or `K x H x W` (multilabel)."""
        if self.gatherer is None:
            labels = np.asarray(self.predictor.labels(image))
        else:
            with self.gatherer.working():
                labels = np.asarray(self._worker_predictor().labels(image))
        self.served += 1
        return labels

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _labels_meaning(task: str) -> str:
    return {"binary": "H x W: 1 foreground, 0 background",
            "multiclass": "H x W: the class index of each pixel",
            "multilabel": "K x H x W: 1 where class k is present",
            "instance": "H x W: one id per object (1..N), 0 background"}.get(task, task)


def labels_datatype(task: str) -> str:
    """The Open Inference Protocol datatype of a task's labels: object ids are INT32."""
    return "INT32" if task == "instance" else "UINT8"
