"""Atomic file writes: a crash or kill mid-write never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()  # read once: os.umask can only be read by setting it


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> Path:
    """Call `write(fh)` on a temporary file beside `path`, fsync it, then rename it over
    `path` and fsync the folder. Readers see the old file or the new one, never a mix.

    Raises:
        OSError: the file cannot be written (a full disk, no permission), naming `path` (its
            `filename`), with the previous file kept.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # what a plain open() gives, not mkstemp's 0600
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


def stale_temporaries(paths: Iterable[Path | str]) -> list[Path]:
    """The temporary files `atomic_write` left beside `paths` when its process was killed
    (SIGKILL, power loss) before renaming them: `.<name>.<random>.tmp`. Nothing else is
    named so, and a live writer's temporary is only there while it writes, so a caller that
    owns the paths (a resumed run) may delete them. Each folder is listed once, however many
    paths it holds."""
    names: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        names.setdefault(path.parent, set()).add(path.name)
    stale = []
    for folder, wanted in names.items():
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            name = entry.name
            if name.startswith(".") and name.endswith(".tmp"):
                target = name[1:-4].rpartition(".")[0]  # .<name>.<random>.tmp -> <name>
                if target in wanted:
                    stale.append(folder / name)
    return sorted(stale)


def _naming(error: OSError, path: Path) -> OSError:
    """`error` naming `path` when it names no file ("No space left on device" from a write
    names nothing), so that the one line a user sees says where."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: Path | str, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_folder(path: Path | str, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder in a temporary sibling and move it into place when the block ends
    without an error: readers see the old folder or the new one, never a mix.

    Args:
        path: the folder to create (or, with `overwrite`, to replace).
        overwrite: replace an existing `path`; the old folder is removed only after the new
            one is in place.

    Yields:
        The temporary folder to write into.

    Raises:
        RunError: `path` exists (without `overwrite`) or is a file.
    """
    from .errors import RunError

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunError("exists and is not a folder", path)
    if path.exists() and not overwrite and any(path.iterdir()):
        raise RunError("exists and is not empty; pass --overwrite (overwrite=True) to replace "
                       "it", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        old = None
        if path.exists():
            old = path.parent / f"{tmp.name}.old"
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_folder(path.parent)
