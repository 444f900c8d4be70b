"""What the web app keeps, who can see it, and for how long.

Everything lives under one folder (`VLAVAD_APP_DIR`, default `./.vlavad-app`), and nothing in it
is ever served by path: a download is copied to `outbox/<random>/` first, and only that copy is
handed to Gradio.

    workspaces/<owner>/      one per visitor; <owner> is a hash of the visitor's secret key,
        models/<name>/         which lives in their browser (Gradio BrowserState): nobody else
        pools/<name>.json      can list, open or overwrite what is in here, even knowing names
        annotations/<key>.json
        results/<id>/          analyses: kept `keep_hours` and within `keep_gb`, oldest first
        runs/<id>/             benchmark runs: the same
    shared/models/<name>/    models an operator shares with every visitor (read-only to them)
    clips/<content key>.mp4  normal clips that saved models were fitted on (never served)
    cache/                   the pipeline's stage cache (recomputable; pruned like results)
    outbox/<random>/         downloads handed to Gradio; pruned like results
    secret                   encrypts the visitor keys kept in browsers (created once, 0600)

Writes are atomic, folders are complete or absent (`vlavad.fileio`), and pruning deletes only
what the app itself wrote: folders that carry its markers, in the places it writes them.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from vlavad.errors import VlavadError
from vlavad.fileio import atomic_write_bytes, atomic_write_json, staged_folder, written_by_vlavad
from vlavad.limits import VideoLimits
from vlavad.model import FittedModel
from vlavad.prompts import Prompt, default_pool, load_pool, pool_to_json
from vlavad.schema import Schema, read_json_file, validate

BUNDLED_POOL = "motion (bundled)"
SHARED_SUFFIX = " (shared)"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a plain file name, never a path
_STAGING = re.compile(r"^\..+\.[0-9a-f]{12}\.(part|old)$")  # what `vlavad.fileio` leaves if killed


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

    A video's limits (`video`) are checked from its header before any work and again while it
    decodes (`vlavad.limits`): its size, its rate, its length, and its frame count, which bounds
    the work whatever the rate (18,000 frames: 10 minutes at 30 fps, 5 at 60).
    """

    max_upload_mb: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_UPLOAD_MB", 200))
    max_duration_s: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_DURATION_S", 600))
    min_side: int = field(default_factory=lambda: _env_float("VLAVAD_MIN_SIDE", 32))
    max_side: int = field(default_factory=lambda: _env_float("VLAVAD_MAX_SIDE", 4096))
    max_megapixels: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_MEGAPIXELS", 9))  # 4096x2160, the widest 4K
    max_aspect: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_ASPECT", 8))
    max_fps: float = field(default_factory=lambda: _env_float("VLAVAD_MAX_FPS", 120))
    max_frames: int = field(default_factory=lambda: _env_float("VLAVAD_MAX_FRAMES", 18_000))
    max_queue: int = field(default_factory=lambda: _env_float("VLAVAD_QUEUE_SIZE", 64))  # requests waiting; more get "queue full"
    max_intervals: int = 500  # annotated intervals per video
    max_import_kb: float = 512  # an annotations file to import
    keep_hours: float = field(default_factory=lambda: _env_float("VLAVAD_KEEP_HOURS", 24))
    keep_gb: float = field(default_factory=lambda: _env_float("VLAVAD_KEEP_GB", 2))

    _ENV: ClassVar[dict[str, str]] = {
        "max_duration_s": "VLAVAD_MAX_DURATION_S",
        "min_side": "VLAVAD_MIN_SIDE",
        "max_side": "VLAVAD_MAX_SIDE",
        "max_megapixels": "VLAVAD_MAX_MEGAPIXELS",
        "max_aspect": "VLAVAD_MAX_ASPECT",
        "max_fps": "VLAVAD_MAX_FPS",
        "max_frames": "VLAVAD_MAX_FRAMES",
        "max_queue": "VLAVAD_QUEUE_SIZE",
    }
    _WHOLE: ClassVar[tuple[str, ...]] = ("min_side", "max_side", "max_frames", "max_queue")

    def __post_init__(self) -> None:
        """Refuses an operator's setting that bounds nothing (0, negative, nan, inf) in one line."""
        for name, env in self._ENV.items():
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise AppError(f"{env} must be a positive number, not {value!r}")
            if name in self._WHOLE:
                if value != int(value):
                    raise AppError(f"{env} must be a whole number, not {value!r}")
                object.__setattr__(self, name, int(value))
        if self.min_side > self.max_side:
            raise AppError(f"VLAVAD_MIN_SIDE ({self.min_side}) is above VLAVAD_MAX_SIDE ({self.max_side})")
        if self.max_aspect < 1:
            raise AppError(f"VLAVAD_MAX_ASPECT must be at least 1 (a square frame), not {self.max_aspect!r}")

    @property
    def video(self) -> VideoLimits:
        """What every video a visitor sends, and every pass over it, must keep within."""
        return VideoLimits(
            self.min_side, self.max_side, self.max_megapixels, self.max_aspect, self.max_fps, self.max_frames, self.max_duration_s, "the app"
        )


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


