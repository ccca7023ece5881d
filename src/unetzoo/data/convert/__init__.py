"""Converters from public dataset formats to the paired layout with a split CSV.

`convert_dataset(name, src, dest)` reads the dataset as distributed (folder or zip, never
modified) and writes `DEST/images/`, `DEST/masks/`, `DEST/split.csv` and `DEST/classes.yaml`
(plus `roi/` for DRIVE's field of view and `instances/` for DSB2018 with `instances=True`).
One module per dataset; each module's docstring states the exact source format.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ...errors import ConfigError
from ..layouts import Pair
from . import cityscapes, cvc_clinicdb, drive, dsb2018, isic2018, kvasir_seg
from .source import Source
from .writer import DatasetWriter, check_destination

log = logging.getLogger("unetzoo")

CONVERTERS: dict[str, ModuleType] = {m.NAME: m for m in (
    dsb2018, drive, cvc_clinicdb, kvasir_seg, isic2018, cityscapes)}


def converter_options(name: str) -> dict[str, Any]:
    """The keyword options of a converter with their defaults."""
    function: Callable[..., Any] = CONVERTERS[name].convert
    return {p.name: p.default for p in list(inspect.signature(function).parameters.values())[2:]}


def convert_dataset(name: str, src: Path | str, dest: Path | str, *, overwrite: bool = False,
                    seed: int = 0, **options: Any) -> list[Pair]:
    """Convert the public dataset `name` at `src` into `dest` (see the module docstring).

    Args:
        name: a key of CONVERTERS (dsb2018, drive, cvc-clinicdb, kvasir-seg, isic2018,
            cityscapes).
        src: the dataset as distributed: a folder, a zip, or a folder of zips (never
            modified, nothing extracted).
        dest: the folder written (images/, masks/, split.csv, classes.yaml, ...); replaced
            only once everything is written.
        overwrite: replace a non-empty `dest`.
        seed: the seed of the 80 / 10 / 10 split of datasets without an official one.
        options: the converter's own options (`converter_options(name)`), e.g.
            instances=True for dsb2018, fov=False for drive.

    Returns:
        The pairs written, with their splits.

    Raises:
        ConfigError: an unknown dataset or option; RunError: a non-empty `dest` without
            `overwrite`, or `dest` and `src` inside each other; DataError: a source file
            missing or unreadable, or a mask that is not what the format promises (named).

    Example:
        >>> pairs = convert_dataset("drive", "~/Downloads/DRIVE", "data/drive")  # doctest: +SKIP
        >>> sorted({p.split for p in pairs})  # doctest: +SKIP
        ['test', 'train', 'val']
    """
    if name not in CONVERTERS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(CONVERTERS)}")
    allowed = converter_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"{name} takes no option {', '.join(unknown)}"
                          + (f" (it takes {', '.join(allowed)})" if allowed else ""))
    src, dest = Path(src), Path(dest)
    check_destination(src, dest, overwrite)
    with Source.open(src) as source:
        writer = DatasetWriter(dest, seed)
        try:
            class_map = CONVERTERS[name].convert(source, writer, **options)
            return writer.commit(class_map)
        finally:
            writer.discard()
