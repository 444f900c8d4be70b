"""A video's identity by its content, which names its cached stage results."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vlavad.core.errors import VideoError
from vlavad.io.frame_folders import frame_files
from vlavad.io.header import existing

_HASH_CHUNK = 1 << 20


def content_key(path: str | Path) -> str:
    """A 16-hex-digit digest of a video's bytes (or a frame folder's names and bytes).

    Independent of where the file lives, so a copied or renamed video reuses its cached results.
    """
    path = existing(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in frame_files(path):
            # Name and size delimit each file's bytes so that no two folders hash alike.
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
            _hash_file(digest, file)
    else:
        _hash_file(digest, path)
    return digest.hexdigest()[:16]


def _hash_file(digest, path: Path) -> None:
    try:
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise VideoError(f"Cannot read {path}: {e.strerror}") from e
