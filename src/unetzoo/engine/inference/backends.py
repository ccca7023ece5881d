"""Run graphs: ONNX in onnxruntime or OpenVINO, OpenVINO IR, TorchScript, behind the
`nn.Module` call interface, and open the files `unetzoo export` writes.

This module only runs graphs; `graphs.py` makes them (tracing and parity checks).
An exported file is a checkpoint without its weights plus a graph: the metadata holds the
model spec, task, class names and colours, preprocessing and the input size a graph is
fixed to (None when height and width are dynamic), so the file alone is enough to predict.
Each file is read once: the metadata comes from the object the runtime loaded.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.references import EXPORT_SUFFIXES
from ...artefacts.references import export_format as format_of
from ...errors import CheckpointError, ConfigError, ModelError
from ...nn.padding import run_padded

EXPORT_FORMAT = "unetzoo-export"
EXPORT_VERSION = 1
METADATA_KEY = "unetzoo"
# format -> file suffix (the suffix of an exported file says how to open it): one table, in
# artefacts/references.py, which tells every kind of model reference apart
SUFFIXES = EXPORT_SUFFIXES
# default backend per format, and the backends that run it
FORMAT_BACKEND: dict[str, str] = {"onnx": "onnxruntime", "openvino": "openvino",
                                  "torchscript": "torch"}
FORMAT_BACKENDS: dict[str, tuple[str, ...]] = {"onnx": ("onnxruntime", "openvino"),
                                               "openvino": ("openvino",),
                                               "torchscript": ("torch",)}

Runner = Callable[[np.ndarray], np.ndarray]


def require(module: str, extra: str = "export") -> Any:
    """Import an optional runtime, with a one-line hint (the unetzoo extra that installs it)
    when it is missing."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"{module} is not installed; pip install 'unetzoo[{extra}]'") from exc


class ExportedModule(nn.Module):
    """A float32 graph `B x C x H x W -> B x K x H x W` as a module (CPU, no parameters).

    `input_size` (height, width) marks a graph fixed to one size: smaller inputs are
    zero-padded at the bottom/right and the output cropped back (`nn.padding.run_padded`),
    larger ones are an error.
    """

    def __init__(self, run: Runner, num_classes: int,
                 input_size: tuple[int, int] | None = None, name: str = "exported") -> None:
        super().__init__()
        self.run = run
        self.num_classes = num_classes
        self.input_size = input_size
        self.name = name

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.run(np.ascontiguousarray(x.detach().float().cpu().numpy())))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None:
            fixed_h, fixed_w = self.input_size
            height, width = x.shape[-2:]
            if height > fixed_h or width > fixed_w:
                raise ConfigError(f"{self.name} was exported for {fixed_h} x {fixed_w} inputs; "
                                  f"got {height} x {width}")
        return run_padded(self._run, x, size=self.input_size)  # type: ignore[return-value]


