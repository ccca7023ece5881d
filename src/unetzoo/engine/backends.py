"""Run exported graphs (ONNX in onnxruntime or OpenVINO, OpenVINO IR, TorchScript) behind the
`nn.Module` call interface, and read the metadata unetzoo embeds in every exported file.

An exported file is a checkpoint without its weights plus a graph: the metadata holds the
model spec, task, class names and colours, preprocessing and the input size a graph is
fixed to (None when height and width are dynamic), so the file alone is enough to predict.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import Checkpoint
from ..errors import CheckpointError, ConfigError
from ..nn.padding import crop_to

EXPORT_FORMAT = "unetzoo-export"
EXPORT_VERSION = 1
METADATA_KEY = "unetzoo"
# format -> file suffix; the suffix of an exported file says how to open it
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "openvino": ".xml", "torchscript": ".torchscript"}
# default backend per format
FORMAT_BACKEND: dict[str, str] = {"onnx": "onnxruntime", "openvino": "openvino",
                                  "torchscript": "torch"}


def format_of(path: Path) -> str | None:
    """The export format a file's suffix names, or None (e.g. a checkpoint)."""
    return next((f for f, s in SUFFIXES.items() if path.suffix.lower() == s), None)


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
    zero-padded at the bottom/right and the output cropped back, larger ones are an error.
    """

    def __init__(self, run: Callable[[np.ndarray], np.ndarray], num_classes: int,
                 input_size: tuple[int, int] | None = None, name: str = "exported") -> None:
        super().__init__()
        self.run = run
        self.num_classes = num_classes
        self.input_size = input_size
        self.name = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        if self.input_size is not None:
            fixed_h, fixed_w = self.input_size
            if height > fixed_h or width > fixed_w:
                raise ConfigError(f"{self.name} was exported for {fixed_h} x {fixed_w} inputs; "
                                  f"got {height} x {width}")
            x = nn.functional.pad(x, (0, fixed_w - width, 0, fixed_h - height))
        out = torch.from_numpy(self.run(np.ascontiguousarray(x.detach().float().cpu().numpy())))
        return crop_to(out, height, width)  # type: ignore[return-value]


def onnxruntime_runner(path: Path | bytes) -> Callable[[np.ndarray], np.ndarray]:
    ort = require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 4  # failures raise; no console noise
    source = str(path) if isinstance(path, Path) else path
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def openvino_runner(path: Path, precision: str = "fp32") -> Callable[[np.ndarray], np.ndarray]:
    """OpenVINO on the CPU with inference precision `fp32` or `bf16` (its default on CPUs
    with bf16 units)."""
    ov = require("openvino")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
              "INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    return lambda x: request.infer({0: x})[output].copy()


def _load_torchscript(path: Path, extra_files: dict[str, str] | None = None
                      ) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit, see export.py
        return torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files or {})


def torchscript_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """A TorchScript file run in float32 (the traced graph, autocast off)."""
    module = _load_torchscript(path).eval()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", enabled=False):
            return module(torch.from_numpy(x)).numpy()

    return run


def read_metadata(path: Path) -> dict[str, Any]:
    """The unetzoo metadata embedded in an exported file."""
    fmt = format_of(path)
    try:
        if fmt == "onnx":
            onnx = require("onnx")
            props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False)
                     .metadata_props}
            text = props.get(METADATA_KEY)
        elif fmt == "openvino":
            ov = require("openvino")
            model = ov.Core().read_model(str(path))
            text = (model.get_rt_info([METADATA_KEY]).astype(str)
                    if model.has_rt_info([METADATA_KEY]) else None)
        elif fmt == "torchscript":
            files = {f"{METADATA_KEY}.json": ""}
            _load_torchscript(path, files)
            text = files[f"{METADATA_KEY}.json"] or None
        else:
            raise CheckpointError(f"not an exported model (suffix {path.suffix!r}; expected "
                                  f"{', '.join(SUFFIXES.values())})", path)
    except (ConfigError, CheckpointError):
        raise
    except Exception as exc:  # each runtime raises its own types for unreadable files
        raise CheckpointError(f"cannot read exported model: {str(exc).splitlines()[0]}",
                              path) from exc
    if not text:
        raise CheckpointError("exported file carries no unetzoo metadata (export it with "
                              "`unetzoo export`)", path)
    meta = json.loads(text)
    if meta.get("format") != EXPORT_FORMAT or meta.get("version", 0) > EXPORT_VERSION:
        raise CheckpointError("unknown unetzoo export metadata (written by a newer version?)",
                              path)
    return meta


@dataclass
class ExportedModel:
    """An exported file opened in a backend: the module to run and the checkpoint it came
    from (without weights: model spec, task, classes, preprocessing)."""

    module: nn.Module
    checkpoint: Checkpoint
    input_size: tuple[int, int] | None
    backend: str


def open_exported(path: Path | str, backend: str | None = None, precision: str = "fp32"
                  ) -> ExportedModel:
    """Open an exported file in `backend` (default: onnxruntime for ONNX, openvino for IR,
    torch for TorchScript). OpenVINO also runs ONNX files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("exported model not found", path)
    meta = read_metadata(path)
    fmt = format_of(path)
    backend = backend or FORMAT_BACKEND[fmt]  # type: ignore[index]
    allowed = {"onnx": ("onnxruntime", "openvino"), "openvino": ("openvino",),
               "torchscript": ("torch",)}[fmt]  # type: ignore[index]
    if backend not in allowed:
        raise ConfigError(f"a {fmt} file runs with --backend {' or '.join(allowed)}, not "
                          f"{backend}", path)
    checkpoint = Checkpoint.from_payload({**meta["checkpoint"], "state_dict": {}}, path)
    size = tuple(meta["input_size"]) if meta.get("input_size") else None
    num_classes = checkpoint.model_spec["num_classes"]
    runners = {"onnxruntime": lambda: onnxruntime_runner(path),
               "openvino": lambda: openvino_runner(path, precision),
               "torch": lambda: torchscript_runner(path)}
    module = ExportedModule(runners[backend](), num_classes, size, path.name)  # type: ignore[arg-type]
    return ExportedModel(module, checkpoint, size, backend)
