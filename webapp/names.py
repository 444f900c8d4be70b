"""What every part of the app's storage shares: its limits (operator settings), the names it
accepts for models, pools, runs and clips, its one-line refusal (`AppError`), and what it records
beside a saved model."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

from vlavad.core.errors import VlavadError
from vlavad.core.limits import APP_LIMITS, VideoLimits, from_environment
from vlavad.core.schema import Schema
from vlavad.io.content_key import content_key

BUNDLED_POOL = "motion (bundled)"

SHARED_SUFFIX = " (shared)"

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a plain file name, never a path

VISITOR_KEY = re.compile(r"[A-Za-z0-9_-]{43}")  # what `secrets.token_urlsafe(32)` makes


CLIP = re.compile(r"[0-9a-f]{16}\.[A-Za-z0-9]{1,8}")  # a normal clip kept for models: content key + suffix


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


def clips_of(model: Path) -> list[str]:
    """The normal clips a saved model's record names (none when it has no readable record)."""
    try:
        clips = json.loads((model / "app.json").read_text()).get("normal_clips", [])
    except (OSError, ValueError, AttributeError):
        return []
    return [c for c in clips if isinstance(c, str)] if isinstance(clips, list) else []
