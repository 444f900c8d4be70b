"""Retention: what the app deletes, when, so that its folder stays within its budget.

`Store.prune` runs at start-up, after each analysis or benchmark, and every
`VLAVAD_PRUNE_EVERY_S` seconds, and keeps the whole app folder within `VLAVAD_KEEP_GB`:
- What can be made again (results, runs, downloads, uploads, the stage cache) is deleted once
  `VLAVAD_KEEP_HOURS` old, and oldest first whenever the folder is over its budget.
- What visitors made (saved models with the clips they were fitted on, pools, annotations) is
  kept until its workspace has gone `VLAVAD_KEEP_DAYS` without a visit, then deleted with it.
  To keep that within the budget too, a save is refused with one line when it would take the
  visitor's saved work over `VLAVAD_WORKSPACE_MB`, or everyone's over half of `VLAVAD_KEEP_GB`.
- A folder being written is never deleted, however old: its writer holds a lock on it
  (`vlavad.core.fileio.staged_folder`) until it is in place; one whose process died is deleted.

Pruning deletes only what the app itself wrote: folders that carry its markers, in the places
it writes them.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import sys
import threading
from pathlib import Path

from vlavad.core.errors import VlavadError
from vlavad.core.fileio import is_staging, remove_if_abandoned, written_by_vlavad
from vlavad.core.schema import read_json_file
from webapp.names import CLIP, SAVED_PARTS, clips_of

OWNER = re.compile(r"[0-9a-f]{32}")  # a workspace folder's name
_REPLACED = re.compile(r"^\..+\.[0-9a-f]{12}\.old$")  # a replaced folder being deleted (`vlavad.core.fileio`)
_PART_FILE = re.compile(r"^\..+\.(tmp|part)$")  # a file being written under a temporary name
LEFTOVER_S = 3600  # a single file's write takes seconds: a temporary file this old was left by a killed one


class Retention:
    """The pruning half of `webapp.store.Store` (its folders, limits and clock are the store's)."""

    def start_pruning(self) -> threading.Thread:
        """Prunes now, then every `prune_every_s` seconds, in a daemon thread (uploads, downloads
        and the cache grow between analyses too), until `stop_pruning`."""

        def loop():
            while True:
                try:
                    self.prune()
                except Exception as exc:  # a failed prune must not end the timer; the next one retries
                    print(f"warning: pruning {self.root} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                if self._stop.wait(max(1.0, self.limits.prune_every_s)):
                    return

        thread = threading.Thread(target=loop, name="vlavad-prune", daemon=True)
        thread.start()
        return thread

    def stop_pruning(self) -> None:
        self._stop.set()

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Applies the retention policy (see the module's docstring); returns what it deleted."""
        now = self.clock() if now is None else now
        with self._pruning:
            removed = dict.fromkeys(("results", "runs", "outbox", "cache", "uploads", "clips", "workspaces", "leftovers"), 0)
            candidates = self._prune_workspaces(now, removed)
            self._prune_expired(now, removed)
            if self._clips_dirty:
                self._prune_clips(removed)
            total, saved = self._measure()
            budget = self.limits.keep_gb * 1e9
            if total > budget:
                # Oldest first among what can be made again: results and runs (each with the
                # downloads it published), downloads of their own, cache tables, uploads.
                owned = {self._outbox_of(folder) for _, folder, _ in candidates}
                candidates += [(_mtime(p), p, "outbox") for p in entries(self.outbox) if p not in owned]
                candidates += [(_mtime(p), p, "cache") for stage in entries(self.cache) for p in entries(stage)]
                candidates += [(_newest(p), p, "uploads") for p in entries(self.uploads)]
                for _, path, kind in sorted(candidates, key=lambda c: c[0]):
                    if total <= budget:
                        break
                    paths = [path, *([self._outbox_of(path)] if kind in ("results", "runs") else [])]
                    total -= _freed([p for p in paths if p])
                    self._remove(path, kind)
                    removed[kind] += 1
            with self._counting:
                self._saved = saved
                self._over_budget = total > budget
            return removed

    def _prune_workspaces(self, now: float, removed: dict[str, int]) -> list[tuple[float, Path, str]]:
        """Deletes leftovers of dead writes, expired results and runs, workspaces unvisited for
        `keep_days` and empty ones; returns the results and runs kept, as (time, folder, kind)."""
        kept = []
        for workspace in _scan(self.root / "workspaces"):
            if not OWNER.fullmatch(workspace.name) or not workspace.is_dir(follow_symlinks=False):
                continue
            parts = {p.name: p.path for p in _scan(workspace.path)}
            idle = now - _mtime(workspace.path)
            if idle > self.limits.keep_days * 86400 and not _has_live_staging(parts.values()):
                shutil.rmtree(workspace.path, ignore_errors=True)
                removed["workspaces"] += 1
                self._clips_dirty = True
                continue
            holds = len(parts.keys() - {"results", "runs", "models", "pools", "annotations"})  # something else: keep
            for kind, marker in (("results", "result"), ("runs", "run"), ("models", "model")):
                for entry in _scan(parts[kind]) if kind in parts else ():
                    folder = Path(entry.path)
                    if is_staging(entry.name):
                        gone = remove_if_abandoned(folder)
                        removed["leftovers"] += gone
                        holds += not gone
                    elif _REPLACED.match(entry.name):
                        shutil.rmtree(folder, ignore_errors=True)
                        removed["leftovers"] += 1
                    elif kind != "models" and entry.is_dir(follow_symlinks=False) and written_by_vlavad(folder, marker):
                        if now - _mtime(entry.path) > self.limits.keep_hours * 3600:
                            self._remove(folder, kind)
                            removed[kind] += 1
                        else:
                            kept.append((_mtime(entry.path), folder, kind))
                            holds += 1
                    else:
                        holds += 1  # a saved model, or something the app did not write
            for kind in ("pools", "annotations"):
                if kind in parts:
                    left, count = self._remove_part_files(parts[kind], now)
                    removed["leftovers"] += count
                    holds += left
            if not holds and idle > 3600 and _remove_if_empty(Path(workspace.path)):
                removed["workspaces"] += 1  # nothing in it: made by an earlier release for a mere visit, or all expired
        return kept

    def _prune_expired(self, now: float, removed: dict[str, int]) -> None:
        """Downloads, cache tables and Gradio's uploads older than `keep_hours`."""
        max_age = self.limits.keep_hours * 3600
        for folder in entries(self.outbox):
            if re.fullmatch(r"[0-9a-f]{32}", folder.name) and now - _mtime(folder) > max_age:
                self._remove(folder, "outbox")
                removed["outbox"] += 1
        for stage in entries(self.cache):
            for file in entries(stage):
                if now - _mtime(file) > max_age:
                    self._remove(file, "cache")
                    removed["cache"] += 1
        for entry in entries(self.uploads):
            if now - _newest(entry) > max_age:
                self._remove(entry, "uploads")
                removed["uploads"] += 1
        removed["leftovers"] += self._remove_part_files(self.root / "clips", now)[1]

    def _prune_clips(self, removed: dict[str, int]) -> None:
        """Deletes the kept clips that no saved model refers to any more."""
        with self._clips_lock(exclusive=True):
            referred = set()
            for folder in (self.root / "shared" / "models", *(os.path.join(w.path, "models") for w in _scan(self.root / "workspaces"))):
                for model in _scan(folder):
                    referred.update(clips_of(Path(model.path)))
            for clip in entries(self.root / "clips"):
                if CLIP.fullmatch(clip.name) and clip.name not in referred:
                    clip.unlink(missing_ok=True)
                    removed["clips"] += 1
            self._clips_dirty = False

    def _measure(self) -> tuple[int, int]:
        """(bytes in the whole folder, of which visitors' saved work), as `du -sb` counts: folders
        too, and a file with several names (downloads and kept clips are hard links) once, for
        the first part that holds it: saved work, then results, then the rest."""
        seen: set[tuple[int, int]] = set()
        saved = disk_usage(self.root / "clips", seen) + disk_usage(self.root / "shared", seen)
        total = saved + disk_usage(self.root, seen, top=True) + disk_usage(self.root / "workspaces", seen, top=True)
        for workspace in _scan(self.root / "workspaces"):
            parts = sorted(_scan(workspace.path), key=lambda p: p.name not in SAVED_PARTS)
            folder = disk_usage(workspace.path, seen, top=True)
            total += folder
            saved += folder if parts and parts[0].name in SAVED_PARTS else 0  # a workspace that holds saved work
            for part in parts:
                size = disk_usage(part.path, seen)
                total += size
                saved += size if part.name in SAVED_PARTS else 0
        for entry in _scan(self.root):
            if entry.name not in ("clips", "shared", "workspaces"):
                total += disk_usage(entry.path, seen)
        return total, saved

    def _outbox_of(self, folder: Path) -> Path | None:
        try:
            record = read_json_file(folder / "app.json", "result record") if (folder / "app.json").is_file() else {}
        except VlavadError:
            record = {}
        return self.outbox_for(record) if isinstance(record, dict) else None

    def _remove(self, path: Path, kind: str) -> None:
        """A result or run with the downloads it published (hard links to its files would keep
        their space in use), or any other prunable file or folder."""
        outbox = self._outbox_of(path) if kind in ("results", "runs") else None
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        if outbox:
            shutil.rmtree(outbox, ignore_errors=True)

    @staticmethod
    def _remove_part_files(folder: Path | str, now: float) -> tuple[int, int]:
        """Deletes the temporary files of writes killed before their rename; returns (entries
        left, files deleted)."""
        left = removed = 0
        for entry in _scan(folder):
            if _PART_FILE.match(entry.name) and entry.is_file(follow_symlinks=False) and now - _mtime(entry.path) > LEFTOVER_S:
                os.unlink(entry.path)
                removed += 1
            else:
                left += 1
        return left, removed


def entries(folder: Path) -> list[Path]:
    """What a folder holds (nothing when it is gone)."""
    return [Path(e.path) for e in _scan(folder)]


def _has_live_staging(parts) -> bool:
    """Whether a folder is being written in any of these workspace subfolders (dead writers'
    folders are deleted on the way)."""
    for part in parts:
        for entry in _scan(part):
            if is_staging(entry.name) and not remove_if_abandoned(entry.path) and os.path.lexists(entry.path):
                return True
    return False


def _remove_if_empty(folder: Path) -> bool:
    """Deletes `folder` if it holds only empty folders, bottom-up with rmdir, which refuses a
    folder that a request has just written into: nothing is ever lost."""
    for entry in _scan(folder):
        if not entry.is_dir(follow_symlinks=False) or not _remove_if_empty(Path(entry.path)):
            return False
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def _scan(folder: Path | str) -> list[os.DirEntry]:
    """A folder's entries; none when it does not exist (a workspace's parts are made on first write)."""
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _mtime(path: Path | str) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0


def _newest(path: Path) -> float:
    """The latest time of a folder and what it holds directly (Gradio touches a cached file it hands
    out again, not its folder)."""
    return max([_mtime(path), *(_mtime(e.path) for e in _scan(path))])


def disk_usage(path: Path | str, seen: set[tuple[int, int]], top: bool = False) -> int:
    """Bytes under `path`, itself included (only itself when `top`), folders too, as `du -sb`
    counts them: a file with several names once across the calls that share `seen`."""
    try:
        info = os.lstat(path)
    except OSError:
        return 0
    total = info.st_size
    stack = [path] if stat.S_ISDIR(info.st_mode) and not top else []
    while stack:
        for entry in _scan(stack.pop()):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # deleted meanwhile
            if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
                if (info.st_dev, info.st_ino) in seen:
                    continue
                seen.add((info.st_dev, info.st_ino))
            total += info.st_size
            if stat.S_ISDIR(info.st_mode):
                stack.append(entry.path)
    return total


def _freed(paths: list[Path]) -> int:
    """The bytes that deleting `paths` gives back: their folders, and their files that have no
    other name outside them."""
    names: dict[tuple[int, int], list] = {}
    for path in paths:
        stack = [os.fspath(path)]
        while stack:
            current = stack.pop()
            try:
                info = os.lstat(current)
            except OSError:
                continue
            names.setdefault((info.st_dev, info.st_ino), [info, 0])[1] += 1
            if stat.S_ISDIR(info.st_mode):
                stack.extend(e.path for e in _scan(current))
    return sum(info.st_size for info, count in names.values() if stat.S_ISDIR(info.st_mode) or count >= info.st_nlink)
