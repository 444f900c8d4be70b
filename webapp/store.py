"""What the web app keeps, who can see it, and for how long.

Everything lives under one folder (`VLAVAD_APP_DIR`, default `./.vlavad-app`), and nothing in it
is ever served by path: a download is copied to `outbox/<random>/` first, and only that copy is
handed to Gradio.

    workspaces/<owner>/      one per visitor, made by their first save; <owner> is a hash of the
        models/<name>/         visitor's key, which lives in their browser (Gradio BrowserState):
        pools/<name>.json      nobody else can list, open or overwrite what is in here, even
        annotations/<key>.json knowing names
        results/<id>/          analyses, with the normal clips they were fitted on (normal/)
        runs/<id>/             benchmark runs
    shared/models/<name>/    models an operator shares with every visitor (read-only to them)
    clips/<content key>.mp4  normal clips that saved models were fitted on (never served)
    cache/                   the pipeline's stage cache
    outbox/<random>/         downloads handed to Gradio
    gradio/                  Gradio's uploads and its copies of what handlers return (the app
                             sets GRADIO_TEMP_DIR here, so that they count and are pruned too)
    browser-state-secret     what BrowserState encrypts visitor keys with in browsers (public)

Retention (`Store.prune`, at start-up, after each analysis or benchmark, and every
`VLAVAD_PRUNE_EVERY_S` seconds) keeps the whole folder within `VLAVAD_KEEP_GB`:
- What can be made again (results, runs, downloads, uploads, the stage cache) is deleted once
  `VLAVAD_KEEP_HOURS` old, and oldest first whenever the folder is over its budget.
- What visitors made (saved models with the clips they were fitted on, pools, annotations) is
  kept until its workspace has gone `VLAVAD_KEEP_DAYS` without a visit, then deleted with it.
  To keep that within the budget too, a save is refused with one line when it would take the
  visitor's saved work over `VLAVAD_WORKSPACE_MB`, or everyone's over half of `VLAVAD_KEEP_GB`.
- A folder being written is never deleted, however old: its writer holds a lock on it
  (`vlavad.core.fileio.staged_folder`) until it is in place; one whose process died is deleted.

Writes are atomic, folders are complete or absent (`vlavad.core.fileio`), and pruning deletes only
what the app itself wrote: folders that carry its markers, in the places it writes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from vlavad.core.errors import VlavadError
from vlavad.core.fileio import atomic_write_bytes, is_staging, remove_if_abandoned, staged_folder, written_by_vlavad
from vlavad.core.limits import APP_LIMITS, VideoLimits, from_environment
from vlavad.core.schema import Schema, read_json_file, validate
from vlavad.describe.prompts import Prompt, bundled_pool, load_pool, pool_to_json
from vlavad.io.video import content_key
from vlavad.pipeline.model import FittedModel

BUNDLED_POOL = "motion (bundled)"
SHARED_SUFFIX = " (shared)"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a plain file name, never a path
VISITOR_KEY = re.compile(r"[A-Za-z0-9_-]{43}")  # what `secrets.token_urlsafe(32)` makes
OWNER = re.compile(r"[0-9a-f]{32}")  # a workspace folder's name
CLIP = re.compile(r"[0-9a-f]{16}\.[A-Za-z0-9]{1,8}")  # a normal clip kept for models: content key + suffix
_REPLACED = re.compile(r"^\..+\.[0-9a-f]{12}\.old$")  # a replaced folder being deleted (`vlavad.core.fileio`)
_PART_FILE = re.compile(r"^\..+\.(tmp|part)$")  # a file being written under a temporary name
LEFTOVER_S = 3600  # a single file's write takes seconds: a temporary file this old was left by a killed one
SAVED_SHARE = 0.5  # of `keep_gb`, what visitors' saved work may take: the rest is for analyses
SAVED_PARTS = ("annotations", "models", "pools")  # a workspace's saved work (the rest is recomputable)
FOLDER_BYTES = 4096  # what a new folder takes (ext4, xfs): a visitor's many small saves count it too


class AppError(VlavadError):
    """A request the app refuses, in one line."""


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        raise AppError(f"{name} must be a number, not {os.environ[name]!r}") from None


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; an operator can change each with an environment variable.

    A video's limits (`video`, `vlavad.core.limits.APP_LIMITS` unless an operator changed them) are
    checked from its header before any work and again while it decodes: its size, its rate, its
    length, and its frame count, which bounds the work whatever the rate.
    """

    video: VideoLimits = field(default_factory=lambda: from_environment(APP_LIMITS))
    max_upload_mb: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_UPLOAD_MB", 200))
    max_queue: int = field(default_factory=lambda: _env_float("VLAVAD_QUEUE_SIZE", 64))  # requests waiting; more get "queue full"
    max_intervals: int = 500  # annotated intervals per video
    max_import_kb: float = 512  # an annotations file to import
    keep_hours: float = field(default_factory=lambda: _env_float("VLAVAD_KEEP_HOURS", 24))
    keep_gb: float = field(default_factory=lambda: _env_float("VLAVAD_KEEP_GB", 2))
    keep_days: float = field(default_factory=lambda: _env_float("VLAVAD_KEEP_DAYS", 30))  # a workspace without a visit
    workspace_mb: float = field(default_factory=lambda: _env_float("VLAVAD_WORKSPACE_MB", 200))  # one visitor's saved work
    prune_every_s: float = field(default_factory=lambda: _env_float("VLAVAD_PRUNE_EVERY_S", 60))

    _ENV: ClassVar[dict[str, str]] = {
        "max_upload_mb": "VLAVAD_MAX_UPLOAD_MB",
        "max_queue": "VLAVAD_QUEUE_SIZE",
        "keep_hours": "VLAVAD_KEEP_HOURS",
        "keep_gb": "VLAVAD_KEEP_GB",
        "keep_days": "VLAVAD_KEEP_DAYS",
        "workspace_mb": "VLAVAD_WORKSPACE_MB",
        "prune_every_s": "VLAVAD_PRUNE_EVERY_S",
    }

    def __post_init__(self) -> None:
        """Refuses an operator's setting that bounds nothing (0, negative, nan, inf) in one line."""
        for name, env in self._ENV.items():
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise AppError(f"{env} must be a positive number, not {value!r}")
        if self.max_queue != int(self.max_queue):
            raise AppError(f"VLAVAD_QUEUE_SIZE must be a whole number, not {self.max_queue!r}")
        object.__setattr__(self, "max_queue", int(self.max_queue))


