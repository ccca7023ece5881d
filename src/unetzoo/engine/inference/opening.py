"""Open a trained model for inference from what a user names: the engine half of the one
door (`artefacts.references.resolve_model` says what a reference is; this module runs it).

Every command and the Python API come through here: `predict`, `eval`, `bench`, `export`'s
INT8 check, `Predictor.open`, the report's pictures. The call path reads top-down:
`open_model` -> `decide_backend` (the one rule for backend and precision, with its reason)
-> the PyTorch model, an export made on the fly (`graphs.py` makes and checks graphs,
`backends.py` runs them), the cached OpenVINO conversion (`ov_cache.py`), an exported file
or a package (`packages.py`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.references import ModelReference, resolve_model
from ...artefacts.runs import conversion_cache_dir
from ...errors import ConfigError, UnetzooError
from ...runtime import BACKENDS, Runtime
from .backends import (
    FORMAT_BACKEND,
    FORMAT_BACKENDS,
    ExportedModule,
    open_exported,
    open_graph,
    openvino_runner,
)
from .graphs import checkpoint_for_export, trace_onnx, trace_openvino
from .packages import open_package, package_metadata

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


def decide_backend(runtime: Runtime, kind: str = "checkpoint",
                   torch_only: str | None = None) -> tuple[Runtime, str]:
    """The one rule for where a model runs: (the runtime with its backend and precision
    decided, the reason in words).

    - `torch_only` (a reason, e.g. attention maps, training): torch, whatever `auto` says.
    - an exported graph (`kind` onnx, openvino, torchscript) runs in its format's backend
      (ONNX also in OpenVINO when asked); TorchScript and onnxruntime run float32.
    - a backend asked for: that one.
    - a PyTorch module handed over directly (`kind` module): `auto` is torch.
    - `auto`: `UNETZOO_BACKEND` when set; torch on a GPU or when torch options
      (--compile, --channels-last) were given; OpenVINO on a CPU where it is installed;
      torch otherwise. (A checkpoint that does not convert to OpenVINO falls back to torch
      in `open_checkpoint`, saying why.)

    Args:
        runtime: device, precision and the backend asked for (`auto` or a name).
        kind: the `ModelReference.kind` of the model (`checkpoint` for anything with
            weights, `package`, an export format), or `module` for a PyTorch module.

    Raises:
        ConfigError: a backend that cannot run this kind of model.
    """
    asked = runtime.backend
    if torch_only is not None:
        if asked not in ("auto", "torch"):
            raise ConfigError(f"{torch_only}: drop --backend {asked} (they run in torch)")
        return runtime.for_backend("torch"), torch_only
    if kind in FORMAT_BACKEND:  # an exported graph
        backend = FORMAT_BACKEND[kind] if asked == "auto" else asked
        if backend not in FORMAT_BACKENDS[kind]:
            raise ConfigError(f"a {kind} file runs with --backend "
                              f"{' or '.join(FORMAT_BACKENDS[kind])}, not {asked}")
        used = runtime.for_backend(backend)
        if backend == "torch":  # a TorchScript graph runs as traced: float32
            used = Runtime(used.device, "fp32", False, False, "torch")
        return used, "the exported file's format" if asked == "auto" else "asked for"
    if asked != "auto":
        return runtime.for_backend(asked), "asked for"
    if kind == "module":
        return runtime.for_backend("torch"), "a PyTorch module"
    if os.environ.get("UNETZOO_BACKEND") in BACKENDS[1:]:
        return runtime.for_backend(os.environ["UNETZOO_BACKEND"]), "UNETZOO_BACKEND is set"
    if runtime.device.type != "cpu":
        return runtime.for_backend("torch"), f"on {runtime.device.type}"
    if runtime.torch_options:
        return runtime.for_backend("torch"), "torch options given (--compile / --channels-last)"
    if importlib.util.find_spec("openvino") is None:
        return runtime.for_backend("torch"), "openvino is not installed (pip install openvino)"
    return runtime.for_backend("openvino"), "the fastest CPU backend"


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
                    source: Path | None = None, torch_only: str | None = None) -> OpenedModel:
    """A checkpoint's model in the backend `decide_backend` chooses. OpenVINO runs the
    cached conversion (beside the checkpoint file `source` when it has one, else in the
    user cache folder); with `auto`, a model that does not convert runs in torch instead.

    Raises:
        ConfigError: an explicit backend that is not installed.
        ExportError: an explicit non-torch backend whose graph differs from PyTorch.
    """
    from .ov_cache import cached_openvino

    used, reason = decide_backend(runtime, "checkpoint", torch_only)
    model, info = checkpoint_for_export(checkpoint, prune_depth)
    name = source.name if source is not None else info.model_spec["name"]
    if used.backend == "openvino":
        try:
            entry = cached_openvino(info, model, used.precision,
                                    conversion_cache_dir(source), source)
        except UnetzooError as exc:
            if runtime.backend != "auto":
                raise
            reason = f"it does not convert to OpenVINO ({exc})"
            used = used.for_backend("torch")
        else:
            opened = open_exported(entry.xml, "openvino", used.precision)
            made = (f"converted and checked in {entry.seconds:.1f} s, cached" if entry.created
                    else "cached conversion")
            note = (f"backend: openvino, {used.precision} ({reason}; {made} in "
                    f"{entry.xml.parent})")
            return OpenedModel(opened.module, info, used, note)
    if used.backend == "onnxruntime":
        module = to_backend(model, "onnxruntime", info.preprocessing.img_size, used.precision)
        return OpenedModel(module, info, used,
                           f"backend: onnxruntime, fp32 ({name} exported on the fly)")
    return OpenedModel(model, info, used, f"backend: torch, {used.describe()} ({reason})")


def model_metadata(reference: ModelReference) -> Checkpoint:
    """What a reference says about its model without opening it in a backend: task,
    classes, preprocessing, the run's config and mask reading (with the weights where it
    has them, else without). For `eval`, which checks the data before a model is
    converted.

    Raises:
        CheckpointError: an unreadable file.
    """
    if reference.has_weights:
        return reference.checkpoint()
    if reference.kind == "package":
        return package_metadata(reference.path, reference.package_entry)
    return open_exported(reference.path, None).checkpoint


def open_model(source: Path | str | ModelReference, runtime: Runtime,
               prune_depth: int | None = None, checkpoint: Checkpoint | None = None,
               torch_only: str | None = None) -> OpenedModel:
    """Open a trained model from what a user names (anything `resolve_model` takes: a
    checkpoint, a run folder, a model folder, a shipped name, a package, an exported file)
    in the backend `decide_backend` chooses.

    Args:
        source: the reference, or a `ModelReference` already resolved.
        runtime: device, precision and backend (`auto`: see `decide_backend`).
        prune_depth: run only UNet++ L^k (models with weights of a deep-supervised UNet++).
        checkpoint: the reference's checkpoint when already loaded (not read again).
        torch_only: a reason the model must run in torch (e.g. attention maps).

    Returns:
        The opened model, its checkpoint, the runtime it runs in and a one-line note.

    Raises:
        CheckpointError: a missing or unreadable file, or nothing of that name.
        ConfigError: a backend that cannot run it; `prune_depth` with a graph or package;
            an architecture name.
    """
    reference = resolve_model(source)
    if reference.has_weights and reference.kind != "package":
        checkpoint = checkpoint if checkpoint is not None and checkpoint.state_dict else \
            reference.checkpoint()
        return open_checkpoint(checkpoint, runtime, prune_depth, reference.own_file,
                               torch_only)
    if prune_depth is not None:
        raise ConfigError(f"{reference.path}: --prune-depth needs a checkpoint; a "
                          f"{'package' if reference.kind == 'package' else 'graph'} runs the "
                          "network it was exported with (`unetzoo export --prune-depth`)")
    if reference.kind == "package":
        if torch_only is not None and reference.has_weights:
            return open_checkpoint(reference.checkpoint(), runtime, None, None, torch_only)
        used, _ = decide_backend(runtime, "package", torch_only)
        package = open_package(reference.path, used.backend, used.precision)
        used = used.for_backend("torch" if package.weights == "torchscript" else used.backend)
        return OpenedModel(package.module, package.checkpoint, used,
                           f"backend: {used.backend} ({reference.path.name}, "
                           f"{package.weights} weights)")
    if torch_only is not None:
        raise ConfigError(f"{torch_only}: {reference.path.name} is an exported graph; pass "
                          "its checkpoint")
    used, _ = decide_backend(runtime, reference.kind)
    exported = open_exported(reference.path, used.backend, used.precision)
    quantised = " (INT8)" if exported.metadata.get("int8") else ""
    return OpenedModel(exported.module, exported.checkpoint, used,
                       f"backend: {exported.backend}, {used.precision}{quantised} "
                       f"({reference.path.name})")
