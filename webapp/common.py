"""What every tab shares: the visitor's workspace, one-line errors, the events table."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import gradio as gr
import pandas as pd

from vlavad.core.errors import VlavadError
from vlavad.core.schema import read_json_file
from webapp.names import AppError
from webapp.store import Store
from webapp.workspace import Workspace

EXAMPLE_VIDEO = Path(str(resources.files("vlavad").joinpath("assets", "examples", "plaza.mp4")))
EXAMPLE_LABELS = EXAMPLE_VIDEO.with_name("plaza.labels.json")
_PATH = re.compile(r"(?<![\w.])(?:/[^\s'\"/:]+)+/([^\s'\"/:]+)")


def hide_paths(message: str) -> str:
    """A message with every absolute path cut to its last part: a server's folders are nobody's business."""
    return _PATH.sub(r"\1", message)


def user_errors(fn):
    """Shows the library's and the app's one-line errors as a gr.Error (a visible message, no
    traceback, no server path)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VlavadError as exc:
            raise gr.Error(hide_paths(str(exc))) from None

    return wrapper


def workspace_of(store: Store, session: dict | None) -> tuple[Workspace, dict]:
    """The visitor's workspace and their (possibly updated) session state. A browser gets its key
    when the page loads; an API client that never loaded the page gets one on its first call,
    kept in its session. Either way no folder exists until the visitor saves something."""
    session = dict(session) if isinstance(session, dict) else {}
    if not session.get("key"):
        session["key"] = store.new_visitor_key()
    return store.workspace(session["key"]), session


def result_meta(folder: Path) -> dict:
    """What the app recorded about a result (`app.json`): the video's file name, its content
    key, the model used and how it was described to the user."""
    return read_json_file(folder / "app.json", "result record", AppError)


def download_stem(name: str) -> str:
    """A file-name-safe start for download names: `plaza` gives `plaza-report.html`."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:40] or "video"


EVENT_COLUMNS = ["#", "start (s)", "end (s)", "peak score", "why (top objects)"]


def events_table(events: list[dict]) -> pd.DataFrame:
    """The events as a reviewer reads them: when, how strong, and why (the captions)."""
    rows = [
        {
            "#": i + 1,
            "start (s)": round(e["start_s"], 1),
            "end (s)": round(e["end_s"], 1),
            "peak score": round(e["peak_score"], 2),
            "why (top objects)": " | ".join(e["reasons"]) or "—",
        }
        for i, e in enumerate(events)
    ]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def choices_update(choices: list[str]) -> dict:
    """A dropdown's fresh choices; the browser keeps what the visitor had chosen."""
    return gr.update(choices=choices)


@dataclass
class TabHooks:
    """What a tab tells the app: how to fill its lists from the visitor's workspace (on page load
    and after anything is saved), and which of its events save something."""

    refresh: Callable[[dict], list]
    components: list
    saves: list = field(default_factory=list)
