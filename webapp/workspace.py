"""One visitor's workspace: their saved models, prompt pools and annotations, and their results
and benchmark runs. Its folder is made by the visitor's first save; nobody else can reach it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from vlavad.core.fileio import atomic_write_bytes, staged_folder, written_by_vlavad
from vlavad.core.schema import read_json_file, validate
from vlavad.describe.prompts import Prompt, bundled_pool, load_pool, pool_to_json
from vlavad.pipeline.model import FittedModel
from webapp.names import BUNDLED_POOL, CLIP, FOLDER_BYTES, NAME, SAVED_PARTS, SHARED_SUFFIX, AppError, ModelMeta, check_name, clips_of, link_or_copy
from webapp.retention import disk_usage, entries

if TYPE_CHECKING:
    from webapp.store import Store


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
        return entries(self.root / name)

    def saved_bytes(self) -> int:
        """What this visitor's saved work takes: models with the clips they refer to, pools, annotations."""
        seen: set[tuple[int, int]] = set()
        total = sum(disk_usage(self.root / part, seen) for part in SAVED_PARTS)
        clips = {name for model in self._listed("models") for name in clips_of(model)}
        return total + sum(disk_usage(self.store.root / "clips" / name, seen) for name in clips)

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
