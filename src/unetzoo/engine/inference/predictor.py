"""Inference on whole images of any size: resize or sliding-window tiling with Gaussian
blending, batched tiles, bounded memory, mixed precision, test-time augmentation and
post-processing; outputs at each input's original size.

Memory stays bounded on large images: tiles are blended into a band of rows that is
finished and handed on as soon as no later tile reaches it (at most two tile heights of
`K x W` float32 are held), the blending weight is separable so its normaliser is two
vectors, an `H x W x C` image as read from disk is normalised tile by tile, and hard labels
come out as uint8. Accumulation is float32 whatever the model's precision.

A numpy image is read by the rule of an image file holding the same pixels
(`data.io.image_from_array`: 8-bit / 255, 16-bit / 65535, float as stored, channels converted
as `read_image` converts them), so that `Predictor.labels(np.asarray(PIL.Image.open(f)))`
equals what `unetzoo predict` writes for `f`; numpy in gives numpy out, torch in torch out.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...artefacts.checkpoint import Checkpoint
from ...artefacts.references import ModelReference
from ...data.io import image_from_array
from ...data.large import LargeImage
from ...data.transforms import Preprocessing, Statistics, resize_image
from ...errors import ConfigError, DataError
from ...runtime import Runtime
from ...task import Task, labels_from_probabilities, probabilities
from .backends import ExportedModule
from .instance import InstanceDecoding, activate, stitch_objects
from .opening import decide_backend, open_checkpoint, open_model, to_backend
from .postprocess import PostProcessing
from .tiling import gaussian_axis, gaussian_importance, tile_starts
from .tta import tta_transforms

log = logging.getLogger("unetzoo")
DEFAULT_THRESHOLD = 0.5  # a binary / multilabel pixel is foreground above this probability

# What the public methods take: a numpy image as a file holds it (`image_from_array`), a
# normalised float `C x H x W` tensor, or a `LargeImage` (read region by region). Inside,
# numpy images are float32 `H x W x C`.
Image = torch.Tensor | np.ndarray | LargeImage
ImageT = TypeVar("ImageT", torch.Tensor, np.ndarray)  # what goes in is what comes out

REGIONS_AHEAD = 2  # batches of tiles of a LargeImage read (in a thread) ahead of the model


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
    threshold: float = DEFAULT_THRESHOLD
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


def _with_user_thresholds(decoding: InstanceDecoding, options: InferenceOptions
                        ) -> InstanceDecoding:
    """An instance model's decoding with the user's `--min-size`, and `--threshold` (when
    not the default 0.5) as its foreground threshold, in place of those chosen on
    validation (each said in one line); `--fill-holes` is refused: it fills holes of masks, and
    objects are drawn from the foreground by the model's own thresholds.

    Raises:
        ConfigError: `fill_holes` asked of an instance model.
    """
    post = options.postprocess
    if post.fill_holes:
        raise ConfigError("--fill-holes fills the holes of masks; an instance model draws its "
                          "objects with the thresholds chosen on validation: drop "
                          "--fill-holes (--min-size sets the smallest object kept)")
    thresholds = decoding.thresholds
    if post.min_size > 1 and post.min_size != thresholds.min_size:
        log.info(f"objects: --min-size {post.min_size} replaces the {thresholds.min_size} "
                 "pixels chosen on validation")
        thresholds = replace(thresholds, min_size=post.min_size)
    if options.threshold != DEFAULT_THRESHOLD and options.threshold != thresholds.foreground:
        log.info(f"objects: --threshold {options.threshold:g} replaces the foreground "
                 f"threshold {thresholds.foreground:g} chosen on validation")
        thresholds = replace(thresholds, foreground=options.threshold)
    return replace(decoding, thresholds=thresholds) if thresholds != decoding.thresholds \
        else decoding


class Predictor:
    """Runs a model on images of any size and returns float32 outputs `K x H x W`, or hard
    uint8 labels, on the CPU: numpy arrays for a numpy image, tensors for a tensor.

    Images are either
    - numpy arrays read by the rule of an image file holding the same pixels (the one rule
      of `read_image`, `data.io.image_from_array`): `H x W`, `H x W x C` or `C x H x W`;
      uint8 / 255, uint16 / 65535, int8 / 127, int16 / 32767, bool as 0 / 1, float16/32/64
      as stored (as a float TIFF: values outside [0, 1] are not rescaled); gray replicated
      to 3 channels or RGB turned to luminance when the model wants it. An array declares
      no alpha channel (pass `image[..., :3]` for RGBA). Refused in one line: 32- and 64-bit
      integers (numpy's default int64 does not say whether 0..255 or 0..65535 is meant),
      NaN or infinite values, other channel counts. So `labels(np.asarray(PIL.Image.open(f)))`
      equals the mask `unetzoo predict` writes for `f` (binary masks are written 0/255).
    - torch tensors: already normalised float `C x H x W` model input, as the dataset gives
      (`preprocessing.to_tensor(read_image(f))`), used as they are.
    - a `LargeImage` (`data.large.open_large(path, channels=in_channels)`): read region by
      region as the tiles need it (whole-slide images, OME-Zarr); use `label_bands` to get
      its labels band by band in bounded memory (the other methods return whole arrays).

    A numpy image is normalised tile by tile (no normalised full-size copy). In `crop` mode
    an image larger than the patch size is tiled with patch-sized windows (overlap as given,
    Gaussian-weighted blending, `batch_size` tiles per forward pass through the model or
    graph); smaller images go through whole. In `resize` mode the image is resized to the
    patch size and the output resized back. Memory stays bounded (see the module docstring).

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
        DataError: (from the methods taking images) an image that cannot be read as one; see
            above.

    Example:
        >>> predictor = Predictor.open("runs/exp1/models/best.pt")  # logs the backend
        >>> image = np.asarray(PIL.Image.open("scan.png"))  # uint8 H x W x 3, as stored
        >>> predictor.labels(image).shape                # numpy uint8, binary / multiclass
        (H, W)
        >>> predictor.probabilities(image).dtype         # numpy float32 K x H x W in [0, 1]
        dtype('float32')
    """

    def __init__(self, model: nn.Module, preprocessing: Preprocessing, task: Task,
                 options: InferenceOptions | None = None,
                 checkpoint: Checkpoint | None = None,
                 instance: InstanceDecoding | None = None) -> None:
        options = options or InferenceOptions()
        self.instance: InstanceDecoding | None = None
        if task == "instance":  # objects: the representation and thresholds to decode with
            self.instance = _with_user_thresholds(instance or InstanceDecoding.from_dict(
                checkpoint.instance if checkpoint is not None else None), options)
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
        self._tta = tta_transforms(self.options.tta,
                                   self.instance.vectors if self.instance else ())
        self._stats: Statistics | None = None
        self._said_range = False
        self.model_seconds = 0.0
        self.emptied = 0  # images whose every predicted pixel post-processing removed
        self.constant = 0  # constant images labelled background (`_constant`)

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
            probs = self._activated(inverse(self.forward(transform(batch))))
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

    def _statistics(self, image: Image) -> Statistics | None:
        """What normalises every tile of `image` as its whole image is normalised: a numpy
        image's own statistics (a strided sample, `Preprocessing.statistics`); a
        `LargeImage`'s from its overview (the coarsest pyramid level of at least 4 M pixels,
        strided: `LargeImage.overview`), never the full image, so per-image normalisation
        (`image`, `percentile`) may differ slightly from reading it whole (`dataset`
        normalisation does not look at the image: identical); None for a tensor."""
        if isinstance(image, LargeImage):
            sample = image.overview() if self.preprocessing.normalization != "dataset" else \
                np.zeros((1, 1, image.channels), np.float32)
            return self.preprocessing.statistics(sample)
        return self.preprocessing.statistics(image) if isinstance(image, np.ndarray) else None

    def _region_batch(self, image: LargeImage, group: list[tuple[int, int]], height: int,
                      width: int) -> torch.Tensor:
        """The tiles `group` of a `LargeImage`, normalised: each row of tiles in the group
        read as one region (`read_region` decodes only the stored tiles it touches) and
        cut into tiles (normalisation is per pixel: cutting first or last is the same)."""
        tiles: dict[tuple[int, int], torch.Tensor] = {}
        for y in dict.fromkeys(y for y, _ in group):
            xs = [x for ty, x in group if ty == y]
            x0, x1 = min(xs), max(xs) + width
            region = self.preprocessing.to_tensor(image.read_region(y, y + height, x0, x1),
                                                  self._stats)
            for x in xs:
                tiles[y, x] = region[:, :, x - x0: x - x0 + width]
        return torch.stack([tiles[tile] for tile in group])

    def _tile_batches(self, image: Image, tiles: list[tuple[int, int]], height: int,
                      width: int) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
        """(tile positions, `B x C x height x width` batch) of `tiles`, `batch_size` at a
        time. A `LargeImage` is read by a thread, `REGIONS_AHEAD` batches ahead of the model
        (reading overlaps inference; memory: those batches)."""
        size = self.options.batch_size
        groups = [tiles[i: i + size] for i in range(0, len(tiles), size)]
        if not isinstance(image, LargeImage):
            for group in groups:
                yield group, torch.stack([self._crop(image, y, x, height, width)
                                          for y, x in group])
            return
        with ThreadPoolExecutor(1, thread_name_prefix="unetzoo-regions") as pool:
            pending = deque(pool.submit(self._region_batch, image, group, height, width)
                            for group in groups[:REGIONS_AHEAD])
            try:
                for index, group in enumerate(groups):
                    if index + REGIONS_AHEAD < len(groups):
                        pending.append(pool.submit(self._region_batch, image,
                                                   groups[index + REGIONS_AHEAD], height,
                                                   width))
                    yield group, pending.popleft().result()
            finally:  # stopped early (an error, a consumer that stops): read no further
                for future in pending:
                    future.cancel()

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
        for group, batch in self._tile_batches(image, tiles, th, tw):
            outputs = infer(batch)
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
        self._stats = self._statistics(image)
        size = self.preprocessing.img_size
        if self.preprocessing.resize_mode == "resize":
            if isinstance(image, LargeImage):
                raise DataError(f"a {height} x {width} image read region by region, and this "
                                "model resizes whole images to its patch size (resize "
                                "mode): predict it whole (raise --large-megapixels)",
                                image.path)
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

    def _activated(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities of a `B x K x H x W` batch of logits (an instance model: its
        representation's channels activated, `instance.activate`)."""
        if self.instance is not None:
            return activate(logits, self.instance.representation)
        return probabilities(logits, self.task)

    def _probabilities(self, band: torch.Tensor) -> torch.Tensor:
        return band if self.blends_probabilities else self._activated(band[None])[0]

    # -- what comes in, what goes out ----------------------------------------------------
    def _read(self, image: Image) -> Image:
        """`image` as the bands take it: a numpy image read by the file rule (float32
        `H x W x C`), a tensor as it is (checked to be float `C x H x W`)."""
        if isinstance(image, LargeImage):
            if image.channels != self.preprocessing.in_channels:
                raise DataError(f"read with {image.channels} channels; this model takes "
                                f"{self.preprocessing.in_channels}: open it with "
                                f"open_large(path, channels={self.preprocessing.in_channels})",
                                image.path)
            return image
        if isinstance(image, torch.Tensor):
            if image.ndim != 3 or not image.is_floating_point():
                raise DataError(f"a torch tensor of shape {tuple(image.shape)} and dtype "
                                f"{image.dtype}: a tensor is taken as normalised float "
                                "C x H x W model input; pass a numpy array to have it read "
                                "as an image file's pixels are")
            return image
        if not isinstance(image, np.ndarray):
            raise DataError(f"an image is a numpy array (as read from a file) or a normalised "
                            f"C x H x W torch tensor, not {type(image).__name__}; for a PIL "
                            "image pass np.asarray(image)")
        if getattr(self.model, "read_input", None) is not None:
            raise DataError("this bioimage.io package of another tool reads image files by "
                            "its own preprocessing: pass unetzoo.predict a file, or this "
                            "predictor the tensor model.read_input(file) gives")
        array = image_from_array(image, self.preprocessing.in_channels)
        self._say_range(image, array)
        return array

    def _say_range(self, given: np.ndarray, array: np.ndarray) -> None:
        """One line (once per predictor) when float pixels outside [0, 1] meet a model that
        normalises with fixed dataset statistics, where their scale matters: they are taken
        as stored, as a float TIFF is."""
        if self._said_range or given.dtype.kind != "f" or \
                self.preprocessing.normalization != "dataset":
            return
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            self._said_range = True
            log.warning(f"a float image with values in [{low:.4g}, {high:.4g}]: taken as "
                        "stored, as a float TIFF is (not rescaled to [0, 1]), and normalised "
                        "with the training data's mean and std, measured on [0, 1] pixels; "
                        "pass 8-bit data as uint8 (or divided by 255)")

    @staticmethod
    def _out(result: torch.Tensor, image: ImageT) -> ImageT:
        """`result` as a tensor for a tensor, else (numpy, `LargeImage`) a numpy array."""
        return cast(ImageT, result if isinstance(image, torch.Tensor) else result.numpy())

    # -- public -------------------------------------------------------------------------
    def logits(self, image: ImageT) -> ImageT:
        """Float32 logits `K x H x W` (without TTA, which averages probabilities): a numpy
        array for a numpy image, a tensor for a tensor (see the class docstring for how
        each is read).

        Raises:
            ConfigError: with test-time augmentation.
            DataError: an image that cannot be read as one.
        """
        if self.blends_probabilities:
            raise ConfigError("test-time augmentation averages probabilities; use "
                              "probabilities() or labels()")
        return self._out(torch.cat(list(self._bands(self._read(image))), dim=1), image)

    def probabilities(self, image: ImageT) -> ImageT:
        """Float32 probabilities `K x H x W` in [0, 1] (softmax for multiclass, sigmoid
        otherwise; an instance model's channels activated as its representation says:
        regressions such as hover's offsets as the network gives them, about [-1, 1]): a
        numpy array for a numpy image, a tensor for a tensor.

        Raises:
            DataError: an image that cannot be read as one (see the class docstring).
        """
        bands = self._bands(self._read(image))
        return self._out(torch.cat([self._probabilities(b) for b in bands], dim=1), image)

    def labels(self, image: ImageT) -> ImageT:
        """Hard uint8 labels, post-processed: `H x W` (binary: 0 / 1; multiclass: class
        indices) or `K x H x W` (multilabel: 0 / 1): a numpy array for a numpy image, a
        tensor for a tensor. `unetzoo predict` writes binary labels as 0 / 255.

        An instance model gives int32 `H x W` object labels (0 background, objects 1..N):
        its outputs over the whole image (tiles blended first), decoded with the run's
        thresholds (`instance.InstanceDecoding`).

        A constant numpy image (one value in every channel) under per-image normalisation
        is all background without running the model (see `_constant`).

        Raises:
            DataError: an image that cannot be read as one (see the class docstring).
        """
        read = self._read(image)
        if self._constant(read):
            height, width = self._size(read)
            if self.instance is not None:
                return self._out(torch.zeros(height, width, dtype=torch.int32), image)
            shape = (self.model_num_classes, height, width) if self.task == "multilabel" \
                else (height, width)
            return self._out(torch.zeros(shape, dtype=torch.uint8), image)
        if self.instance is not None:
            outputs = torch.cat([self._probabilities(b) for b in self._bands(read)], dim=1)
            return self._out(torch.from_numpy(self.instance.decode(outputs.numpy())), image)
        bands = [labels_from_probabilities(self._probabilities(b)[None], self.task,
                                           self.options.threshold)[0].to(torch.uint8)
                 for b in self._bands(read)]
        labels = torch.cat(bands, dim=-2)
        return self._out(self.postprocess(labels), image)

    def _constant(self, read: Image) -> bool:
        """Is `read` (a numpy image as read) one value in every channel, under a per-image
        normalisation? Such a model sees all zeros whatever the value, and what it outputs
        there is its border artefacts, not the image: the image is labelled background and
        counted in `constant` (said once per predictor; `predict` names the files)."""
        if self.preprocessing.normalization == "dataset" or not isinstance(read, np.ndarray) \
                or read.size == 0:
            pixels = None
        else:
            pixels = read.reshape(-1, read.shape[-1]) if read.ndim == 3 else read.reshape(-1, 1)
        if pixels is None or float((pixels.max(0) - pixels.min(0)).max()) > 1e-6:
            return False
        if not self.constant:
            log.info(f"a constant image (every pixel {float(pixels[0, 0]):.4g}) is labelled "
                     f"background: under {self.preprocessing.normalization} normalisation the "
                     "model sees zeros whatever the value")
        self.constant += 1
        return True

    def label_bands(self, image: Image, rows: int | None = None, margin: int | None = None
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """The labels of `image` band of rows by band of rows, top to bottom, as
        (first row, labels of the band): memory is bounded by bands, not by the image, so
        `image` may be a `LargeImage` of any size (its tiles read with `read_region`, in a
        thread ahead of the model; see `_statistics` for how it is normalised).

        Binary / multiclass: uint8 `r x W` (0 / 1, class indices); multilabel:
        `K x r x W`; bands are those of the blended outputs (about a tile's stride of rows
        each), labelled straight from them.
        Instance: uint32 `r x W` object ids, unique over the whole image (1..N, in the order
        of each object's first row), decoded `rows` own rows at a time (default four patch
        heights) with `margin` rows of context above and twice that below (default one
        patch height); an object belongs to the band holding its top row, so an object on
        a band or tile seam is neither cut nor counted twice as long as it is at most
        `margin` rows tall; a taller one goes on across bands with its id, and every
        foreground pixel keeps a label (see `instance.stitch_objects`). Memory: the outputs of
        `rows + 3 * margin` rows, `C x W` float32 each.

        The bands of `labels(image)` (of a numpy image, or a tensor: numpy bands) without
        post-processing, which needs the whole image.

        Raises:
            ConfigError: post-processing is asked for (--min-size, --fill-holes).
            DataError: an image that cannot be read as one, a region that cannot be read, a
                resize-mode model on a `LargeImage`.
        """
        if self.options.postprocess.enabled:
            raise ConfigError("post-processing (--min-size, --fill-holes) needs the whole "
                              "image; it is not applied band by band: leave it out, or "
                              "predict the image whole")
        image = self._read(image)
        bands = (self._probabilities(band) for band in self._bands(image))
        if self.instance is not None:
            size = self.preprocessing.img_size
            yield from stitch_objects((b.numpy() for b in bands), self.instance,
                                      self._size(image), 4 * size if rows is None else rows,
                                      size if margin is None else margin)
            return
        top = 0
        for band in bands:
            labels = labels_from_probabilities(band[None], self.task,
                                               self.options.threshold)[0].to(torch.uint8)
            yield top, labels.numpy()
            top += labels.shape[-2]

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

    def attention(self, image: ImageT) -> ImageT:
        """The attention maps of a gated model (Attention U-Net, R2AttU-Net), coarse to
        fine, each resized to the image: float32 `levels x H x W` in [0, 1], a numpy array
        for a numpy image and a tensor for a tensor. Large images are tiled and blended
        exactly like the outputs (bounded memory); no TTA.

        Raises:
            ConfigError: the model has no attention maps here (no gates, or an exported
                graph / non-torch backend).
            DataError: an image that cannot be read as one (see the class docstring).
        """
        levels = self.attention_levels
        if not levels:
            raise ConfigError("this model has no attention maps here (only gated models in "
                              "the torch backend have them; use --backend torch)")
        maps = self._bands(self._read(image), self._attention_batch, levels)
        return self._out(torch.cat(list(maps), dim=1), image)