# -- runtimes -------------------------------------------------------------------------------
def _onnxruntime(source: Path | bytes) -> tuple[Runner, str | None]:
    """An onnxruntime session on the CPU and the unetzoo metadata of the graph."""
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 4  # failures raise; no console noise
    session = ort.InferenceSession(str(source) if isinstance(source, Path) else source,
                                   options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    metadata = session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    return (lambda x: session.run(None, {name: x})[0]), metadata


def onnxruntime_runner(source: Path | bytes) -> Runner:
    """An ONNX graph (file or bytes) run by onnxruntime on the CPU in float32."""
    return _onnxruntime(source)[0]


@cache
def openvino_core() -> Any:
    """The process's one `openvino.Core` (each Core keeps its own plugins and thread pools;
    OpenVINO expects one per application)."""
    return require("openvino").Core()


def openvino_runner(model: Any, precision: str = "fp32") -> Runner:
    """An OpenVINO model (`openvino.Model`, or a file OpenVINO reads) compiled for the CPU
    with inference precision `fp32` or `bf16` (OpenVINO's own default on CPUs with bf16
    units); INT8 layers of a quantised model stay INT8.

    Each input shape is checked once against the graph before it runs (`_shape_check`):
    a shape the graph cannot take raises `ModelError` instead of running.
    """
    ov = require("openvino")
    core = openvino_core()
    if not isinstance(model, ov.Model):
        model = core.read_model(str(model) if isinstance(model, Path) else model)
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    check = _shape_check(model)

    def run(x: np.ndarray) -> np.ndarray:
        check(x.shape)
        return request.infer({0: x})[output].copy()

    return run


def _shape_check(model: Any) -> Callable[[tuple[int, ...]], None]:
    """A check that `model` takes an input of a shape, by OpenVINO's shape inference on a
    copy of the graph (each shape once; a graph without dynamic axes needs none).

    OpenVINO's CPU plugin does not check input shapes itself when it runs on one thread
    (2026.4: `INFERENCE_NUM_THREADS` 1, or a process allowed one core): a dynamic graph fed
    a shape its shape inference rejects (a reshape pattern of another size, a fixed axis of
    another length) runs anyway, reading and writing past its buffers, and the corrupted
    heap crashes the process later (a segfault in another model's `infer`).

    Raises (from the check):
        ModelError: the graph cannot take an input of that shape.
    """
    if not model.is_dynamic():
        return lambda shape: None  # OpenVINO checks static inputs itself on every path
    accepted: set[tuple[int, ...]] = set()
    declared = model.input(0).get_partial_shape()

    def check(shape: tuple[int, ...]) -> None:
        if shape in accepted:
            return
        try:
            model.clone().reshape({0: list(shape)})
        except Exception as exc:  # OpenVINO raises its own types for failed shape checks
            raise ModelError(f"this OpenVINO graph (input {declared}) cannot take a "
                             f"{' x '.join(map(str, shape))} input ({_shape_error(str(exc))})"
                             ) from exc
        accepted.add(shape)

    return check


def _shape_error(message: str) -> str:
    """What an OpenVINO shape-inference error says failed, in one line: the node and the
    last line of the message."""
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    node = re.search(r"with friendly_name '([^']+)'", message)
    what = lines[-1] if lines else "shape inference failed"
    return f"{node.group(1)}: {what}" if node else what


def _load_torchscript(path: Path) -> tuple[torch.jit.ScriptModule, str | None]:
    files = {f"{METADATA_KEY}.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit, see export.py
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return module.eval(), files[f"{METADATA_KEY}.json"] or None


def torchscript_runner(path: Path) -> Runner:
    """A TorchScript file run in float32 (the traced graph, autocast off)."""
    return _torchscript(path)[0]


def _torchscript(path: Path) -> tuple[Runner, str | None]:
    module, metadata = _load_torchscript(path)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            return module(torch.from_numpy(x)).numpy()

    return run, metadata


def _openvino(source: Path | bytes, precision: str) -> tuple[Runner, str | None]:
    """An OpenVINO IR file (or ONNX bytes) compiled for the CPU, and its metadata."""
    model = openvino_core().read_model(str(source) if isinstance(source, Path) else source)
    metadata = (model.get_rt_info([METADATA_KEY]).astype(str)
                if model.has_rt_info([METADATA_KEY]) else None)
    return openvino_runner(model, precision), metadata


def _onnx_metadata(data: bytes) -> str | None:
    onnx = require("onnx")
    props = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    return props.get(METADATA_KEY)


# -- exported files -------------------------------------------------------------------------
@dataclass
class ExportedModel:
    """An exported file opened in a backend: the module to run and the checkpoint it came
    from (without weights: model spec, task, classes, preprocessing)."""

    module: nn.Module
    checkpoint: Checkpoint
    input_size: tuple[int, int] | None
    backend: str
    metadata: dict[str, Any]


def parse_metadata(text: str | None, path: Path) -> dict[str, Any]:
    """The unetzoo metadata of an exported file, checked."""
    if not text:
        raise CheckpointError("exported file carries no unetzoo metadata (export it with "
                              "`unetzoo export`)", path)
    meta = json.loads(text)
    if meta.get("format") != EXPORT_FORMAT or meta.get("version", 0) > EXPORT_VERSION:
        raise CheckpointError("unknown unetzoo export metadata (written by a newer version?)",
                              path)
    return meta


def open_exported(path: Path | str, backend: str | None = None, precision: str = "fp32"
                  ) -> ExportedModel:
    """Open an exported file in `backend`, reading it once.

    Args:
        path: `.onnx`, `.xml` (with its `.bin`) or `.torchscript` written by `unetzoo export`.
        backend: `onnxruntime` or `openvino` for ONNX, `openvino` for IR, `torch` for
            TorchScript; None (or `auto`) picks the format's own (onnxruntime, openvino,
            torch).
        precision: `fp32` or `bf16` (OpenVINO only; the others run float32).

    Returns:
        The module (`B x C x H x W` float32 in, logits `B x K x H x W` out), the checkpoint
        without weights, the fixed input size (or None) and the backend.

    Raises:
        CheckpointError: missing or unreadable file, or no unetzoo metadata.
        ConfigError: a backend that cannot run this format, or a runtime not installed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("exported model not found", path)
    fmt = format_of(path)
    if fmt is None:
        raise CheckpointError(f"not an exported model (suffix {path.suffix!r}; expected "
                              f"{', '.join(SUFFIXES.values())})", path)
    backend = FORMAT_BACKEND[fmt] if backend in (None, "auto") else backend
    if backend not in FORMAT_BACKENDS[fmt]:
        raise ConfigError(f"a {fmt} file runs with --backend "
                          f"{' or '.join(FORMAT_BACKENDS[fmt])}, not {backend}", path)
    try:
        if backend == "onnxruntime":
            run, text = _onnxruntime(path)
        elif backend == "torch":
            run, text = _torchscript(path)
        elif fmt == "onnx":  # ONNX in OpenVINO, which drops ONNX metadata: read the bytes once
            data = path.read_bytes()
            text = _onnx_metadata(data)
            run, _ = _openvino(data, precision)
        else:
            run, text = _openvino(path, precision)
    except (ConfigError, CheckpointError):
        raise
    except Exception as exc:  # each runtime raises its own types for unreadable files
        raise CheckpointError(f"cannot read exported model: {str(exc).splitlines()[0]}",
                              path) from exc
    meta = parse_metadata(text, path)
    checkpoint = Checkpoint.from_payload({**meta["checkpoint"], "state_dict": {}}, path)
    size = tuple(meta["input_size"]) if meta.get("input_size") else None
    module = ExportedModule(run, checkpoint.model_spec["num_classes"], size,  # type: ignore[arg-type]
                            path.name)
    return ExportedModel(module, checkpoint, size, backend, meta)  # type: ignore[arg-type]


def open_graph(graph: bytes, backend: str, precision: str, num_classes: int,
               fixed: tuple[int, int] | None = None, name: str = "graph") -> ExportedModule:
    """An in-memory ONNX graph opened in `backend` (`onnxruntime` or `openvino`)."""
    run = onnxruntime_runner(graph) if backend == "onnxruntime" else \
        _openvino(graph, precision)[0]
    return ExportedModule(run, num_classes, fixed, name)
