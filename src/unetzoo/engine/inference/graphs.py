"""Turn a model into a graph: ONNX, OpenVINO IR or TorchScript, with dynamic batch, height
and width, checked against eager PyTorch before anything is written.

This module makes graphs; `engine/backends.py` runs them. The graph is traced (the
TorchScript-based tracer, opset 17: fast and faithful for these convolutional models)
through the model's own padding to its `size_divisor` (`nn.padding.run_padded`, traced with
dynamic sizes), so odd sizes work in the graph as they do in eager mode. A model whose graph
depends on the input size beyond that (the sparse-attention region layout of `sparse_unet`)
is detected by the parity check at a second size and exported for one fixed height and width
(batch stays dynamic); predictors pad smaller tiles to it. The unetzoo metadata (the
checkpoint without its weights) is embedded in the file: ONNX metadata, OpenVINO runtime
info, TorchScript extra file.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...errors import (
    ExportError,
)
from ...fileio import atomic_write_bytes
from .backends import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    METADATA_KEY,
    Runner,
    onnxruntime_runner,
    openvino_core,
    openvino_runner,
    require,
)

log = logging.getLogger("unetzoo")

OPSET = 17
TOLERANCE = 1e-4  # max logit difference in float32, over max(1, max |logit|) (see _parity):
# float32 rounding grows with the logits (a trained model can give |logit| ~ 1e5 on noise)
LABEL_DISAGREEMENT = 1e-3  # share of pixels whose hard label may differ (logits near a tie)
Graph = TypeVar("Graph")


class Exportable(nn.Module):
    """The model as exported: its main logits (the model pads and crops itself)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def _trace_onnx(model: nn.Module, sample: torch.Tensor, dynamic_size: bool) -> bytes:
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        torch.onnx.export(Exportable(model).eval(), (sample,), buffer, dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=OPSET,
                          dynamic_axes={"image": axes, "logits": axes})
    return buffer.getvalue()


def with_onnx_metadata(onnx_bytes: bytes, metadata: str) -> bytes:
    """The ONNX graph with the unetzoo metadata added to its metadata_props."""
    onnx = require("onnx")
    proto = onnx.load_from_string(onnx_bytes)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    return proto.SerializeToString()


def export_metadata(info: Checkpoint, fixed: tuple[int, int] | None,
                    extra: dict[str, Any] | None = None) -> str:
    """The metadata every exported graph carries: the checkpoint without its weights and
    training state (and without this machine's paths: `Checkpoint.portable`), the input
    size the graph is fixed to (None: dynamic), and `extra` (e.g. `int8`: the accuracy
    check of a quantised graph)."""
    payload = {**info.portable().to_payload(), "state_dict": {}, "train_state": None}
    return json.dumps({"format": EXPORT_FORMAT, "version": EXPORT_VERSION,
                       "input_size": list(fixed) if fixed else None,
                       "opset": OPSET, "torch": torch.__version__, **(extra or {}),
                       "checkpoint": payload})


