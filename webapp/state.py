"""Where the web app keeps its state, and the checks on every name a user can send.

Everything the app writes lives under one folder (`VLAVAD_APP_DIR`, default `./.vlavad-app`):

    models/<name>/          fitted models (`FittedModel.save`), models/<name>.json: their normal videos
    normal/<key>.mp4        normal clips the models were fitted on, named by content (shared, immutable)
    results/<id>/           one folder per analysis request (unguessable id: results are per user)
    runs/<stamp>-<ds>-<p>/  benchmark runs (`save_benchmark`)
    pools/<name>.json       prompt pool versions
    annotations/<key>.json  a user's labels for a video, keyed by the video's content
    cache/                  the pipeline's stage cache

Each JSON file is written atomically, so a crash or two concurrent requests never leave half a file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import gradio as gr

from vlavad.cache import atomic_write_text
from vlavad.datasets import list_datasets
from vlavad.errors import VlavadError
from vlavad.prompts import Prompt, default_pool, load_pool

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_VIDEO = REPO / "assets" / "examples" / "plaza.mp4"
EXAMPLE_LABELS = REPO / "assets" / "examples" / "plaza.labels.json"

BUNDLED_POOL = "motion (bundled)"

# Names of models, pools and results: a plain file name, never a path.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Limits:
    """Upload limits; environment variables let an operator raise them."""

    max_upload_mb: float = float(os.environ.get("VLAVAD_MAX_UPLOAD_MB", 200))
    max_duration_s: float = float(os.environ.get("VLAVAD_MAX_DURATION_S", 600))


class AppDir:
    """The app's folder and the few operations on it that every tab shares."""

    SUBDIRS = ("models", "normal", "results", "runs", "pools", "annotations", "cache")

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root or os.environ.get("VLAVAD_APP_DIR", ".vlavad-app")).resolve()
        for sub in self.SUBDIRS:
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def __getattr__(self, sub: str) -> Path:
        # app.models, app.results, ...: the subfolders by name.
        if sub in AppDir.SUBDIRS:
            return self.root / sub
        raise AttributeError(sub)

    # --- models -----------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return sorted(p.name for p in self.models.iterdir() if (p / "model.json").is_file() and _NAME.match(p.name))

    def model_path(self, name: str) -> Path:
        name = check_name(name, "model")
        if name not in self.model_names():
            raise gr.Error(f"No saved model called {name!r}.")
        return self.models / name

    def model_meta(self, name: str) -> dict:
        return read_json(self.models / f"{check_name(name, 'model')}.json", {"normal_videos": []})

    def free_model_name(self, base: str, new_version: bool = False) -> str:
        """`base`, or `base-v2`, `base-v3`, ... : the first name no model has yet. With
        `new_version`, always a `-vN` name: a model derived from `base` never replaces it."""
        base = re.sub(r"-v\d+$", "", base)
        taken = set(self.model_names())
        if base not in taken and not new_version:
            return base
        n = 2
        while f"{base}-v{n}" in taken:
            n += 1
        return f"{base}-v{n}"

    # --- prompt pools -----------------------------------------------------------------------

    def pool_names(self) -> list[str]:
        """The bundled pool first, then the saved versions."""
        saved = sorted(p.stem for p in self.pools.glob("*.json") if _NAME.match(p.stem))
        return [BUNDLED_POOL, *saved]

    def load_pool(self, name: str | None) -> list[Prompt]:
        if not name or name == BUNDLED_POOL:
            return default_pool("motion")
        path = self.pools / f"{check_name(name, 'pool')}.json"
        if not path.is_file():
            raise gr.Error(f"No saved prompt pool called {name!r}.")
        return load_pool(path)

    # --- results ----------------------------------------------------------------------------

    def new_result_dir(self, stem: str) -> Path:
        """A fresh folder per request: a timestamp for humans, a random part so that no two
        requests (or users) ever share one."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", stem)[:40].strip("-") or "video"
        folder = self.results / f"{stamp}-{uuid.uuid4().hex[:12]}-{slug}"
        folder.mkdir(parents=True)
        return folder

    def result_dir(self, result_id: str) -> Path:
        """The folder of a result id, refusing anything that is not one of ours."""
        result_id = (result_id or "").strip()
        folder = self.results / check_name(result_id, "result id")
        if not (folder / "app.json").is_file():
            raise gr.Error(f"No analysis result with id {result_id!r}.")
        return folder

    def store_normal_clip(self, clip: Path, key: str) -> Path:
        """Moves a normal clip to normal/<key><suffix>; the same content always lands on the same
        name, so concurrent requests writing it race harmlessly."""
        target = self.normal / f"{key}{clip.suffix.lower() or '.mp4'}"
        if not target.exists():
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            shutil.copyfile(clip, tmp)
            os.replace(tmp, target)
        return target


def check_name(name: str, what: str) -> str:
    """A model, pool or result name: letters, digits, `_ . -`, no path parts."""
    name = (name or "").strip()
    if not _NAME.match(name) or ".." in name:
        raise gr.Error(f"Invalid {what} name {name!r}: use letters, digits, '_', '-' and '.', at most 64 characters.")
    return name


def read_json(path: Path, default=None):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise gr.Error(f"{Path(path).name} is not valid JSON.") from None


def write_json(path: Path, data) -> Path:
    atomic_write_text(Path(path), json.dumps(data, indent=1, default=_jsonable))
    return Path(path)


def _jsonable(value):
    # numpy scalars and Paths appear in results; JSON needs plain values.
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def user_errors(fn):
    """Shows the library's one-line user errors as a gr.Error (a visible message, no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VlavadError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- benchmark data --------------------------------------------------------------------------


def default_data_root() -> Path:
    """`VLAVAD_DATA_ROOT`, else the team's shared data folder next to the repo, else ./data."""
    if os.environ.get("VLAVAD_DATA_ROOT"):
        return Path(os.environ["VLAVAD_DATA_ROOT"]).resolve()
    shared = REPO.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else (REPO / "data").resolve()


def dataset_names(data_root: Path) -> list[str]:
    try:
        return list_datasets(data_root)
    except VlavadError:
        return []  # no data folder: the tab says so instead of failing the whole app


def resolve_dataset(name: str, data_root: Path) -> Path:
    """The folder of a dataset the user picked, re-checked on submit: only names the listing
    offers, never a path, never a symlink that leads out of the data root."""
    name = (name or "").strip()
    if not name:
        raise gr.Error("Choose a dataset.")
    if name in (".", "..") or "/" in name or "\\" in name or Path(name).is_absolute():
        raise gr.Error(f"{name!r} is not a dataset name; pick one from the list.")
    if name not in dataset_names(data_root):
        raise gr.Error(f"No dataset called {name!r} under the data folder.")
    folder = (data_root / name).resolve()
    if not folder.is_relative_to(data_root.resolve()):
        raise gr.Error(f"Dataset {name!r} points outside the data folder.")
    return folder
