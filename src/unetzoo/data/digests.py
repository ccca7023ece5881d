"""Content digests of dataset files: BLAKE2b with a 16-byte digest (RFC 7693, Python's
`hashlib.blake2b`), read in chunks by `hashlib.file_digest`.

A digest is written as 32 hexadecimal digits, the value `b2sum -l 128 FILE` prints, so a
person can check a recorded file by hand. Digests are remembered per process for a file
whose device, inode, size and modification and change times are unchanged, so the split
checks, the run's split record and a resume's comparison hash each file once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError

DIGEST_SIZE = 16  # bytes; 32 hexadecimal digits
_MEMO: dict[tuple[int, ...], str] = {}
_MEMO_LIMIT = 200_000  # entries (about 40 MB); the memo is emptied when it reaches this


def _blake2b() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def file_size(path: Path | str) -> int:
    """The size of `path` in bytes.

    Raises:
        DataError: the file cannot be read (naming it).
    """
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from exc


def file_digest(path: Path | str) -> str:
    """The BLAKE2b-128 digest of a file's bytes, as 32 hexadecimal digits.

    Raises:
        DataError: the file cannot be read (naming it).

    Example:
        >>> file_digest("data/images/a.png")  # doctest: +SKIP
        '5f0c6bd2e0b4b0e38a1d0ad0b1f1c2e3'
    """
    try:
        st = os.stat(path)
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        digest = _MEMO.get(key)
        if digest is None:
            with open(path, "rb") as fh:
                digest = hashlib.file_digest(fh, _blake2b).hexdigest()
            if len(_MEMO) >= _MEMO_LIMIT:
                _MEMO.clear()
            _MEMO[key] = digest
    except OSError as exc:
        raise DataError(f"cannot read ({exc.strerror or exc})", path) from exc
    return digest


def files_digest(paths: Sequence[Path]) -> tuple[int, str]:
    """(total bytes, digest) of several files read as one unit (a pair's mask files: its
    mask or class masks, then its region of interest): one file gives its own digest; more
    give the BLAKE2b-128 of their digests' bytes in order; none give (0, "").

    Raises:
        DataError: a file cannot be read (naming it).
    """
    if not paths:
        return 0, ""
    sizes = [file_size(p) for p in paths]
    digests = [file_digest(p) for p in paths]
    if len(digests) == 1:
        return sizes[0], digests[0]
    joined = _blake2b()
    for digest in digests:
        joined.update(bytes.fromhex(digest))
    return sum(sizes), joined.hexdigest()


def pack_digests(digests: Iterable[str], width: int = DIGEST_SIZE) -> bytes:
    """The distinct digests (hexadecimal) as one sorted byte string of `width`-byte
    prefixes: what a checkpoint carries to name its training images away from its run
    (16 bytes an image: 1.6 MB for 100,000 images; `width` 8 halves that and still makes a
    chance match between 10^5 training and 10^5 scored images about 5e-10 likely).

    Raises:
        ValueError: `width` outside 4..16, or a digest shorter than `width` bytes.
    """
    if not 4 <= width <= DIGEST_SIZE:
        raise ValueError(f"width must be 4..{DIGEST_SIZE} bytes, got {width}")
    raw = {bytes.fromhex(d)[:width] for d in digests if d}
    if any(len(r) < width for r in raw):
        raise ValueError(f"a digest is shorter than {width} bytes")
    return b"".join(sorted(raw))


def unpack_digests(blob: bytes, width: int = DIGEST_SIZE) -> frozenset[str]:
    """The digests (hexadecimal prefixes of `width` bytes) that `pack_digests` packed.

    Raises:
        ValueError: the blob's length is not a multiple of `width`.
    """
    if len(blob) % width:
        raise ValueError(f"{len(blob)} bytes are not a whole number of {width}-byte digests")
    return frozenset(blob[i: i + width].hex() for i in range(0, len(blob), width))