class Store:
    """The app's folder: workspaces, shared models, clips, cache, outbox; and its pruning."""

    def __init__(self, root: str | Path | None = None, limits: Limits | None = None):
        self.root = Path(root or os.environ.get("VLAVAD_APP_DIR", ".vlavad-app")).resolve()
        self.limits = limits or Limits()
        for sub in ("workspaces", "shared/models", "clips", "cache", "outbox"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.cache = self.root / "cache"
        self.outbox = self.root / "outbox"

    def secret(self) -> str:
        """The key that encrypts visitor keys in browsers; the same across restarts, so that a
        visitor finds their workspace again after the app restarts."""
        path = self.root / "secret"
        if not path.exists():
            atomic_write_bytes(path, secrets.token_hex(32).encode())
            path.chmod(0o600)
        return path.read_text().strip()

    @staticmethod
    def new_visitor_key() -> str:
        return secrets.token_urlsafe(32)

    def workspace(self, visitor_key: str) -> Workspace:
        if not visitor_key or len(visitor_key) < 32:
            raise AppError("This browser session has no workspace key yet: reload the page.")
        owner = hashlib.sha256(f"vlavad-workspace:{visitor_key}".encode()).hexdigest()[:32]
        return Workspace(self, self.root / "workspaces" / owner)

    def shared_model_names(self) -> list[str]:
        folder = self.root / "shared" / "models"
        return sorted(p.name for p in folder.iterdir() if NAME.match(p.name) and written_by_vlavad(p, "model"))

    # --- clips: the normal videos saved models refer to --------------------------------------

    def keep_clip(self, clip: Path, key: str) -> str:
        """Copies a normal clip to clips/<key><suffix> (the same content always lands on the same
        name, so concurrent requests race harmlessly); returns its stored name."""
        name = f"{key}{clip.suffix.lower() or '.mp4'}"
        target = self.root / "clips" / name
        if not target.exists():
            atomic_write_bytes(target, clip.read_bytes())
        return name

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
        return self.outbox / token if re.fullmatch(r"[0-9a-f]{32}", token) else None

    # --- retention -----------------------------------------------------------------------------

    def prune(self, now: float | None = None) -> dict[str, int]:
        """Deletes what has outlived `keep_hours`, then the oldest results and runs until they fit
        in `keep_gb`; also stale outbox folders, cache entries and leftovers of killed writes.
        Saved models, pools and annotations are the visitors' work and are never pruned."""
        now = time.time() if now is None else now
        max_age = self.limits.keep_hours * 3600
        removed = {"results": 0, "outbox": 0, "cache": 0, "leftovers": 0}
        kept: list[tuple[float, int, Path]] = []
        for kind, marker in (("results", "result"), ("runs", "run")):
            for folder in (self.root / "workspaces").glob(f"*/{kind}/*"):
                if _STAGING.match(folder.name) and now - _mtime(folder) > 3600:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed["leftovers"] += 1
                elif folder.is_dir() and written_by_vlavad(folder, marker):
                    if now - _mtime(folder) > max_age:
                        self._remove_result(folder)
                        removed["results"] += 1
                    else:
                        kept.append((_mtime(folder), _size(folder), folder))
        total = sum(size for _, size, _ in kept)
        for _, size, folder in sorted(kept):  # oldest first
            if total <= self.limits.keep_gb * 1e9:
                break
            self._remove_result(folder)
            total -= size
            removed["results"] += 1
        for folder in self.outbox.iterdir():
            if re.fullmatch(r"[0-9a-f]{32}", folder.name) and now - _mtime(folder) > max_age:
                shutil.rmtree(folder, ignore_errors=True)
                removed["outbox"] += 1
        for file in self.cache.glob("*/*.npz"):
            if now - _mtime(file) > max_age:
                file.unlink(missing_ok=True)
                removed["cache"] += 1
        return removed

    def _remove_result(self, folder: Path) -> None:
        """A result or run folder, with the downloads it published (hard links to its files
        would otherwise keep their space in use)."""
        try:
            record = read_json_file(folder / "app.json", "result record") if (folder / "app.json").is_file() else {}
        except VlavadError:
            record = {}
        outbox = self.outbox_for(record) if isinstance(record, dict) else None
        shutil.rmtree(folder, ignore_errors=True)
        if outbox:
            shutil.rmtree(outbox, ignore_errors=True)


class Workspace:
    """One visitor's models, pools, annotations, results and runs."""

    def __init__(self, store: Store, root: Path):
        self.store, self.root = store, root
        for sub in ("models", "pools", "annotations", "results", "runs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    # --- models --------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        """Own models, then benchmark runs' models, then the operator's shared ones."""
        own = sorted(p.name for p in (self.root / "models").iterdir() if NAME.match(p.name) and written_by_vlavad(p, "model"))
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

    def save_model(self, model: FittedModel, base: str, meta: ModelMeta, *, new_version: bool = False) -> str:
        """Saves under `base`, or `base-v2`, `base-v3`, ...: the first name free at the moment of
        the rename, so two saves racing for one name both succeed, under different names, and a
        model derived from `base` (`new_version`) never replaces it."""
        base = re.sub(r"-v\d+$", "", check_name(base, "model"))
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
        return [BUNDLED_POOL, *sorted(p.stem for p in (self.root / "pools").glob("*.json") if NAME.match(p.stem))]

    def load_pool(self, name: str | None) -> list[Prompt]:
        if not name or name == BUNDLED_POOL:
            return default_pool("motion")
        path = self.root / "pools" / f"{check_name(name, 'pool')}.json"
        if not path.is_file():
            raise AppError(f"No saved prompt pool called {name!r}.")
        return load_pool(path)

    def save_pool(self, name: str, prompts: list[Prompt]) -> str:
        name = check_name(name, "pool")
        if name == BUNDLED_POOL:
            raise AppError("That name belongs to the bundled pool; choose another.")
        atomic_write_bytes(self.root / "pools" / f"{name}.json", pool_to_json(prompts, note="saved from the web app").encode())
        return name

    # --- results and runs ----------------------------------------------------------------------

    def new_result_id(self, stem: str) -> str:
        """A timestamp for humans and a random part, so that no two requests share a folder."""
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)[:30].strip("-") or "video"
        return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}-{slug}"

    def result_staging(self, result_id: str):
        """A complete-or-absent result folder (`vlavad.fileio.staged_folder`)."""
        return staged_folder(self.root / "results" / check_name(result_id, "result id"), "result", replace=False)

    def result_dir(self, result_id: str) -> Path:
        folder = self.root / "results" / check_name(result_id, "result id")
        if not written_by_vlavad(folder, "result"):
            raise AppError(
                f"No analysis result with id {result_id!r} in this browser's workspace (results are kept {self.store.limits.keep_hours:g} h)."
            )
        return folder

    def result_ids(self) -> list[str]:
        return sorted((p.name for p in (self.root / "results").iterdir() if NAME.match(p.name) and written_by_vlavad(p, "result")), reverse=True)

    def run_names(self) -> list[str]:
        return sorted((p.name for p in (self.root / "runs").iterdir() if NAME.match(p.name) and written_by_vlavad(p, "run")), reverse=True)

    def run_dir(self, name: str) -> Path:
        return self.root / "runs" / check_name(name, "run")

    # --- annotations ---------------------------------------------------------------------------

    def annotations_path(self, content_key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16}", content_key or ""):
            raise AppError("Invalid video key.")
        return self.root / "annotations" / f"{content_key}.json"

    def save_annotations(self, content_key: str, data: dict) -> Path:
        path = self.annotations_path(content_key)
        atomic_write_json(path, data)
        return path


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
