"""Open a model for inference from what a user names: a checkpoint or an exported file (and,
later, a bioimage.io zip, a safetensors folder or a pretrained name: add a branch to
`open_model`), in the backend the runtime asks for.

The call path reads top-down: `open_model` -> `open_checkpoint` -> `choose_backend`, then
either the PyTorch model, an export made on the fly (`export.py` makes and checks graphs,
`backends.py` runs them) or the cached OpenVINO conversion (`ov_cache.py`).
Backend `auto` is the fast path by default: OpenVINO on CPUs where it is installed and the
model converts, torch otherwise; one log line says which and why.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ...artefacts.checkpoint import Checkpoint, load_checkpoint, run_checkpoint
from ...errors import ConfigError, UnetzooError
from ...runtime import BACKENDS, Runtime
from ..export.bioimageio import is_package
from .backends import (
    ExportedModule,
    format_of,
    open_exported,
    open_graph,
    openvino_runner,
)
from .graphs import checkpoint_for_export, trace_onnx, trace_openvino
from .packages import open_package

log = logging.getLogger("unetzoo")


@dataclass
class OpenedModel:
    """A model ready to run: the module (`B x C x H x W` in, logits `B x K x H x W` out),
    the checkpoint it came from (without weights for an exported file), the runtime it
    runs in (backend decided) and one line saying which backend runs and why."""

    module: nn.Module
    checkpoint: Checkpoint
    runtime: Runtime
    note: str


def choose_backend(runtime: Runtime) -> tuple[str, str]:
    """(backend, reason) for a checkpoint: the runtime's backend when given; for `auto`,
    the environment variable UNETZOO_BACKEND when set (torch, onnxruntime or openvino),
    else OpenVINO on a CPU where it is installed, unless torch options (--compile,
    --channels-last) or a GPU ask for torch."""
    if runtime.backend != "auto":
        return runtime.backend, "asked for"
    if os.environ.get("UNETZOO_BACKEND") in BACKENDS[1:]:
        return os.environ["UNETZOO_BACKEND"], "UNETZOO_BACKEND is set"
    if runtime.device.type != "cpu":
        return "torch", f"on {runtime.device.type}"
    if runtime.torch_options:
        return "torch", "torch options given (--compile / --channels-last)"
    if importlib.util.find_spec("openvino") is None:
        return "torch", "openvino is not installed (pip install openvino)"
    return "openvino", "the fastest CPU backend"


def to_backend(model: nn.Module, backend: str, size: int, precision: str = "fp32"
               ) -> ExportedModule:
    """`model` exported on the fly (in memory, parity-checked in float32, not cached) and
    opened in `backend` (`onnxruntime` or `openvino`)."""
    name = type(model).__name__
    num_classes = int(getattr(model, "num_classes", 1))
    if backend == "openvino":
        graph, fixed, _ = trace_openvino(model, (size, size), where=f"{name} for openvino")
        return ExportedModule(openvino_runner(graph, precision), num_classes, fixed, name)
    onnx, fixed, _ = trace_onnx(model, (size, size), where=f"{name} for {backend}")
    return open_graph(onnx, backend, precision, num_classes, fixed, name)


def open_checkpoint(checkpoint: Checkpoint, runtime: Runtime, prune_depth: int | None = None,
                    source: Path | None = None) -> OpenedModel:
    """A checkpoint's model in the backend `runtime` asks for (`auto`: see
    `choose_backend`). OpenVINO runs the cached conversion (next to `source`, or in the user
    cache folder); with `auto`, a model that does not convert runs in torch instead.

    Raises:
        ConfigError: an explicit backend that is not installed.
        ExportError: an explicit non-torch backend whose graph differs from PyTorch.
    """
    from .ov_cache import cached_openvino

    backend, reason = choose_backend(runtime)
    model, info = checkpoint_for_export(checkpoint, prune_depth)
    name = source.name if source is not None else info.model_spec["name"]
    if backend == "openvino":
        ov_runtime = runtime.for_backend("openvino")
        try:
            entry = cached_openvino(info, model, ov_runtime.precision, source)
        except UnetzooError as exc:
            if runtime.backend != "auto":
                raise
            reason = f"it does not convert to OpenVINO ({exc})"
        else:
            opened = open_exported(entry.xml, "openvino", ov_runtime.precision)
            made = (f"converted and checked in {entry.seconds:.1f} s, cached" if entry.created
                    else "cached conversion")
            note = (f"backend: openvino, {ov_runtime.precision} ({reason}; {made} in "
                    f"{entry.xml.parent})")
            return OpenedModel(opened.module, info, ov_runtime, note)
        backend = "torch"
    if backend == "onnxruntime":
        ort_runtime = runtime.for_backend(backend)
        module = to_backend(model, backend, info.preprocessing.img_size, ort_runtime.precision)
        return OpenedModel(module, info, ort_runtime,
                           f"backend: onnxruntime, fp32 ({name} exported on the fly)")
    torch_runtime = runtime.for_backend("torch")
    return OpenedModel(model, info, torch_runtime,
                       f"backend: torch, {torch_runtime.describe()} ({reason})")


def open_model(source: Path | str, runtime: Runtime, prune_depth: int | None = None
               ) -> OpenedModel:
    """Open a model from what a user names: a checkpoint (`.pt`), a training run's folder
    (its `models/best.pt`), a model folder or a pretrained name (`load_checkpoint`), a file
    `unetzoo export` wrote (`.onnx`, `.xml`, `.torchscript`) or a BioImage Model Zoo package
    (`.zip`), in the backend `runtime` asks for.

    Args:
        source: the file.
        runtime: device, precision and backend (`auto`: OpenVINO on CPUs where it is
            installed and the model converts, else torch; an exported file runs in its
            format's backend).
        prune_depth: run only UNet++ L^k (checkpoints of deep-supervised UNet++ only).

    Returns:
        The opened model, its checkpoint, the runtime it runs in and a one-line note.

    Raises:
        CheckpointError: a missing or unreadable file.
        ConfigError: a backend that cannot run the file, or `prune_depth` with an
            exported file.
    """
    path = run_checkpoint(source)
    if is_package(path):
        if prune_depth is not None:
            raise ConfigError(f"{path}: --prune-depth needs a checkpoint; a package runs the "
                              "network it was exported with")
        backend = choose_backend(runtime)[0]
        package = open_package(path, backend, runtime.precision)
        used = runtime.for_backend("torch" if package.weights == "torchscript" else backend)
        return OpenedModel(package.module, package.checkpoint, used,
                           f"backend: {used.backend} ({path.name}, {package.weights} weights)")
    if format_of(path) is None:  # a .pt file, a model folder or a pretrained name
        return open_checkpoint(load_checkpoint(path), runtime, prune_depth,
                               path if path.is_file() else None)
    if prune_depth is not None:
        raise ConfigError(f"{path}: --prune-depth needs a checkpoint; an exported file runs "
                          "the network it was exported with (`unetzoo export --prune-depth`)")
    exported = open_exported(path, runtime.backend, runtime.precision)
    used = runtime.for_backend(exported.backend)
    if format_of(path) == "torchscript" or exported.backend == "onnxruntime":
        used = Runtime(used.device, "fp32", False, False, exported.backend)
    quantised = " (INT8)" if exported.metadata.get("int8") else ""
    return OpenedModel(exported.module, exported.checkpoint, used,
                       f"backend: {exported.backend}, {used.precision}{quantised} "
                       f"({path.name})")
