"""A public dataset as distributed, read in place: a folder, a zip file, or a folder holding
zip files (e.g. DRIVE's training.zip and test.zip). Nothing is extracted or modified.

Members are named by POSIX paths relative to the source; a zip inside a folder contributes
its members under its own relative path (`training.zip/training/images/21_training.tif`).
Zip members with absolute paths, `..` components or symbolic links are refused, and so are
symbolic-link loops in folders.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ...errors import DataError
from ..io import read_header, read_mask

_DRIVE_LETTER = re.compile(r"^[A-Za-z]:")


def _check_member(archive: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if name.startswith(("/", "\\")) or _DRIVE_LETTER.match(name):
        raise DataError(f"refused: member {name!r} has an absolute path", archive)
    if ".." in re.split(r"[/\\]", name):
        raise DataError(f"refused: member {name!r} points outside the archive ('..')", archive)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise DataError(f"refused: member {name!r} is a symbolic link", archive)


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under `root`, following directory links but refusing loops."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = folder.stat()
        except OSError as exc:
            raise DataError(f"cannot read ({exc.strerror or exc}); a symbolic link loop?",
                            folder) from exc
        key = (info.st_dev, info.st_ino)
        if key in seen:
            raise DataError("symbolic link loop: this folder is already part of the source",
                            folder)
        seen.add(key)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name, reverse=True):
            path = Path(entry.path)
            if entry.is_symlink() and not path.exists():
                raise DataError("is a broken or looping symbolic link", path)
            if entry.is_dir():
                stack.append(path)
            elif entry.is_file():
                yield path


@dataclass
class Source:
    """Read-only access to the files of a folder or zip, by relative POSIX name."""

    path: Path
    _files: dict[str, tuple[Path, str | None]] = field(default_factory=dict)
    _zips: dict[Path, zipfile.ZipFile] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str) -> Source:
        path = Path(path)
        source = cls(path)
        if path.is_file() and zipfile.is_zipfile(path):
            source._add_zip(path, "")
        elif path.is_dir():
            for file in _walk(path):
                name = file.relative_to(path).as_posix()
                if file.suffix.lower() == ".zip" and zipfile.is_zipfile(file):
                    source._add_zip(file, name + "/")
                else:
                    source._files[name] = (file, None)
        else:
            raise DataError("source not found" if not path.exists() else
                            "source is neither a folder nor a zip file", path)
        return source

    def _add_zip(self, archive: Path, prefix: str) -> None:
        try:
            handle = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as exc:
            raise DataError(f"cannot read zip file ({exc})", archive) from exc
        self._zips[archive] = handle
        for info in handle.infolist():
            _check_member(archive, info)
            if not info.is_dir():
                self._files[prefix + info.filename] = (archive, info.filename)

    def close(self) -> None:
        for handle in self._zips.values():
            handle.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def names(self) -> list[str]:
        return sorted(self._files)

    def match(self, pattern: str) -> dict[str, re.Match[str]]:
        """Members whose name matches the regular expression at its end (any prefix)."""
        compiled = re.compile(rf"(?:^|/){pattern}$")
        return {name: m for name in self.names() if (m := compiled.search(name))}

    def where(self, name: str) -> Path:
        """A path naming the member in messages: the file, or `archive.zip/member`."""
        file, member = self._files[name]
        return file if member is None else file / member

    def read(self, name: str) -> bytes:
        file, member = self._files[name]
        try:
            if member is None:
                return file.read_bytes()
            return self._zips[file].read(member)
        except (OSError, zipfile.BadZipFile, EOFError) as exc:  # zlib errors are OSError-like
            raise DataError(f"cannot read ({exc})", self.where(name)) from exc

    def size(self, name: str) -> tuple[int, int]:
        """(height, width) of an image member from its header."""
        return read_header(self.where(name), self.read(name)).size

    def gray_mask(self, name: str) -> np.ndarray:
        """A mask member as one channel of its displayed values (palette GIFs give their
        colours, not their palette indices)."""
        return read_mask(self.where(name), self.read(name), rgb=True).max(axis=2)

    def index_mask(self, name: str) -> np.ndarray:
        """A mask member's stored values (e.g. Cityscapes label ids)."""
        mask = read_mask(self.where(name), self.read(name))
        if mask.ndim != 2:
            raise DataError(f"expected a one-channel index mask, got shape {mask.shape}",
                            self.where(name))
        return mask


def stem(name: str) -> str:
    return PurePosixPath(name).stem
