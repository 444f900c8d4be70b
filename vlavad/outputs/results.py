"""One video's result as typed records, and the folder that stores it.

A result folder holds `frames.csv` (per frame: time, static, temporal and fused scores, the top
object), `objects.csv` (per object and frame: box, caption, scores) and `result.json` (the
summary, events with their reasons, the backends that produced it). It is written beside its
target and renamed into place, so it is complete or absent, and `load_result` reads it back
for the app, reports and tools: nothing else needs to know the file layout.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from vlavad.core.errors import VlavadError
from vlavad.core.fileio import atomic_write_json, atomic_write_text, staged_folder
from vlavad.core.records import Event, VideoInfo, VideoResult
from vlavad.core.schema import Schema, read_json_file, validate


def write_result_files(result: VideoResult, folder: Path) -> None:
    """The three files of a result, into an existing folder (the caller makes it complete-or-absent)."""
    atomic_write_text(folder / "frames.csv", result.frames.to_csv(index=False, float_format="%.5f"))
    atomic_write_text(folder / "objects.csv", result.objects.to_csv(index=False, float_format="%.5f"))
    atomic_write_json(folder / "result.json", result.summary())


def save_result(result: VideoResult, folder: str | Path, extras: Callable[[Path], None] | None = None) -> Path:
    """Writes the result folder; an existing one is replaced only if it is a vlavad result.
    `extras(folder)` may add files (an annotated video, a report) before it is put in place."""
    with staged_folder(folder, "result") as staging:
        write_result_files(result, staging)
        if extras:
            extras(staging)
    return Path(folder)


class _EventRecord(Schema):
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    peak_frame: int
    peak_score: float
    reasons: list[str]
    causes: list[dict] = []


class _Summary(Schema):
    format: str
    video: str
    frames: int
    fps: float
    size: list[int]
    objects: int
    threshold: float
    selected_questions: list[str]
    backends: dict
    events: list[_EventRecord]


def load_result(folder: str | Path) -> VideoResult:
    """A result folder written by `save_result` (or the app), read back as typed records."""
    folder = Path(folder)
    summary = validate(_Summary, read_json_file(folder / "result.json", "result file"), "result.json")
    try:
        frames = pd.read_csv(folder / "frames.csv")
        objects = pd.read_csv(folder / "objects.csv")
    except (OSError, ValueError) as exc:
        raise VlavadError(f"The result in {folder.name} is incomplete ({exc.__class__.__name__}).") from None
    width, height = summary.size
    info = VideoInfo(summary.video, summary.fps, width, height, summary.frames)
    events = [Event(**e.model_dump()) for e in summary.events]
    return VideoResult(summary.video, info, frames, objects, events, summary.threshold, summary.backends, summary.selected_questions)
