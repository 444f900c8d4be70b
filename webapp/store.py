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

Retention keeps the whole folder within `VLAVAD_KEEP_GB` (`webapp.retention`). Writes are atomic, folders are complete or absent (`vlavad.core.fileio`), and pruning deletes only
what the app itself wrote: folders that carry its markers, in the places it writes them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from vlavad.core.fileio import atomic_write_bytes, written_by_vlavad
from webapp.names import FOLDER_BYTES, NAME, SAVED_SHARE, VISITOR_KEY, AppError, Limits, check_name
from webapp.retention import Retention
from webapp.workspace import Workspace


class Store(Retention):
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
