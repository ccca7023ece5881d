"""Inference on whole images of any size: resize or sliding-window tiling with Gaussian
blending, batched tiles, bounded memory, mixed precision, test-time augmentation and
post-processing; outputs at each input's original size.

Memory stays bounded on large images: tiles are blended into a band of rows that is
finished and handed on as soon as no later tile reaches it (at most two tile heights of
`K x W` float32 are held), the blending weight is separable so its normaliser is two
vectors, an `H x W x C` image as read from disk is normalised tile by tile, and hard labels
come out as uint8. Accumulation is float32 whatever the model's precision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.references import ModelReference
from ...data.transforms import Preprocessing, Statistics, resize_image
from ...errors import ConfigError
from ...runtime import Runtime
from ...task import Task, labels_from_probabilities, probabilities
from .backends import ExportedModule
from .opening import decide_backend, open_checkpoint, open_model, to_backend
from .postprocess import PostProcessing
from .tiling import gaussian_axis, gaussian_importance, tile_starts
from .tta import tta_transforms

log = logging.getLogger("unetzoo")

Image = torch.Tensor | np.ndarray  # normalised C x H x W tensor, or H x W x C in [0, 1]


@dataclass(frozen=True)
class InferenceOptions:
    """How inference runs, shared by evaluation, prediction and validation.

    tta: `none`, `flip` or `flip-rot90`; predictions of the transformed tiles are mapped
        back and averaged as probabilities.
    postprocess: what happens to hard labels (small components, holes).
    prune_depth: run only UNet++ L^k of a deep-supervised UNet++ checkpoint.
    """

    runtime: Runtime = field(default_factory=lambda: Runtime.resolve(backend="auto"))
    batch_size: int = 4
    overlap: float = 0.25
    threshold: float = 0.5
    tta: str = "none"
    postprocess: PostProcessing = field(default_factory=PostProcessing)
    prune_depth: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < 1:
            raise ConfigError(f"--overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch_size}")
        tta_transforms(self.tta)

    def to_dict(self) -> dict[str, Any]:
        """What decides the predictions (recorded with an evaluation, so that they can be
        made again, e.g. for the report's overlays): precision, tiling, threshold, TTA,
        post-processing and pruning."""
        return {"precision": self.runtime.precision, "batch_size": self.batch_size,
                "overlap": self.overlap, "threshold": self.threshold, "tta": self.tta,
                "min_size": self.postprocess.min_size,
                "fill_holes": self.postprocess.fill_holes, "prune_depth": self.prune_depth}

    @classmethod
    def from_dict(cls, values: dict[str, Any], runtime: Runtime | None = None
                  ) -> InferenceOptions:
        """The options `to_dict` recorded, on `runtime` (default: resolved here with the
        recorded precision where this machine supports it)."""
        if runtime is None:
            try:
                runtime = Runtime.resolve(precision=values.get("precision", "auto"))
            except ConfigError:
                runtime = Runtime.resolve()
        return cls(runtime, batch_size=int(values.get("batch_size", 4)),
                   overlap=float(values.get("overlap", 0.25)),
                   threshold=float(values.get("threshold", 0.5)),
                   tta=str(values.get("tta", "none")),
                   postprocess=PostProcessing(int(values.get("min_size", 0)),
                                              bool(values.get("fill_holes", False))),
                   prune_depth=values.get("prune_depth"))


class Predictor:
    """Runs a model on images of any size and returns float32 outputs `K x H x W` on the
    CPU, or hard labels.

    Images are normalised `C x H x W` tensors, or `H x W x C` float arrays in [0, 1] as read
    from disk (normalised tile by tile: no full-size copy). In `crop` mode an image larger
    than the patch size is tiled with patch-sized windows (overlap as given, Gaussian-weighted
    blending, `batch_size` tiles per forward pass through the model or graph); smaller images
    go through whole. In `resize` mode the image is resized to the patch size and the output
    resized back. Memory stays bounded (see the module docstring).

    `Predictor.open(path)` is the fast path: a checkpoint runs in OpenVINO where it is
    installed (converted once, cached, checked against PyTorch) and in torch otherwise; an
    exported file runs in its backend. A PyTorch module given directly runs in torch, or is
    exported on the fly for an explicit `onnxruntime` / `openvino` runtime.

    Args:
        model: a PyTorch model returning logits, or an `ExportedModule`.
        preprocessing: normalisation, patch size and resize mode (from the checkpoint).
        task: `binary`, `multiclass` or `multilabel`.
        options: runtime, tiling batch and overlap, threshold, TTA, post-processing.

    Raises:
        ConfigError: more than 256 classes (labels are uint8), bad options.
        ExportError: an explicit non-torch backend whose graph differs from PyTorch.

    Example:
        >>> predictor = Predictor.open("runs/exp1/models/best.pt")  # logs the backend
        >>> image = read_image("scan.png", 3)            # H x W x 3 float32 in [0, 1]
        >>> predictor.labels(image).shape                # uint8, binary / multiclass
        torch.Size([H, W])
        >>> predictor.probabilities(image).shape         # float32 in [0, 1]
        torch.Size([K, H, W])
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, task: Task,
                 options: InferenceOptions | None = None,
                 checkpoint: Checkpoint | None = None) -> None:
        options = options or InferenceOptions()
        runtime = options.runtime
        if isinstance(model, ExportedModule):
            runtime = replace(runtime, channels_last=False)  # a graph has no memory format
        else:
            runtime = decide_backend(runtime, "module")[0]
            if runtime.backend != "torch":
                model = to_backend(model, runtime.backend, preprocessing.img_size,
                                   runtime.precision)
        self.options = replace(options, runtime=runtime)
        self.runtime = runtime
        self.model = self.runtime.prepare_model(model).eval()
        if task == "multiclass" and self.model_num_classes > 256:
            raise ConfigError(f"labels are uint8: at most 256 classes, got "
                              f"{self.model_num_classes}")
        self._module = torch.compile(self.model) if self.runtime.compile else self.model
        self.preprocessing = preprocessing
        self.task = task
        self.checkpoint = checkpoint
        self._tta = tta_transforms(self.options.tta)
        self._stats: Statistics | None = None
        self.model_seconds = 0.0
        self.emptied = 0  # images whose every predicted pixel post-processing removed

    @classmethod
    def open(cls, source: Path | str | ModelReference, options: InferenceOptions | None = None,
             checkpoint: Checkpoint | None = None, torch_only: str | None = None
             ) -> Predictor:
        """A predictor for anything a user names as a trained model (a checkpoint, a run
        folder, a model folder, a shipped name, a package, an exported file: the one door,
        `engine.inference.opening.open_model`), in the backend the options ask for (default
        `auto`: OpenVINO where installed and the model converts, else torch); logs one line
        saying which backend runs and why.

        Args:
            source: the model reference.
            options: runtime, tiling, TTA, threshold, post-processing.
            checkpoint: the reference's checkpoint when already loaded (not read again).
            torch_only: a reason the model must run in torch (e.g. attention maps).
        """
        options = options or InferenceOptions()
        opened = open_model(source, options.runtime, options.prune_depth, checkpoint,
                            torch_only)
        log.info(opened.note)
        return cls(opened.module, opened.checkpoint.preprocessing, opened.checkpoint.task,
                   replace(options, runtime=opened.runtime), opened.checkpoint)

    @classmethod
    def from_checkpoint(cls, checkpoint: Checkpoint, options: InferenceOptions | None = None
                        ) -> Predictor:
        """A predictor for an in-memory checkpoint (OpenVINO conversions of it are cached
        in the user cache folder; see `Predictor.open` for the backend)."""
        options = options or InferenceOptions()
        opened = open_checkpoint(checkpoint, options.runtime, options.prune_depth)
        return cls(opened.module, checkpoint.preprocessing, checkpoint.task,
                   replace(options, runtime=opened.runtime), opened.checkpoint)

    @property
    def model_num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", 1))

    @property
    def blends_probabilities(self) -> bool:
        """With TTA, tiles are blended as probabilities; without, as logits."""
        return len(self._tta) > 1

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Main logits of a `B x C x h x w` batch as float32 on the CPU (timed)."""
        start = time.perf_counter()
        with self.runtime.autocast():
            out = self._module(self.runtime.prepare_input(batch))
        out = (out[0] if isinstance(out, (list, tuple)) else out).float().cpu()
        self.model_seconds += time.perf_counter() - start
        return out

    def _infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits, or with TTA the mean probabilities over the transforms, of a batch."""
        if not self.blends_probabilities:
            return self.forward(batch)
        total = torch.zeros(0)
        for transform, inverse in self._tta:
            probs = probabilities(inverse(self.forward(transform(batch))), self.task)
            total = probs if total.numel() == 0 else total.add_(probs)
        return total / len(self._tta)

    # -- images and tiles ---------------------------------------------------------------
    @staticmethod
    def _size(image: Image) -> tuple[int, int]:
        return (image.shape[-2], image.shape[-1]) if isinstance(image, torch.Tensor) else \
            (image.shape[0], image.shape[1])

    def _crop(self, image: Image, y: int, x: int, height: int, width: int) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image[:, y: y + height, x: x + width]
        return self.preprocessing.to_tensor(image[y: y + height, x: x + width], self._stats)

    def _tiled(self, image: Image, infer: Callable[[torch.Tensor], torch.Tensor],
               channels: int) -> Iterator[torch.Tensor]:
        """Blended outputs of `infer` (`B x C x h x w` -> `B x channels x h x w`) in bands
        of rows `channels x rows x W`, top to bottom."""
        height, width = self._size(image)
        size = self.preprocessing.img_size
        th, tw = min(size, height), min(size, width)
        ys = tile_starts(height, th, self.options.overlap)
        xs = tile_starts(width, tw, self.options.overlap)
        wy, wx = gaussian_axis(th), gaussian_axis(tw)
        norm_y, norm_x = torch.zeros(height), torch.zeros(width)
        for y in ys:
            norm_y[y: y + th] += wy
        for x in xs:
            norm_x[x: x + tw] += wx
        weight = gaussian_importance(th, tw)
        tiles = [(y, x) for y in ys for x in xs]
        band, top = torch.zeros(channels, 0, width), 0  # band row 0 = image row top
        for i in range(0, len(tiles), self.options.batch_size):
            group = tiles[i: i + self.options.batch_size]
            outputs = infer(torch.stack([self._crop(image, y, x, th, tw) for y, x in group]))
            for (y, x), out in zip(group, outputs, strict=True):
                if y > top:  # no later tile reaches the rows above y: they are final
                    yield band[:, : y - top] / (norm_y[top:y, None] * norm_x)
                    band, top = band[:, y - top:], y
                if band.shape[1] < y + th - top:
                    grow = band.new_zeros(band.shape[0], y + th - top - band.shape[1], width)
                    band = torch.cat([band, grow], dim=1)
                band[:, y - top: y - top + th, x: x + tw] += out * weight
        yield band / (norm_y[top:, None] * norm_x)

    def _bands(self, image: Image, infer: Callable[[torch.Tensor], torch.Tensor] | None = None,
               channels: int | None = None) -> Iterator[torch.Tensor]:
        """Outputs of `infer` (default: logits, or probabilities with TTA) in bands of rows,
        top to bottom: resized, whole, or tiled and blended."""
        infer = infer or self._infer
        height, width = self._size(image)
        # a tile of an image read from disk is normalised as its whole image is
        self._stats = self.preprocessing.statistics(image) \
            if isinstance(image, np.ndarray) else None
        size = self.preprocessing.img_size
        if self.preprocessing.resize_mode == "resize":
            small = resize_image(self._crop(image, 0, 0, height, width)[None], size)
            yield F.interpolate(infer(small), size=(height, width), mode="bilinear",
                                align_corners=False)[0]
        elif height <= size and width <= size:
            yield infer(self._crop(image, 0, 0, height, width)[None])[0]
        else:
            yield from self._tiled(image, infer, channels or self.model_num_classes)

    @property
    def attention_levels(self) -> int:
        """Attention maps the model has (0 for models without gates and exported graphs)."""
        if isinstance(self.model, ExportedModule) or not hasattr(self.model, "attention_maps"):
            return 0
        return len(self.model.gates)  # type: ignore[arg-type]

    @torch.inference_mode()
    def _attention_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Every gate's attention map of a `B x C x h x w` batch, each resized to h x w
        (bilinear): `B x levels x h x w` float32 on the CPU (timed)."""
        start = time.perf_counter()
        with self.runtime.autocast():
            maps = self.model.attention_maps(  # type: ignore[operator]
                self.runtime.prepare_input(batch))
        size = batch.shape[-2:]
        out = torch.cat([F.interpolate(m.float(), size=size, mode="bilinear",
                                       align_corners=False) for m in maps], dim=1).cpu()
        self.model_seconds += time.perf_counter() - start
        return out

    def _probabilities(self, band: torch.Tensor) -> torch.Tensor:
        return band if self.blends_probabilities else probabilities(band[None], self.task)[0]

    # -- public -------------------------------------------------------------------------
    def logits(self, image: Image) -> torch.Tensor:
        """Float32 logits `K x H x W` (without TTA, which averages probabilities)."""
        if self.blends_probabilities:
            raise ConfigError("test-time augmentation averages probabilities; use "
                              "probabilities() or labels()")
        return torch.cat(list(self._bands(image)), dim=1)

    def probabilities(self, image: Image) -> torch.Tensor:
        """Float32 probabilities `K x H x W` (softmax for multiclass, sigmoid otherwise)."""
        return torch.cat([self._probabilities(b) for b in self._bands(image)], dim=1)

    def labels(self, image: Image) -> torch.Tensor:
        """Hard uint8 labels, post-processed: `H x W` (binary, multiclass) or `K x H x W`
        (multilabel)."""
        bands = [labels_from_probabilities(self._probabilities(b)[None], self.task,
                                           self.options.threshold)[0].to(torch.uint8)
                 for b in self._bands(image)]
        labels = torch.cat(bands, dim=-2)
        return self.postprocess(labels)

    def postprocess(self, labels: torch.Tensor) -> torch.Tensor:
        """`labels` after the options' post-processing; counts in `emptied` the images it
        leaves without foreground that had some (see `PostProcessing.emptied_warning`)."""
        post = self.options.postprocess
        if not post.enabled:
            return labels
        out = torch.from_numpy(post.apply(labels.numpy(), self.task))
        if bool(labels.any()) and not bool(out.any()):
            self.emptied += 1
        return out

    def attention(self, image: Image) -> torch.Tensor:
        """The attention maps of a gated model (Attention U-Net, R2AttU-Net), coarse to
        fine, each resized to the image: float32 `levels x H x W` in [0, 1]. Large images
        are tiled and blended exactly like the outputs (bounded memory); no TTA.

        Raises:
            ConfigError: the model has no attention maps here (no gates, or an exported
                graph / non-torch backend).
        """
        levels = self.attention_levels
        if not levels:
            raise ConfigError("this model has no attention maps here (only gated models in "
                              "the torch backend have them; use --backend torch)")
        return torch.cat(list(self._bands(image, self._attention_batch, levels)), dim=1)
