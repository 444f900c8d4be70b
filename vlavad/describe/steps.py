"""When objects are described: every track sampled at a fixed rate in time."""

from __future__ import annotations

import pandas as pd


def track_steps(tracks: pd.DataFrame, fps: float, step_hz: float) -> pd.DataFrame:
    """The rows at which objects are described: every track sampled at about `step_hz`.

    Describing at a fixed rate in *time* (not every frame) keeps the cost proportional to
    tracks rather than frames, and keeps the temporal model's window the same length in
    seconds whatever the video's frame rate.
    """
    stride = max(1, int(round(fps / step_hz)))
    return tracks[(tracks["frame"] - track_start(tracks)) % stride == 0]


def track_start(rows: pd.DataFrame) -> pd.Series:
    """The first frame of each row's track. A live stream's tables hold only the recent part of a
    long track, so they carry it (column `track_start`); a video's tables hold whole tracks."""
    if "track_start" in rows:
        return rows["track_start"]
    return rows.groupby("track_id")["frame"].transform("min")
