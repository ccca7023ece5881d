"""Class maps: which stored mask value or colour is which class, and which are ignored.

A class map is a YAML file (by default `classes.yaml` in the dataset folder)::

    classes:                       # in training-index order: class k is entry k
      - {name: background, index: 0, color: [0, 0, 0]}
      - {name: road, index: [7, 9], color: [128, 64, 128]}   # several stored values
      - {name: car, index: 26, color: [0, 0, 142]}
    ignore_index: 255              # stored value(s) counted nowhere (default 255; [] for none)
    ignore_color: [255, 255, 255]  # stored colour(s) counted nowhere (colour masks)

Index masks (gray or palette PNG/TIFF) are mapped by `index`; when no class has an `index`,
masks are read as RGB and mapped by `color` (JPEG colour masks take the nearest colour).
`classes` may also be a plain list of names (index = position). Colours also paint the
predicted masks. A stored value or colour that the map does not name is an error that names
the mask file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import ConfigError, DataError, MaskValueError
from ..task import IGNORE_INDEX
from .io import LOSSY_EXTENSIONS

CLASS_MAP_FILE = "classes.yaml"
Color = tuple[int, int, int]


def format_value(value: float) -> str:
    """A stored mask value as written in messages: whole numbers without decimals."""
    return str(int(value)) if float(value).is_integer() else f"{float(value):.3g}"


def format_values(values: Sequence[float] | np.ndarray, limit: int = 8) -> str:
    """Distinct stored values for a message: all of them, or the first `limit`, the last and
    how many in all."""
    values = list(values)
    if len(values) <= limit:
        return ", ".join(format_value(v) for v in values)
    shown = ", ".join(format_value(v) for v in values[:limit])
    return f"{shown}, ..., {format_value(values[-1])} ({len(values)} distinct)"


@dataclass(frozen=True)
class ClassMap:
    """Class names in training-index order with their stored values and colours."""

    names: tuple[str, ...]
    indices: tuple[tuple[int, ...], ...] | None
    colors: tuple[Color, ...] | None
    ignore_indices: tuple[int, ...] = (IGNORE_INDEX,)
    ignore_colors: tuple[Color, ...] = ()
    source: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= len(self.names) <= 255:
            raise ConfigError(f"a class map needs 1 to 255 classes, got {len(self.names)}",
                              self.source)
        if len(set(self.names)) != len(self.names):
            raise ConfigError("class names must be unique", self.source)
        if self.indices is None and self.colors is None:
            raise ConfigError("every class needs an index or a colour", self.source)
        stored = [v for values in self.indices or () for v in values]
        if len(set(stored)) != len(stored) or set(stored) & set(self.ignore_indices):
            raise ConfigError("a stored index may belong to one class only", self.source)
        if self.indices is None and len(set(self.colors or ())) != len(self.names):
            raise ConfigError("class colours must be distinct", self.source)

    @property
    def by_color(self) -> bool:
        """Masks are read as RGB and mapped by colour (no class has an index)."""
        return self.indices is None

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def encode(self, mask: np.ndarray, path: Path) -> np.ndarray:
        """Training indices (uint8 `H x W`, `IGNORE_INDEX` for ignored pixels) of a stored
        mask as read by `read_mask(path, rgb=self.by_color)`."""
        if self.by_color:
            return self._encode_colors(mask, path)
        if mask.ndim != 2:
            raise DataError(f"colour mask of shape {mask.shape}, but the class map "
                            f"{self.source or ''} maps stored indices", path)
        values = np.unique(mask)
        lookup = {v: k for k, stored in enumerate(self.indices or ()) for v in stored}
        lookup.update((v, IGNORE_INDEX) for v in self.ignore_indices)
        unknown = [int(v) for v in values if int(v) not in lookup]
        if unknown:
            raise MaskValueError(f"mask values {{{format_values(unknown)}}} are not in the class "
                                 f"map {self.source or ''} (stored indices "
                                 f"{format_values(sorted(lookup))})", path)
        table = np.array([lookup[int(v)] for v in values], np.uint8)
        return table[np.searchsorted(values, mask)]

    def _encode_colors(self, mask: np.ndarray, path: Path) -> np.ndarray:
        if mask.ndim != 3 or mask.shape[2] != 3:
            raise DataError(f"expected an RGB mask for a colour class map, got shape "
                            f"{mask.shape}", path)
        palette = [*(self.colors or ()), *self.ignore_colors]
        targets = np.array([*range(self.num_classes), *[IGNORE_INDEX] * len(self.ignore_colors)],
                           np.uint8)
        colors = np.asarray(palette, np.int64)
        packed = (mask[..., 0].astype(np.int64) << 16) | (mask[..., 1].astype(np.int64) << 8) \
            | mask[..., 2].astype(np.int64)
        keys = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
        values, inverse = np.unique(packed, return_inverse=True)
        if Path(path).suffix.lower() in LOSSY_EXTENSIONS:  # JPEG noise: the nearest colour
            rgb = np.stack([values >> 16, (values >> 8) & 255, values & 255], 1)
            nearest = ((rgb[:, None, :] - colors[None]) ** 2).sum(-1).argmin(1)
            return targets[nearest][inverse].reshape(mask.shape[:2])
        order = np.argsort(keys)
        pos = np.searchsorted(keys[order], values).clip(max=len(keys) - 1)
        found = keys[order][pos] == values
        if not found.all():
            bad = values[~found][:5]
            shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})" for v in bad)
            raise MaskValueError(f"mask colours {{{shown}}}{' ...' if (~found).sum() > 5 else ''}"
                                 f" are not in the class map {self.source or ''}", path)
        return targets[order][pos][inverse].reshape(mask.shape[:2])

    def to_dict(self) -> dict[str, Any]:
        classes = []
        for k, name in enumerate(self.names):
            entry: dict[str, Any] = {"name": name}
            if self.indices is not None:
                stored = self.indices[k]
                entry["index"] = stored[0] if len(stored) == 1 else list(stored)
            if self.colors is not None:
                entry["color"] = list(self.colors[k])
            classes.append(entry)
        out: dict[str, Any] = {"classes": classes}
        out["ignore_index"] = self.ignore_indices[0] if len(self.ignore_indices) == 1 else \
            list(self.ignore_indices)
        if self.ignore_colors:
            out["ignore_color"] = [list(c) for c in self.ignore_colors]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _ints(value: Any, what: str, path: Path | None, low: int = 0, high: int = 65535,
          allow_empty: bool = False) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    valid = all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= high
                for v in items)
    if (not items and not allow_empty) or not valid:
        raise ConfigError(f"{what} must be an integer in {low}..{high} or a list of them, got "
                          f"{value!r}", path)
    return tuple(items)


def _color(value: Any, what: str, path: Path | None) -> Color:
    if not isinstance(value, list) or len(value) != 3:
        raise ConfigError(f"{what} must be [r, g, b], got {value!r}", path)
    r, g, b = _ints(value, what, path, high=255)
    return r, g, b


def class_map_from_dict(data: Any, path: Path | None = None) -> ClassMap:
    """A ClassMap from parsed YAML (see the module docstring), with errors naming `path`."""
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ConfigError("a class map is a mapping with a `classes` list", path)
    unknown = set(data) - {"classes", "ignore_index", "ignore_color"}
    if unknown:
        raise ConfigError(f"unknown class map keys: {', '.join(sorted(unknown))}", path)
    names, indices, colors = [], [], []
    for k, entry in enumerate(data["classes"]):
        entry = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"class {k}: expected a name or {{name, index, color}}, got "
                              f"{entry!r}", path)
        extra = set(entry) - {"name", "index", "color"}
        if extra:
            raise ConfigError(f"class {entry['name']!r}: unknown keys {', '.join(sorted(extra))}",
                              path)
        names.append(entry["name"])
        has_color = "color" in entry
        index = entry.get("index", None if has_color else k)
        indices.append(None if index is None else _ints(index, f"class {entry['name']!r} index",
                                                        path))
        colors.append(_color(entry["color"], f"class {entry['name']!r} color", path)
                      if has_color else None)
    if any(i is None for i in indices) and any(i is not None for i in indices):
        raise ConfigError("give every class an index, or none (then masks are mapped by colour)",
                          path)
    if any(c is None for c in colors) and not all(c is None for c in colors):
        raise ConfigError("give every class a colour, or none", path)
    ignore = _ints(data.get("ignore_index", IGNORE_INDEX), "ignore_index", path,
                   allow_empty=True)
    ignore_colors = data.get("ignore_color", [])
    if ignore_colors and not isinstance(ignore_colors[0], list):
        ignore_colors = [ignore_colors]
    return ClassMap(tuple(names), None if indices[0] is None else tuple(indices),  # type: ignore[arg-type]
                    None if colors[0] is None else tuple(colors),  # type: ignore[arg-type]
                    ignore, tuple(_color(c, "ignore_color", path) for c in ignore_colors), path)


def load_class_map(path: Path | str) -> ClassMap:
    """Read and check a class map YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("class map not found", path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid YAML: {exc}", path) from exc
    return class_map_from_dict(data, path)


def find_class_map(root: Path, given: Path | str | None) -> ClassMap | None:
    """The class map given, else `root/classes.yaml` when it exists, else None."""
    if given:
        path = Path(given)
        return load_class_map(path if path.is_file() or path.is_absolute() else root / path)
    default = Path(root) / CLASS_MAP_FILE
    return load_class_map(default) if default.is_file() else None
