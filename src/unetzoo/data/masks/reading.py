"""What the user said about the masks (`MaskOptions`) and what the rule decided they mean
(`MaskReading`): the task, the classes, which stored value or colour is which class, the
ignored values, the threshold, the evidence as one line; and how the reading encodes one
stored mask into the task's target, stopping (MaskValueError, naming the file) at a value it
cannot hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...task import IGNORE_INDEX, Task
from ..classmap import ClassMap, Color, class_map_from_dict, format_value, format_values
from . import refusals
from .facts import MaskFacts, mask_facts, soft_level
from .labels import encode_labels


@dataclass(frozen=True)
class MaskOptions:
    """What the user said about the masks (flags or YAML keys)."""

    task: Task | None = None
    num_classes: int | None = None
    class_map: ClassMap | None = None
    ignore_index: int | None = None
    instances: bool = False  # instance label images: foreground = any label
    threshold: float | None = None  # stored values above it are foreground
    components: bool = False  # --task instance: binary masks' components are the objects

    @property
    def ignore(self) -> tuple[int, ...]:
        return () if self.ignore_index is None else (self.ignore_index,)


@dataclass(frozen=True)
class MaskReading:
    """How the stored masks of a dataset become targets, and why (`evidence`).

    rule: binary (0 and a foreground level; `levels` are the stored levels, plus the
    type's full scale with `full_scale`; in-between values thresholded at half the level),
    index (class k is stored as `values[k]`), instances (any non-zero value), threshold
    (stored values above `threshold`), colour (`color` on black), class-map, class-folders
    (one binary mask per class, read by the binary rule); for the instance task, labels
    (instance label images: ids as stored) or components (label images, and binary masks
    whose connected components are the objects). `ignore` values are void.
    """

    task: Task
    num_classes: int
    rule: str
    evidence: str = ""
    levels: tuple[float, ...] = ()
    full_scale: bool = False
    soft: bool = False  # binary: some masks have in-between values (soft edges, noise)
    values: tuple[int, ...] = ()
    ignore: tuple[int, ...] = ()
    threshold: float | None = None
    color: Color | None = None
    class_map: ClassMap | None = field(default=None, compare=False)
    class_names: tuple[str, ...] = ()
    surveyed: int = 0  # masks whose values the decision read

    @property
    def reads_rgb(self) -> bool:
        return self.class_map is not None and self.class_map.by_color

    # -- encoding ---------------------------------------------------------------------
    def encode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """The uint8 `H x W` target (class indices, `IGNORE_INDEX` for ignored pixels) of a
        stored mask as `io.read_mask(path, rgb=self.reads_rgb)` gives it; for the instance
        task, the int32 `H x W` label image (0 background, ids as stored, `IGNORE_LABEL`
        for void pixels: see `labels.encode_labels`).

        Raises:
            MaskValueError: naming `path`, for values this reading cannot hold.
        """
        path = Path(path)
        if self.task == "instance":
            return encode_labels(mask, path, self.ignore, self.rule == "components")
        if self.class_map is not None:
            return self.class_map.encode(mask, path)
        if self.rule == "colour":
            return self._colour(mask, path)
        if mask.ndim != 2:
            raise refusals.colour_among_gray(mask, path)
        void = np.isin(mask, self.ignore) if self.ignore else None
        target = self._gray(mask, path)
        if void is not None:
            target[void] = IGNORE_INDEX
        return target

    def _gray(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """The target of a gray mask by the reading's rule, void values not yet set."""
        if self.rule in ("binary", "class-folders"):
            return self.binary(mask, path)
        if self.rule == "instances":
            if mask.min(initial=0) < 0:
                raise refusals.negative_instance_label(mask.min(), path)
            return (mask != 0).astype(np.uint8)
        if self.rule == "threshold":
            return (mask > self.threshold).astype(np.uint8)
        return self._index(mask, path)

    def binary(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """{0, 1} uint8 of a binary mask: values above half the file's foreground level.

        Raises:
            MaskValueError: a level this reading does not hold, or in-between values that
                are not soft edges or compression noise.
        """
        facts = mask_facts(mask, path, self.ignore)
        level = self.level_of(facts)
        if level is None:
            return np.zeros(mask.shape, np.uint8)
        return (mask > level / 2).astype(np.uint8)

    def level_of(self, facts: MaskFacts) -> float | None:
        """The foreground level of a binary mask file under this reading (None: empty).

        Raises:
            MaskValueError: naming the file when no level of the reading fits it.
        """
        held = sorted({*self.levels, *([facts.top] if self.full_scale else [])})
        if facts.two_level:
            if not len(facts.nonzero):
                return None
            value = float(facts.nonzero[0])
            if self._holds(value, facts.top):
                return value
            above = [v for v in held if v > value and value not in (1.0, facts.top)]
            if self.soft and above:  # an anti-aliased pixel of a tiny object
                return above[0]
            raise refusals.other_level(value, self.describe_levels(), self.surveyed,
                                       facts.path)
        level = soft_level(facts, held)
        if level is not None:
            return level
        raise refusals.not_soft(facts, self.describe_levels(), self.surveyed)

    def _holds(self, value: float, top: float) -> bool:
        return value in self.levels or (self.full_scale and value == top)

    def describe_levels(self) -> str:
        shown = [f"0/{format_value(v)}" for v in self.levels]
        if self.full_scale:
            shown.append("0/full scale (255, 65535)")
        return "binary " + " or ".join(shown) if shown else "binary"

    def _index(self, mask: np.ndarray, path: Path) -> np.ndarray:
        values, inverse = np.unique(mask, return_inverse=True)
        lookup = {v: k for k, v in enumerate(self.values)}
        lookup.update((v, IGNORE_INDEX) for v in self.ignore)
        unknown = [v for v in values.tolist() if v not in lookup]
        if unknown:
            raise refusals.unknown_values(unknown, self.mapping(), self.surveyed, path)
        table = np.array([lookup[v] for v in values.tolist()], np.uint8)
        return table[inverse].reshape(mask.shape)

    def _colour(self, mask: np.ndarray, path: Path) -> np.ndarray:
        rgb = mask if mask.ndim == 3 else np.repeat(mask[..., None], 3, axis=2)
        colour = np.asarray(self.color, rgb.dtype)
        fg = (rgb == colour).all(axis=2)
        bg = (rgb == 0).all(axis=2)
        if not (fg | bg).all():
            raise refusals.other_colour(rgb[~(fg | bg)][0], self.color or (), path)
        return fg.astype(np.uint8)

    def encode_classes(self, masks: Sequence[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
        """The target of one binary mask per class: binary `H x W`, multiclass `H x W`
        (class k + 1 where mask k is set, 0 elsewhere) or multilabel `H x W x K`.

        Raises:
            DataError: class masks of different sizes, or overlapping ones for a
                multiclass task; MaskValueError for a mask that is not binary.
        """
        if self.rule != "class-folders":  # a single folder of index masks
            return self.encode(masks[0], paths[0])
        layers = [self.binary(m, p) if m.ndim == 2 else self.encode(m, p)
                  for m, p in zip(masks, paths, strict=True)]
        if any(layer.shape != layers[0].shape for layer in layers):
            sizes = ", ".join(f"{p.name} {m.shape[1]}x{m.shape[0]}"
                              for m, p in zip(layers, paths, strict=True))
            raise refusals.class_masks_differ(sizes, paths[0])
        if self.task == "multilabel":
            return np.stack(layers, axis=-1)
        if self.task == "binary":
            return layers[0]
        stack = np.stack(layers)
        overlap = stack.sum(0) > 1
        if overlap.any():
            both = [p.parent.name for p, layer in zip(paths, layers, strict=True)
                    if (layer.astype(bool) & overlap).any()]
            raise refusals.class_masks_overlap(both, int(overlap.sum()), paths[0])
        return (stack * np.arange(1, len(layers) + 1, dtype=np.uint8)[:, None, None]).sum(
            0).astype(np.uint8)

    # -- description ------------------------------------------------------------------
    def mapping(self) -> str:
        """Stored value -> class, as printed (index rule)."""
        identity = self.values == tuple(range(len(self.values)))
        if identity:
            text = f"classes 0..{len(self.values) - 1}"
        else:
            text = ", ".join(f"{v} -> {k}" for k, v in enumerate(self.values))
        if self.ignore:
            text += f"; {format_values(self.ignore)} ignored"
        return text

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for checkpoints and the run folder's dataset.json)."""
        return {"task": self.task, "num_classes": self.num_classes, "rule": self.rule,
                "evidence": self.evidence, "levels": list(self.levels),
                "full_scale": self.full_scale, "soft": self.soft, "values": list(self.values),
                "ignore": list(self.ignore), "threshold": self.threshold,
                "color": list(self.color) if self.color else None,
                "class_map": self.class_map.to_dict() if self.class_map else None,
                "class_names": list(self.class_names), "surveyed": self.surveyed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskReading:
        cmap = data.get("class_map")
        color = data.get("color")
        return cls(data["task"], int(data["num_classes"]), data["rule"],
                   data.get("evidence", ""), tuple(float(v) for v in data.get("levels", ())),
                   bool(data.get("full_scale")), bool(data.get("soft")),
                   tuple(int(v) for v in data.get("values", ())),
                   tuple(int(v) for v in data.get("ignore", ())), data.get("threshold"),
                   (int(color[0]), int(color[1]), int(color[2])) if color else None,
                   class_map_from_dict(cmap) if cmap else None,
                   tuple(data.get("class_names", ())), int(data.get("surveyed", 0)))