def parity_samples(size: tuple[int, int], in_channels: int) -> list[torch.Tensor]:
    """Parity inputs: batch 2 at the export size, batch 1 at an odd other size."""
    generator = torch.Generator().manual_seed(0)
    odd = (max(1, size[0] // 2 + 7), max(1, size[1] // 2 + 5))
    return [torch.randn(2, in_channels, *size, generator=generator),
            torch.randn(1, in_channels, *odd, generator=generator)]


class Parity(NamedTuple):
    """How an exported graph's logits compare with eager PyTorch's on one input.

    difference: the largest logit difference over max(1, the largest |logit|) (float32
        rounding scales with the logits, so an absolute bound would refuse correct graphs
        of models with large logits); inf when the graph fails to run or its shape differs.
    disagreement: the share of pixels whose hard label differs (the sign of a single
        channel, else the argmax over channels): the relative bound alone would let a pixel
        of small logits beside huge ones change its label.
    """

    difference: float
    disagreement: float

    @property
    def ok(self) -> bool:
        return self.difference <= TOLERANCE and self.disagreement <= LABEL_DISAGREEMENT

    def describe(self) -> str:
        if self.difference == float("inf"):
            return "fails to run"
        return (f"differs from eager PyTorch by {self.difference:.3g} (max logit difference "
                f"over max(1, max |logit|), float32; allowed {TOLERANCE:g}), with "
                f"{self.disagreement:.3%} of pixels labelled differently (allowed "
                f"{LABEL_DISAGREEMENT:.1%})")


def _labels(logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] > 0 if logits.shape[1] == 1 else logits.argmax(1)


def _parity(run: Runner, model: nn.Module, x: torch.Tensor) -> Parity:
    """The `Parity` of `run` against eager PyTorch on `x` (`B x C x H x W`)."""
    with torch.inference_mode():
        expected = Exportable(model).eval()(x).numpy()
    try:
        got = run(x.numpy())
    except Exception:  # a graph fixed to another size fails in its runtime
        return Parity(float("inf"), 1.0)
    if got.shape != expected.shape:
        return Parity(float("inf"), 1.0)
    scale = max(1.0, float(np.abs(expected).max()))
    return Parity(float(np.abs(got - expected).max() / scale),
                  float(np.mean(_labels(got) != _labels(expected))))


def check_parity(run: Runner, model: nn.Module, samples: list[torch.Tensor], where: str) -> float:
    """The worst relative logit difference over `samples`.

    Raises:
        ExportError: the graph fails `Parity.ok` on a sample (nothing has been written).
    """
    results = [_parity(run, model, x) for x in samples]
    for parity in results:
        if not parity.ok:
            raise ExportError(f"{where}: the exported graph {parity.describe()}; the file "
                              "was not written")
    return max(p.difference for p in results)


def _traced(model: nn.Module, size: tuple[int, int], where: str,
            convert: Callable[[bytes], tuple[Graph, Runner]]
            ) -> tuple[Graph, tuple[int, int] | None, float]:
    """Trace `model` to ONNX, convert it (`convert(onnx) -> (graph, float32 runner)`) and
    check it against eager PyTorch: dynamic height and width when the graph matches at
    `size` and at a second, odd size; fixed to `size` when it matches at `size` only (a graph
    that differs at `size` itself is refused, not taken for a size-dependent one)."""
    model = model.float().cpu().eval()
    in_channels = int(getattr(model, "in_channels", 3))
    fixed, odd = parity_samples(size, in_channels)
    graph, run = convert(_trace_onnx(model, fixed[:1], dynamic_size=True))
    at_size = check_parity(run, model, [fixed], where)
    at_odd = _parity(run, model, odd)
    if at_odd.ok:
        return graph, None, max(at_size, at_odd.difference)
    log.info(f"{where}: the graph depends on the input size (at {odd.shape[-2]} x "
             f"{odd.shape[-1]} it {at_odd.describe()}); exported for {size[0]} x {size[1]} "
             f"inputs only (batch stays dynamic)")
    graph, run = convert(_trace_onnx(model, fixed[:1], dynamic_size=False))
    return graph, size, check_parity(run, model, [fixed], where)


def trace_onnx(model: nn.Module, size: tuple[int, int], where: str = "export"
               ) -> tuple[bytes, tuple[int, int] | None, float]:
    """An ONNX graph of `model` (eval mode, float32, CPU) checked in onnxruntime against
    eager PyTorch: (bytes, fixed input size or None when dynamic, relative max difference)."""
    return _traced(model, size, where, lambda g: (g, onnxruntime_runner(g)))


def trace_openvino(model: nn.Module, size: tuple[int, int], where: str = "export") -> tuple[
        Any, tuple[int, int] | None, float]:
    """An OpenVINO model (`openvino.Model`, float32 weights) of `model`, checked in OpenVINO
    float32 against eager PyTorch: (model, fixed input size or None, relative max difference).
    Needs openvino (and not onnxruntime)."""
    def convert(onnx_bytes: bytes) -> tuple[Any, Runner]:
        graph = openvino_core().read_model(onnx_bytes)
        return graph, openvino_runner(graph, "fp32")

    return _traced(model, size, where, convert)


def save_openvino(graph: Any, metadata: str, out: Path, atomic: bool = True) -> None:
    """Write an OpenVINO model with `metadata` as `out` (.xml) + `out.with_suffix('.bin')`,
    float32 weights kept. `atomic`: each file through a temporary file, weights first
    (a folder that is renamed into place as a whole passes False)."""
    ov = require("openvino")
    graph.set_rt_info(metadata, [METADATA_KEY])
    if not atomic:
        ov.save_model(graph, str(out), compress_to_fp16=False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / out.name
        ov.save_model(graph, str(xml), compress_to_fp16=False)
        atomic_write_bytes(out.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(out, xml.read_bytes())


def checkpoint_for_export(checkpoint: Checkpoint, prune_depth: int | None = None
                          ) -> tuple[nn.Module, Checkpoint]:
    """The model to export and the checkpoint its metadata describes (a pruned UNet++
    records its prune depth, so the file rebuilds the network that was exported)."""
    model = checkpoint.build_model(prune_depth)
    if prune_depth is not None:
        spec = checkpoint.model_spec
        checkpoint = replace(checkpoint, model_spec={
            **spec, "kwargs": {**spec["kwargs"], "prune_depth": prune_depth}})
    return model, checkpoint
