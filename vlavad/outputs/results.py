"""A scored video's folder: its tables and summary, and, when asked, its annotated video and report.

A result folder holds `frames.csv` (per frame: time, static, temporal and fused scores, the top
object), `objects.csv` (per object and frame: box, caption, scores), `result.json` (the summary,
events with their causes, the backends that produced it) and, when asked, `annotated.mp4` and
`report.html`. `save_result` builds it beside its target and renames it into place, so it is
complete or absent; `write_outputs` fills a folder the caller already made complete-or-absent
(the app's, which holds more of its own). The command line and the app both write through
`write_outputs`, and `load_result` reads a folder back: nothing else needs to know the layout.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vlavad.core.errors import VlavadError
from vlavad.core.fileio import atomic_write_json, atomic_write_text, staged_folder
from vlavad.core.records import FRAME_COLUMNS, OBJECT_COLUMNS, ResultSummary, VideoInfo, VideoResult
from vlavad.core.schema import read_json_file, validate
from vlavad.outputs.render import render_video
from vlavad.outputs.report import event_cards, write_report


def write_outputs(
    result: VideoResult,
    folder: Path,
    video: str | Path,
    *,
    annotated: bool = False,
    report: bool = False,
    model_label: str = "",
    normal_until_s: float | None = None,
    show_progress: bool = True,
) -> str:
    """Writes the result's files into `folder`, an existing folder the caller makes
    complete-or-absent: the tables and summary, then `annotated.mp4` and `report.html` when asked.
    `model_label` says what was taken as normal, `normal_until_s` where a normal segment ends (an
    event inside it is flagged). Returns the events' cards (HTML) when a report was made, else ""."""
    atomic_write_text(folder / "frames.csv", result.frames.to_csv(index=False, float_format="%.5f"))
    atomic_write_text(folder / "objects.csv", result.objects.to_csv(index=False, float_format="%.5f"))
    atomic_write_json(folder / "result.json", result.summary().to_dict())
    if annotated:
        render_video(video, folder / "annotated.mp4", result.objects, result.frames, result.threshold, result.info, show_progress=show_progress)
    cards = ""
    if report:
        cards = event_cards(result, video, normal_until_s)
        write_report(result, folder / "report.html", model_label, cards, normal_until_s)
    return cards


def save_result(result: VideoResult, folder: str | Path, video: str | Path, **outputs) -> Path:
    """Writes the result folder (`write_outputs`, with its options); an existing one is replaced
    only if it is a vlavad result."""
    with staged_folder(folder, "result") as staging:
        write_outputs(result, staging, video, **outputs)
    return Path(folder)


def load_result(folder: str | Path) -> VideoResult:
    """A result folder written by `save_result` (or the app), read back as typed records."""
    folder = Path(folder)
    summary = validate(ResultSummary, read_json_file(folder / "result.json", "result file"), "result.json")
    try:
        frames = pd.read_csv(folder / "frames.csv")
        objects = pd.read_csv(folder / "objects.csv")
    except (OSError, ValueError) as exc:
        raise VlavadError(f"The result in {folder.name} is incomplete ({exc.__class__.__name__}).") from None
    for name, table, columns in (("frames.csv", frames, FRAME_COLUMNS), ("objects.csv", objects, OBJECT_COLUMNS)):
        if list(table.columns) != columns:
            raise VlavadError(f"The result in {folder.name} is not one vlavad wrote: {name} has columns {', '.join(map(str, table.columns))[:80]}.")
    width, height = summary.size
    info = VideoInfo(summary.video, summary.fps, width, height, summary.frames)
    return VideoResult(
        summary.video,
        info,
        frames,
        objects,
        list(summary.events),
        summary.threshold,
        summary.backends,
        summary.selected_questions,
        summary.threshold_quantile,
    )
