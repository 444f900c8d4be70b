"""Writing files and folders so that nothing is ever half-written, and nothing is lost.

- Files are written to a hidden temporary file beside the target, then renamed onto it: a
  killed process leaves the old file or the new one, never half of one.
- A folder of results (a model, a benchmark run, a video's scores) is built beside its target
  and renamed into place when complete, so it is complete or absent.
- An existing target is replaced only if vlavad wrote it: each such folder carries a marker
  file (`model.json`, `results.json`, `result.json`) whose `format` names what it is. Anything
  else, a user's thesis folder or a file, is refused with one line and left untouched.
- A folder being built is locked (`flock`) by its writer until it is in place, so that a cleaner
  (the web app's pruning) can tell a live build from one whose process died, whatever its age
  (`remove_if_abandoned`); the kernel releases the lock when the process dies.
- A file is written only into a folder that exists: a folder deleted while it is being filled
  makes the next write fail, rather than be re-created with part of its files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from vlavad.core.errors import OutputError
from vlavad.core.schema import MAX_JSON_BYTES, MAX_JSON_DEPTH, json_depth

_STAGING = re.compile(r"^\..+\.[0-9a-f]{12}\.part$")
_HELD: set[tuple[int, int]] = set()  # (device, inode) of the staging folders this process holds locked

# What each kind of folder holds as its marker, and the formats that marker may name.
MARKERS = {
    "model": ("model.json", {"vlavad-model/1"}),
    "run": ("results.json", {"vlavad-run/1"}),
    "result": ("result.json", {"vlavad-result/1"}),
}


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes `path` in one rename. Its folder must exist (FileNotFoundError otherwise): callers
    create the folders they mean to create."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would otherwise stick to the file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def written_by_vlavad(folder: Path, kind: str) -> bool:
    """True when `folder` holds the marker of a `kind` folder ("model", "run", "result")."""
    name, formats = MARKERS[kind]
    marker = Path(folder) / name
    try:
        if marker.stat().st_size > MAX_JSON_BYTES:
            return False
        text = marker.read_bytes()
        if json_depth(text) > MAX_JSON_DEPTH:  # not ours, and deep enough to crash the parser
            return False
        meta = json.loads(text)
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    # Runs written by release 0.1.0 carried no format, but always these two keys.
    legacy_run = kind == "run" and "metrics" in meta and "dataset" in meta
    return meta.get("format") in formats or legacy_run


def check_output_folder(path: str | Path, kind: str) -> Path:
    """`path` if a `kind` folder may be written there, else OutputError (one line, path named).

    Allowed: a path that does not exist yet (under a folder we can write to), an empty folder,
    or a folder that vlavad wrote as the same kind (it is replaced as a whole).
    """
    path = Path(path)
    shown = str(path)
    if path.is_symlink():
        # A link is replaced by a rename, not written through: what it points to would be left
        # as it was while the link became a folder of its own.
        what = "a link to a folder" if path.is_dir() else "a link" if path.exists() else "a broken link"
        raise OutputError(f"{shown} is {what}: give the real folder instead, or a new one for the {kind} (nothing was written).")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{shown} is a file, not a folder: choose a new folder for the {kind} (nothing was written).")
    if path.is_dir():
        if any(path.iterdir()) and not written_by_vlavad(path, kind):
            raise OutputError(
                f"{shown} already holds files that are not a vlavad {kind}: choose a new or empty folder "
                "(vlavad replaces only folders it wrote, and nothing was touched)."
            )
        parent = path.resolve().parent
    else:
        parent = _nearest_existing(path.resolve().parent)
        if not parent.is_dir():
            raise OutputError(f"Cannot create {shown}: {parent} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"Cannot write to {parent}: permission denied.")
    try:  # the surest check: some folders (/proc, read-only mounts) refuse new entries whatever access() says
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".vlavad-check-"))
    except OSError as exc:
        raise OutputError(f"Cannot create {shown}: {parent} does not accept new folders ({exc.strerror}).") from None
    return path


@contextlib.contextmanager
def staged_folder(target: str | Path, kind: str, *, replace: bool = True) -> Iterator[Path]:
    """A fresh hidden folder beside `target` to build a `kind` folder in; on success it becomes
    `target` in one rename, on any error it is deleted and `target` is untouched.

    An existing `target` is replaced only if vlavad wrote it (checked again now, under a lock,
    since another process may have written there meanwhile) and `replace` is True; otherwise
    FileExistsError, so that callers choosing a free name can try the next one.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging, lock = _locked_staging(target)
    except OSError as exc:
        raise OutputError(f"Cannot create {target}: {exc.strerror} ({exc.filename}).") from None
    try:
        yield staging
        if not written_by_vlavad(staging, kind):
            raise RuntimeError(f"a {kind} folder must hold its marker file {MARKERS[kind][0]}")
        _put_in_place(staging, target, kind, replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        _release(lock)  # the folder is in place, or gone


def is_staging(name: str) -> bool:
    """True for the name of a folder `staged_folder` builds (`.<target>.<12 hex>.part`)."""
    return _STAGING.match(name) is not None


def remove_if_abandoned(staging: str | Path) -> bool:
    """Deletes a staging folder whose writer is gone (its lock is free: the process finished or
    died); a live one is left alone, however old. True when it was deleted."""
    try:
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False  # put in place or deleted meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        # Held while deleting: a writer that has just created this folder and waits for its lock
        # finds it deleted and starts another (`_locked_staging`).
        shutil.rmtree(staging, ignore_errors=True)
        return not os.path.lexists(staging)
    finally:
        os.close(fd)


def _locked_staging(target: Path) -> tuple[Path, int]:
    """A new staging folder beside `target` and the descriptor holding its lock."""
    while True:
        staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.part")
        staging.mkdir()
        fd = os.open(staging, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        info = os.fstat(fd)
        if info.st_nlink > 0:
            _HELD.add((info.st_dev, info.st_ino))
            return staging, fd
        os.close(fd)  # a cleaner deleted it between mkdir and lock: never fill a deleted folder


def _release(fd: int) -> None:
    info = os.fstat(fd)
    _HELD.discard((info.st_dev, info.st_ino))
    os.close(fd)  # closing releases the lock


def _put_in_place(staging: Path, target: Path, kind: str, replace: bool) -> None:
    with _lock(target):
        if not target.exists():
            os.rename(staging, target)
            return
        if not replace:
            raise FileExistsError(target)
        if not (target.is_dir() and not target.is_symlink() and (written_by_vlavad(target, kind) or not any(target.iterdir()))):
            raise OutputError(f"{target} is not a vlavad {kind} any more: it was left untouched, and nothing was written.")
        # Two renames, so that one complete folder is in place at every instant but the one
        # between them; the old one is deleted only once the new one is in place.
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
        os.rename(target, old)
        os.rename(staging, target)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """An exclusive lock on `target`'s parent folder, across threads and processes (a lock on the
    folder itself leaves no lock file behind in the user's folder). A parent that is a staging
    folder this process holds (a model saved inside a result being built) is locked already,
    and only its builder writes there."""
    info = os.stat(target.parent)
    if (info.st_dev, info.st_ino) in _HELD:
        yield
        return
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def file_version(path: str | Path) -> tuple[int, ...]:
    """What identifies one version of a file's content without reading it: device, inode, size,
    mtime and ctime (ns). The mtime can be set back by anyone who can write the file (`touch -d`,
    `os.utime`), so a same-size swap with the mtime restored would look unchanged; no file call
    sets the ctime (the kernel stamps it on every change, the utime call included), and a file
    replaced by a rename has a new inode."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


_DIGESTS: dict[tuple[str, tuple[int, ...]], str] = {}
_DIGESTS_LOCK = threading.Lock()
_MAX_DIGESTS = 256
# Kernel timestamps are coarse (a clock tick, up to 10 ms): a file changed again within the same
# tick as it was hashed keeps its ctime. A file changed this recently is hashed every time.
_SETTLED_NS = 2_000_000_000


def file_sha256(path: str | Path) -> str:
    """A file's sha256 (hex), remembered per `file_version`: hashing MiniLM's 90 MB on every load
    took 76 ms where remembering takes 2 us, and a swapped file is never taken for the one hashed
    before."""
    path = str(path)
    version = file_version(path)
    with _DIGESTS_LOCK:
        known = _DIGESTS.get((path, version))
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if file_version(path) == version and time.time_ns() - version[4] > _SETTLED_NS:  # unchanged while read, and settled
        with _DIGESTS_LOCK:
            if len(_DIGESTS) >= _MAX_DIGESTS:
                _DIGESTS.clear()
            _DIGESTS[(path, version)] = hexdigest
    return hexdigest


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask() sets it, which is not safe once threads run