def check_name(name: str, what: str) -> str:
    """A model, pool, run or result name: letters, digits, `_ . -`, no path parts."""
    name = (name or "").strip()
    if not NAME.match(name) or ".." in name:
        raise AppError(f"Invalid {what} name {name[:40]!r}: use letters, digits, '_', '-' and '.', at most 64 characters.")
    return name


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelMeta(Schema):
    """What the app records beside a saved model: never an absolute path."""

    normal_clips: list[str] = []  # content keys of the clips in clips/
    created: str = ""
    pool: str = ""
    source: str = ""  # "analysis", "benchmark <dataset>", "feedback on <model>"


def clip_name(clip: Path) -> str:
    """The name a normal clip is kept under: its content key, so the same video is kept once."""
    return f"{content_key(clip)}{clip.suffix.lower() or '.mp4'}"


def link_or_copy(source: Path, target: Path) -> None:
    """`target` as a hard link to `source` (a second name, not a second copy, of a video that may
    weigh hundreds of MB), or an atomic copy across file systems. An existing `target` is kept:
    names are content keys, so it holds the same bytes."""
    if target.exists():
        return
    try:
        os.link(source, target)
    except FileExistsError:
        pass
    except OSError:
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)


class Store:
    """The app's folder: workspaces, shared models, clips, cache, outbox, uploads; and its pruning.

    `clock` gives the time that pruning ages things by, and that visits are recorded at (tests
    pass a fake one to simulate days in seconds).
    """

    def __init__(self, root: str | Path | None = None, limits: Limits | None = None, clock: Callable[[], float] = time.time):
        self.root = Path(root or os.environ.get("VLAVAD_APP_DIR", ".vlavad-app")).resolve()
        self.limits = limits or Limits()
        self.clock = clock
        for sub in ("workspaces", "shared/models", "clips", "cache", "outbox", "gradio"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.cache = self.root / "cache"
        self.outbox = self.root / "outbox"
        self.uploads = self.root / "gradio"
        self._pruning = threading.Lock()  # one prune at a time (the timer's, a request's)
        self._counting = threading.Lock()  # saves check and add to `_saved` one at a time
        self._saved: int | None = None  # bytes of saved work, measured by the last prune, plus saves since
        self._over_budget = False  # the last prune could not bring the folder within keep_gb
        self._clips_dirty = True  # a clip may have lost its last model since the last clip sweep
        self._stop = threading.Event()  # ends the pruning timer

    def browser_state_secret(self) -> str:
        """The key gr.BrowserState encrypts visitor keys with, in browsers. The browser does the
        encryption, so Gradio publishes it in /config: it is a public value, used for nothing
        else. It stays the same across restarts, so that a browser can read back what it stored
        and the visitor finds their workspace again."""
        path = self.root / "browser-state-secret"
        legacy = self.root / "secret"  # its name in earlier releases: kept, or every visitor's key would be lost
        if legacy.is_file() and not path.exists():
            os.replace(legacy, path)
        if not path.exists():
            atomic_write_bytes(path, secrets.token_hex(32).encode())
        return path.read_text().strip()

    @staticmethod
    def new_visitor_key() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def is_visitor_key(value) -> bool:
        """True for a key `new_visitor_key` could have made: a string of 43 URL-safe characters."""
        return isinstance(value, str) and VISITOR_KEY.fullmatch(value) is not None

    def workspace(self, visitor_key: str) -> Workspace:
        """The workspace of a valid visitor key. Its folder is made by its first save, so a call
        that only reads (a page load, a list) leaves nothing on disk."""
        if visitor_key is None or visitor_key == "":
            raise AppError("This browser session has no workspace key yet: reload the page.")
        if not self.is_visitor_key(visitor_key):
            raise AppError("This browser session's workspace key is not one this app gives out: reload the page.")
        owner = hashlib.sha256(f"vlavad-workspace:{visitor_key}".encode()).hexdigest()[:32]
        workspace = Workspace(self, self.root / "workspaces" / owner)
        workspace.visited()
        return workspace

    def shared_model_names(self) -> list[str]:
        folder = self.root / "shared" / "models"
        return sorted(p.name for p in folder.iterdir() if NAME.match(p.name) and written_by_vlavad(p, "model"))

    # --- clips: the normal videos saved models refer to --------------------------------------

    @contextlib.contextmanager
    def _clips_lock(self, exclusive: bool) -> Iterator[None]:
        """Saves hold it shared from keeping their clips until their model is in place; the clip
        sweep holds it alone, so it never sees a clip whose model is not there yet."""
        with open(self.root / "clips" / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield

    def clip_path(self, name: str) -> Path:
        path = self.root / "clips" / check_name(name, "clip")
        if not path.is_file():
            raise AppError("A normal clip this model was fitted on is no longer kept; fit the model again.")
        return path

    # --- downloads -----------------------------------------------------------------------------

    def publish(self, files: dict[str, Path]) -> list[str]:
        """Copies files for download to a fresh unguessable folder; returns their paths.
        `files` maps the download name (what the user's browser saves) to the source."""
        folder = self.outbox / secrets.token_hex(16)
        folder.mkdir()
        out = []
        for name, source in files.items():
            target = folder / check_name(name, "download")
            try:
                os.link(source, target)  # no copy where the file system allows
            except OSError:
                shutil.copyfile(source, target)
            out.append(str(target))
        return out

    def outbox_for(self, record: dict) -> Path | None:
        """The outbox folder a result recorded (`"outbox"` in its app.json), if any."""
        token = record.get("outbox", "")
        return self.outbox / token if isinstance(token, str) and re.fullmatch(r"[0-9a-f]{32}", token) else None

    # --- room for saves ------------------------------------------------------------------------

    def reserve(self, workspace: Workspace, nbytes: int, what: str, folders: list[Path]) -> None:
        """Refuses, in one line, a save of `nbytes` into `folders` (those missing are made, and
        count) that would take the visitor's saved work over `workspace_mb`, or everyone's over
        its share of `keep_gb`; else counts it."""
        nbytes += FOLDER_BYTES * sum(not folder.is_dir() for folder in {workspace.root, *folders})
        quota = self.limits.workspace_mb * 1e6
        used = workspace.saved_bytes()
        if used + nbytes > quota:
            raise AppError(
                f"Cannot save this {what}: your saved models, pools and annotations would take {(used + nbytes) / 1e6:.1f} MB, "
                f"and each visitor may keep {quota / 1e6:g} MB on this server."
            )
        share = SAVED_SHARE * self.limits.keep_gb * 1e9
        with self._counting:
            if self._saved is None:
                self._saved = self._measure()[1]
            if self._over_budget or self._saved + nbytes > share:
                raise AppError(
                    f"Cannot save this {what}: storage is full on this server (saved work may take {share / 1e9:g} GB of its "
                    f"{self.limits.keep_gb:g} GB). Analyses still run; their results are kept {self.limits.keep_hours:g} h."
                )
            self._saved += nbytes

    # --- retention -----------------------------------------------------------------------------

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
                candidates += [(_mtime(p), p, "outbox") for p in self._entries(self.outbox) if p not in owned]
                candidates += [(_mtime(p), p, "cache") for stage in self._entries(self.cache) for p in self._entries(stage)]
                candidates += [(_newest(p), p, "uploads") for p in self._entries(self.uploads)]
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
        for folder in self._entries(self.outbox):
            if re.fullmatch(r"[0-9a-f]{32}", folder.name) and now - _mtime(folder) > max_age:
                self._remove(folder, "outbox")
                removed["outbox"] += 1
        for stage in self._entries(self.cache):
            for file in self._entries(stage):
                if now - _mtime(file) > max_age:
                    self._remove(file, "cache")
                    removed["cache"] += 1
        for entry in self._entries(self.uploads):
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
                    referred.update(_clips_of(Path(model.path)))
            for clip in self._entries(self.root / "clips"):
                if CLIP.fullmatch(clip.name) and clip.name not in referred:
                    clip.unlink(missing_ok=True)
                    removed["clips"] += 1
            self._clips_dirty = False

    def _measure(self) -> tuple[int, int]:
        """(bytes in the whole folder, of which visitors' saved work), as `du -sb` counts: folders
        too, and a file with several names (downloads and kept clips are hard links) once, for
        the first part that holds it: saved work, then results, then the rest."""
        seen: set[tuple[int, int]] = set()
        saved = _usage(self.root / "clips", seen) + _usage(self.root / "shared", seen)
        total = saved + _usage(self.root, seen, top=True) + _usage(self.root / "workspaces", seen, top=True)
        for workspace in _scan(self.root / "workspaces"):
            parts = sorted(_scan(workspace.path), key=lambda p: p.name not in SAVED_PARTS)
            folder = _usage(workspace.path, seen, top=True)
            total += folder
            saved += folder if parts and parts[0].name in SAVED_PARTS else 0  # a workspace that holds saved work
            for part in parts:
                size = _usage(part.path, seen)
                total += size
                saved += size if part.name in SAVED_PARTS else 0
        for entry in _scan(self.root):
            if entry.name not in ("clips", "shared", "workspaces"):
                total += _usage(entry.path, seen)
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

    @staticmethod
    def _entries(folder: Path) -> list[Path]:
        return [Path(e.path) for e in _scan(folder)]


class Workspace:
    """One visitor's models, pools, annotations, results and runs. Its folders are made by the
    first write that needs them: reading an absent workspace finds it empty."""

    def __init__(self, store: Store, root: Path):
        self.store, self.root = store, root

    def visited(self) -> None:
        """Records a visit (the folder's time), which keeps the workspace `keep_days` longer."""
        now = self.store.clock()
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.root, (now, now))

    def _part(self, name: str) -> Path:
        """A subfolder to write into, made if needed."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _listed(self, name: str) -> list[Path]:
        return Store._entries(self.root / name)

    def saved_bytes(self) -> int:
        """What this visitor's saved work takes: models with the clips they refer to, pools, annotations."""
        seen: set[tuple[int, int]] = set()
        total = sum(_usage(self.root / part, seen) for part in SAVED_PARTS)
        clips = {name for model in self._listed("models") for name in _clips_of(model)}
        return total + sum(_usage(self.store.root / "clips" / name, seen) for name in clips)

    # --- models --------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Own models, then benchmark runs' models, then the operator's shared ones."""
        own = sorted(p.name for p in self._listed("models") if NAME.match(p.name) and written_by_vlavad(p, "model"))
        runs = [f"run:{name}" for name in self.run_names() if (self.root / "runs" / name / "model" / "model.json").is_file()]
        return own + runs + [name + SHARED_SUFFIX for name in self.store.shared_model_names()]

    def model_path(self, name: str) -> Path:
        name = (name or "").strip()
        if name.endswith(SHARED_SUFFIX):
            path = self.store.root / "shared" / "models" / check_name(name[: -len(SHARED_SUFFIX)], "model")
        elif name.startswith("run:"):
            path = self.root / "runs" / check_name(name[4:], "run") / "model"
        else:
            path = self.root / "models" / check_name(name, "model")
        if not written_by_vlavad(path, "model"):
            raise AppError(f"No saved model called {name!r}.")
        return path

    def load_model(self, name: str) -> FittedModel:
        return FittedModel.load(self.model_path(name))

    def model_meta(self, name: str) -> ModelMeta:
        path = self.model_path(name) / "app.json"
        return validate(ModelMeta, read_json_file(path, "model record"), "model record") if path.is_file() else ModelMeta()

    def normal_videos(self, name: str) -> list[Path]:
        return [self.store.clip_path(clip) for clip in self.model_meta(name).normal_clips]

    def save_model(self, model: FittedModel, base: str, meta: ModelMeta, *, new_version: bool = False, clips_from: Path | None = None) -> str:
        """Saves under `base`, or `base-v2`, `base-v3`, ...: the first name free at the moment of
        the rename, so two saves racing for one name both succeed, under different names, and a
        model derived from `base` (`new_version`) never replaces it.

        The normal clips `meta` names are kept in clips/ with it: those not kept yet are taken
        from `clips_from` (an analysis's own copies)."""
        base = re.sub(r"-v\d+$", "", check_name(base, "model"))
        clips = self.store.root / "clips"
        with self.store._clips_lock(exclusive=False):
            new = {}
            for name in meta.normal_clips:
                if not CLIP.fullmatch(name):
                    raise AppError(f"Invalid normal clip name {name[:40]!r} in the model's record.")
                if not (clips / name).is_file():
                    source = (clips_from / name) if clips_from else None
                    if source is None or not source.is_file():
                        raise AppError("A normal clip this model was fitted on is no longer kept; fit the model again.")
                    new[name] = source
            nbytes = _model_bytes(model, meta) + sum(p.stat().st_size for p in new.values()) + FOLDER_BYTES  # and its own folder
            self.store.reserve(self, nbytes, "model", [self.root / "models"])
            self.store._clips_dirty = True  # if the save fails below, its clips are swept
            for name, source in new.items():
                link_or_copy(source, clips / name)
            for n in range(1 if not new_version else 2, 1000):
                name = base if n == 1 else f"{base}-v{n}"
                if len(name) > 64 or (self.root / "models" / name).exists():
                    continue
                try:
                    model.save(self.root / "models" / name, replace=False, extra={"app.json": meta.model_dump()})
                    return name
                except FileExistsError:
                    continue  # taken between the check and the rename: try the next number
        raise AppError(f"Too many versions of model {base!r}; choose another name.")

    # --- prompt pools --------------------------------------------------------------------------

    def pool_names(self) -> list[str]:
        """The bundled pool first, then this visitor's saved versions."""
        return [BUNDLED_POOL, *sorted(p.stem for p in self._listed("pools") if p.suffix == ".json" and NAME.match(p.stem))]

    def load_pool(self, name: str | None) -> list[Prompt]:
        if not name or name == BUNDLED_POOL:
            return bundled_pool("motion")
        path = self.root / "pools" / f"{check_name(name, 'pool')}.json"
        if not path.is_file():
            raise AppError(f"No saved prompt pool called {name!r}.")
        return load_pool(path)

    def save_pool(self, name: str, prompts: list[Prompt]) -> str:
        name = check_name(name, "pool")
        if name == BUNDLED_POOL:
            raise AppError("That name belongs to the bundled pool; choose another.")
        data = pool_to_json(prompts, note="saved from the web app").encode()
        self.store.reserve(self, len(data), "pool", [self.root / "pools"])
        atomic_write_bytes(self._part("pools") / f"{name}.json", data)
        return name

    # --- results and runs ----------------------------------------------------------------------

    def new_result_id(self, stem: str) -> str:
        """A timestamp for humans and a random part, so that no two requests share a folder."""
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)[:30].strip("-") or "video"
        return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}-{slug}"

    def result_staging(self, result_id: str):
        """A complete-or-absent result folder (`vlavad.core.fileio.staged_folder`), locked while it is
        built so that pruning leaves it alone."""
        return staged_folder(self.root / "results" / check_name(result_id, "result id"), "result", replace=False)

    def result_dir(self, result_id: str) -> Path:
        folder = self.root / "results" / check_name(result_id, "result id")
        if not written_by_vlavad(folder, "result"):
            raise AppError(
                f"No analysis result with id {result_id!r} in this browser's workspace (results are kept {self.store.limits.keep_hours:g} h)."
            )
        return folder

    def result_ids(self) -> list[str]:
        return sorted((p.name for p in self._listed("results") if NAME.match(p.name) and written_by_vlavad(p, "result")), reverse=True)

    def run_names(self) -> list[str]:
        return sorted((p.name for p in self._listed("runs") if NAME.match(p.name) and written_by_vlavad(p, "run")), reverse=True)

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / check_name(name, "run")

    # --- annotations ---------------------------------------------------------------------------

    def annotations_path(self, content_key: str) -> Path:
        if not isinstance(content_key, str) or not re.fullmatch(r"[0-9a-f]{16}", content_key):
            raise AppError("Invalid video key.")
        return self.root / "annotations" / f"{content_key}.json"

    def save_annotations(self, content_key: str, data: dict) -> Path:
        path = self.annotations_path(content_key)
        text = json.dumps(data, indent=1).encode()
        self.store.reserve(self, len(text), "annotations", [self.root / "annotations"])
        atomic_write_bytes(self._part("annotations") / path.name, text)
        return path


def _model_bytes(model: FittedModel, meta: ModelMeta) -> int:
    """About what `model.save` writes: its JSON files and its predictor's weights."""
    weights = model.temporal.weights().values() if model.temporal else ()
    return len(json.dumps(model.to_json(), indent=1)) + len(json.dumps(meta.model_dump(), indent=1)) + sum(w.nbytes for w in weights)


def _clips_of(model: Path) -> list[str]:
    """The normal clips a saved model's record names (none when it has no readable record)."""
    try:
        clips = json.loads((model / "app.json").read_text()).get("normal_clips", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [c for c in clips if isinstance(c, str)] if isinstance(clips, list) else []


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


def _usage(path: Path | str, seen: set[tuple[int, int]], top: bool = False) -> int:
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
