"""Decode (and, in resize mode, resize) every image and mask once, not once per epoch.

Training reads the same files every epoch; decoding a PNG or TIFF and resizing a large
photograph cost more than the model on small inputs. A `SampleCache` keeps what
`SegmentationDataset` would read, ready for augmentation:

- `memory`: all samples are read once, in parallel threads, when the cache is built, and
  kept as arrays; data-loading worker processes inherit them (fork, copy-on-write).
- `disk`: samples too many for memory are written once to a cache folder as `.npy` files
  named by a hash of the files' content and the settings that shape them (channels,
  target encoding, resize size), as nnU-Net preprocesses a dataset once; later epochs and
  later runs load them. The folder is `$UNETZOO_CACHE_DIR`, else `~/.cache/unetzoo`.
- `auto` picks memory when the samples fit in `MEMORY_FRACTION` of the available memory,
  else disk.

A sample that cannot be read is not cached: the dataset raises on it as without a cache.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import atomic_write_bytes
from .io import read_header
from .layouts import Pair

log = logging.getLogger("unetzoo")

CACHE_MODES: tuple[str, ...] = ("auto", "memory", "disk", "off")
MEMORY_FRACTION = 0.25  # of the memory available when the cache is built
FORMAT_VERSION = 1  # part of every disk key: bump when what is stored changes

Sample = tuple[np.ndarray, np.ndarray | None]  # image H x W x C float32, target or None
Reader = Callable[[int], Sample]


def cache_dir() -> Path:
    """Where disk caches live: `$UNETZOO_CACHE_DIR`, else `~/.cache/unetzoo`."""
    given = os.environ.get("UNETZOO_CACHE_DIR")
    return Path(given) if given else Path.home() / ".cache" / "unetzoo"


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
    return int(pages * os.sysconf("SC_PAGE_SIZE")) if pages else 0


def estimate_pixels(pairs: Sequence[Pair], sample: int = 64) -> int:
    """Pixels of all `pairs`' images, from the headers of up to `sample` of them spread
    through the list, scaled to all of them."""
    if not pairs:
        return 0
    step = max(1, len(pairs) // sample)
    picked = pairs[::step][:sample]
    pixels = 0
    for pair in picked:
        try:
            header = read_header(pair.image)
        except DataError:
            continue
        pixels += header.width * header.height
    return int(pixels / max(1, len(picked)) * len(pairs))


def estimate_bytes(pairs: Sequence[Pair], channels: int, size: int | None = None,
                   sample: int = 64) -> int:
    """Bytes a memory cache of `pairs` would hold: float32 images of `channels` and uint8
    targets, at `size` x `size` when given (resize mode), else at their own sizes (see
    `estimate_pixels`)."""
    pixels = len(pairs) * size * size if size is not None else estimate_pixels(pairs, sample)
    return pixels * (4 * channels + 1)


def choose_mode(requested: str, pairs: Sequence[Pair], channels: int, size: int | None
                ) -> tuple[str, str]:
    """(mode, reason): `requested` unless it is `auto`, which picks memory when the samples
    fit in MEMORY_FRACTION of the available memory, else disk."""
    if requested not in CACHE_MODES:
        raise ConfigError(f"unknown cache mode {requested!r}; choose {', '.join(CACHE_MODES)}")
    if requested != "auto":
        return requested, "as asked"
    need, free = estimate_bytes(pairs, channels, size), available_memory()
    if free and need > MEMORY_FRACTION * free:
        return "disk", (f"{need / 2**20:.0f} MiB of samples > {MEMORY_FRACTION:.0%} of "
                        f"{free / 2**20:.0f} MiB available")
    return "memory", f"{need / 2**20:.0f} MiB"


def content_key(pair: Pair, settings: str) -> str:
    """A hash of the pair's files' bytes (image, masks, region of interest) and `settings`."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"v{FORMAT_VERSION}|{settings}".encode())
    for path in (pair.image, *pair.mask_files):
        digest.update(b"|")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _pack(sample: Sample) -> bytes:
    image, target = sample
    out = io.BytesIO()
    arrays = {"image": image} if target is None else {"image": image, "target": target}
    np.savez(out, **arrays)
    return out.getvalue()


def _unpack(path: Path) -> Sample:
    with np.load(path, allow_pickle=False) as data:
        return data["image"], (data["target"] if "target" in data.files else None)


class SampleCache:
    """Samples of one dataset, read by `reader(index)` at most once.

    Args:
        pairs: the dataset's pairs, in index order.
        reader: reads sample `index` as (`H x W x C` float32 image, target or None); raises
            DataError naming the file when it cannot.
        mode: memory, disk or off (see the module docstring; resolve `auto` with
            `choose_mode` first).
        settings: everything besides the files that shapes a sample (channels, mask reading,
            resize size): part of each disk key.
        threads: parallel reads when a memory cache is filled.
        folder: the disk cache folder (default: `cache_dir()`).
    """

    def __init__(self, pairs: Sequence[Pair], reader: Reader, mode: str, settings: str,
                 threads: int | None = None, folder: Path | None = None) -> None:
        if mode not in ("memory", "disk", "off"):
            raise ConfigError(f"a sample cache is memory, disk or off, not {mode!r}")
        self.pairs = list(pairs)
        self.reader = reader
        self.mode = mode
        self.settings = settings
        self.folder = folder or cache_dir() / "samples"
        self._memory: list[Sample | None] = []
        self._keys: list[str | None] = [None] * len(self.pairs)
        self.hits = 0
        self.disabled_reason: str | None = None
        if mode == "memory":
            self._fill(threads or os.cpu_count() or 1)

    def _fill(self, threads: int) -> None:
        def read(index: int) -> Sample | None:
            try:
                return self.reader(index)
            except DataError:
                return None  # raised again (and skipped or reported) when it is used

        with ThreadPoolExecutor(max(1, threads)) as pool:
            self._memory = list(pool.map(read, range(len(self.pairs))))

    def _path(self, index: int) -> Path:
        key = self._keys[index]
        if key is None:
            key = self._keys[index] = content_key(self.pairs[index], self.settings)
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, index: int) -> Sample:
        """Sample `index`: from the cache, else read (and stored on disk in disk mode)."""
        if self.mode == "memory":
            sample = self._memory[index]
            if sample is None:
                return self.reader(index)
            self.hits += 1
            image, target = sample  # copies: a transform must never change the cache
            return image.copy(), None if target is None else target.copy()
        if self.mode == "off" or self.disabled_reason:
            return self.reader(index)
        path = self._path(index)
        if path.is_file():
            try:
                sample = _unpack(path)
                self.hits += 1
                return sample
            except (OSError, ValueError, KeyError) as exc:
                log.warning("unreadable cache entry %s (%s): reading the files again", path,
                            exc)
        sample = self.reader(index)
        try:
            atomic_write_bytes(path, _pack(sample))
        except OSError as exc:
            self.disabled_reason = f"cannot write the disk cache in {self.folder}: {exc}"
            log.warning("%s; reading the files every epoch", self.disabled_reason)
        return sample
