"""Detection + tracking pass: one streaming read of a video gives its object trajectories.

Every frame is read at a fixed working height (`vlavad.io.working_frames`), handed to the
detector, and the boxes are associated over time by ByteTrack (`vlavad.track.bytetrack`). Every
tracked box's motion is the optical flow of the pixels inside it (`vlavad.track.flow`), turned
into a velocity by the real time between the two frames it spans.

The output is the paper's object trajectories as a plain table (`TRACK_COLUMNS`): one row per
(frame, track) with the box in source pixels, and size, position and velocity in frame-relative
units, so that nothing downstream depends on the video's resolution or frame rate.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from contextlib import closing

import numpy as np
import pandas as pd
import supervision as sv
from pydantic import Field

from vlavad.core.records import TRACK_COLUMNS, VideoInfo
from vlavad.core.schema import Schema
from vlavad.core.threads import prefetched
from vlavad.core.timing import StageTimes
from vlavad.detect import Detector
from vlavad.io.working_frames import WorkingFrames
from vlavad.track.bytetrack import ByteTrack
from vlavad.track.flow import box_velocity


class TrackSettings(Schema):
    working_height: int = Field(240, ge=32, le=2160)  # every frame is resized to this height first
    motion_interval_s: float = Field(0.1, gt=0, le=10)  # flow is measured between frames this far apart
    # How long ByteTrack keeps a lost track: this long at 30 frames/s, as `trackers` read it
    # (see `_frames_lost` for other rates: 0.4 s at Ped2's 10).
    lost_track_s: float = Field(1.0, ge=0, le=60)
    min_track_frames: int = Field(3, ge=1, le=100_000)  # shorter tracks are flicker, not objects
    flow_grid: int = Field(5, ge=2, le=15)  # flow is sampled on a grid of flow_grid² points per box
    # None: an object's velocity is the median flow vector of its points, which flow noise
    # (e.g. from lossy encoding) averages out. A number q: the median direction with the
    # q-quantile of the points' speeds, which follows the fastest part of a box (a cyclist merged
    # with walkers into one blob) but grows with flow noise. See `benchmarks/select_settings.py`
    # and docs/results.md for how the two compare on Ped2.
    flow_quantile: float | None = Field(None, ge=0, le=1)
    # A flow point counts only if tracking it back to the current frame lands within this many
    # working pixels of where it started (forward-backward check): points on textureless or
    # compression-damaged patches fail it. None: no check.
    flow_fb_max_px: float | None = Field(None, gt=0, le=10_000)


ProgressFn = Callable[[int, int], None]


def empty_tracks() -> pd.DataFrame:
    dtypes = {"frame": "int64", "track_id": "int64", "class_id": "int64", "class_name": object}
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in TRACK_COLUMNS})


def track_video(
    info: VideoInfo,
    detector: Detector,
    settings: TrackSettings = TrackSettings(),
    *,
    stride: int = 1,
    progress: ProgressFn | None = None,
    times: StageTimes | None = None,
) -> pd.DataFrame:
    """Detects, tracks and measures every object of a video in one streaming pass.

    `stride` > 1 processes every stride-th frame *as if it were the next one*: the clip plays
    `stride` times faster. That is how pseudo-anomalies (objects moving unlike anything in
    training) are made from normal videos for prompt selection; normal use keeps stride 1.
    Frames are decoded and detected ahead in a thread of their own, and decoded in colour only
    for detectors that look at colour. `times` collects the seconds spent per stage.
    """
    times = times or StageTimes()
    source = WorkingFrames.at_height(info, settings.working_height, colour=detector.uses_colour)
    frame_times = info.times()
    with times("decode"):
        detector.begin(source.background(), fps=info.fps)
    tracker = ObjectTracker(detector, settings, info.fps, source.size, settings.working_height / info.height)
    rows: list[np.ndarray] = []
    total = (info.frame_count + stride - 1) // stride
    # Frames are decoded and detected ahead, in a thread of their own: OpenCV and the networks let
    # go of the GIL, so detection runs beside the tracking and flow of earlier frames.
    ahead_times = StageTimes()  # the seconds that thread spends, to share out the waits for it

    def detected():
        with closing(source.frames(stride)) as frames:
            while True:
                with ahead_times("decode"):
                    item = next(frames, None)
                if item is None:
                    return
                frame_index, gray, small = item
                with ahead_times("detect"):
                    found = detector.detect(small, gray)
                    foreground = detector.foreground()
                yield frame_index, gray, found, foreground

    waited = 0.0
    with closing(prefetched(detected(), name="vlavad-decode")) as frames:
        done = 0
        while True:
            started = time.perf_counter()
            item = next(frames, None)
            waited += time.perf_counter() - started
            if item is None:
                break
            frame_index, gray, found, foreground = item
            done += 1
            # Played `stride` times faster: every frame's time is divided by the stride.
            found_rows = tracker.step(frame_index, frame_times[frame_index] / stride, gray, found, foreground, times)
            if found_rows is not None:
                rows.append(found_rows)
            if progress:
                progress(done, total)
    times.add_waited(waited, ahead_times.snapshot())
    return track_table(rows, detector.class_names, settings.min_track_frames)


class ObjectTracker:
    """The tracking state of one stream of working frames: ByteTrack's tracks and the last
    frames that optical flow compares. `track_video` runs one over a file; a live stream
    (`vlavad.live`) keeps one for as long as it is watched, handing it frames as they come."""

    def __init__(self, detector: Detector, settings: TrackSettings, fps: float, work_size: tuple[int, int], scale: float):
        self.settings = settings
        self.work_size = work_size
        self.scale = scale  # working pixels per source pixel
        self.interval = max(1, int(round(settings.motion_interval_s * fps)))
        self.seconds_per_interval = self.interval / fps
        self.tracker = ByteTrack(
            max_frames_lost=_frames_lost(settings.lost_track_s, fps),
            activation_threshold=detector.track_activation,
            high_confidence=detector.track_activation + 0.05,
        )
        self.history: deque[np.ndarray] = deque(maxlen=self.interval + 1)
        self.history_times: deque[float] = deque(maxlen=self.interval + 1)

    def step(
        self, frame_index: int, time_s: float, gray: np.ndarray, found: sv.Detections, foreground: np.ndarray | None, times: StageTimes
    ) -> np.ndarray | None:
        """The track rows (`TRACK_COLUMNS` but the class name) of one frame's detections, or None
        when no box continues or starts a track."""
        s = self.settings
        self.history.append(gray)
        self.history_times.append(time_s)
        with times("track"):
            tracked, track_ids = self.tracker.update(found.xyxy, found.confidence)
        if not len(tracked):
            return None
        boxes = found.xyxy[tracked].astype(np.float64)
        with times("flow"):
            velocity = box_velocity(self.history, boxes, foreground, s.flow_grid, s.flow_quantile, s.flow_fb_max_px)
        # Real time between the two frames (variable-rate video, a live stream that dropped
        # frames); across a pause in the recording the displacement says nothing about speed.
        elapsed = self.history_times[-1] - self.history_times[0]
        velocity = velocity / elapsed if elapsed <= 2 * self.seconds_per_interval else np.full_like(velocity, np.nan)
        classes = found.class_id[tracked] if found.class_id is not None else np.full(len(tracked), -1)
        confidences = found.confidence[tracked] if found.confidence is not None else None
        return _rows(frame_index, track_ids, boxes, confidences, classes, velocity, self.work_size, self.scale)


def track_table(rows: list[np.ndarray], class_names: tuple[str, ...], min_track_frames: int) -> pd.DataFrame:
    """The track table (`TRACK_COLUMNS`, sorted by track and frame) of `ObjectTracker.step`'s rows,
    without the tracks shorter than `min_track_frames` (flicker, not objects)."""
    if not rows:
        return empty_tracks()
    numeric = [c for c in TRACK_COLUMNS if c != "class_name"]
    table = pd.DataFrame(np.concatenate(rows), columns=numeric).astype({"frame": "int64", "track_id": "int64", "class_id": "int64"})
    names = np.array([*class_names, ""], dtype=object)  # class -1 is the last: ""
    table.insert(TRACK_COLUMNS.index("class_name"), "class_name", names[table["class_id"].to_numpy()])
    lengths = table.groupby("track_id")["frame"].transform("size")
    table = table[lengths >= min_track_frames]
    return table.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)


def _frames_lost(lost_track_s: float, fps: float) -> int:
    """How many frames a lost track is kept: `lost_track_s` as `trackers.ByteTrackTracker`, which
    tracked before, read it (a number of frames at `fps`, taken as frames at 30 fps and rescaled to
    `fps`), so that models fitted then track the same now. At 30 frames/s that is `lost_track_s`."""
    return max(1, math.ceil(fps / 30.0 * max(1, int(round(lost_track_s * fps)))))


def _rows(frame_index, track_ids, boxes, confidences, classes, velocity, work_size, scale) -> np.ndarray:
    work_w, work_h = work_size
    x1, y1, x2, y2 = boxes.T
    if confidences is None:
        confidences = np.ones(len(boxes))
    return np.column_stack(
        [
            np.full(len(boxes), frame_index),
            track_ids,
            boxes / scale,
            confidences,
            classes,
            (x1 + x2) / 2 / work_w,
            (y1 + y2) / 2 / work_h,
            (x2 - x1) / work_h,
            (y2 - y1) / work_h,
            velocity / work_h,
        ]
    )
