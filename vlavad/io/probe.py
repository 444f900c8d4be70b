"""Probing: a video's exact size, rate, frame count and frame times, from one decoding pass.

Container headers cannot be trusted for the count: a half-copied mp4 whose header promises 60
frames decodes 27, and even its demuxed packets (30) over-count, so decoding is the only count
that `iter_frames` is guaranteed to match. The pass keeps grey frames on the way
(`vlavad.io.kept_frames`), and its answer is remembered per file version.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.core.records import VideoInfo
from vlavad.io import decoder  # called through its module: see vlavad.io.decoder
from vlavad.io.frame_folders import frame_files, read_image
from vlavad.io.header import DEFAULT_FPS, check_header, existing, file_header, folder_header
from vlavad.io.kept_frames import KeptFrames, keep


def probe(path: str | Path, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS) -> VideoInfo:
    """Size, frame rate and exact frame count of a video file or frame folder.

    `fps_hint` is the rate of a frame folder (default `DEFAULT_FPS`); for a video file it is used
    only when the container states no rate. The count comes from decoding every frame, so it is
    exactly what `iter_frames` yields. Raises VideoError for anything that cannot be read, and
    VideoLimitError for a video past `limits`: from its header before decoding, else at the
    first frame past them, else (rate and duration from the decoded timestamps) at the end. A
    `VideoInfo` carries the limits it was probed with, and every later pass over it keeps them.
    """
    path = existing(path)
    stat = path.stat()
    # Keyed on size and mtime, so a file rewritten in place is probed afresh.
    return _probe_cached(path, stat.st_size, stat.st_mtime_ns, fps_hint, limits)


@lru_cache(maxsize=256)
def _probe_cached(path: Path, _size: int, _mtime_ns: int, fps_hint: float | None, limits: VideoLimits) -> VideoInfo:
    if path.is_dir():
        header = folder_header(path, fps_hint, limits)
        height, width = read_image(frame_files(path)[0]).shape[:2]
        return VideoInfo(str(path), header.fps, width, height, header.frame_count, limits=limits)

    check_header(file_header(path), limits)
    with decoder.open_video(path, limits) as (_, stream):
        fps = decoder.stream_fps(stream) or fps_hint or DEFAULT_FPS
        expected_frames = stream.frames  # the container's word for it (0: unknown)
    frames = decoder.decode(path, limits, fps)
    _, first = next(frames)  # decode raises rather than yield nothing
    kept = KeptFrames.for_clip(first, expected_frames)
    kept.offer(0, first)
    times = [first.time]
    for index, frame in frames:
        times.append(frame.time)
        kept.offer(index, frame)
    fps, timestamps = _variable_rate(times, fps)
    info = VideoInfo(str(path), fps, first.width, first.height, len(times), timestamps, limits)
    # The rate its frames are shown at (a variable-rate video's typical rate) and its length, as
    # every time shown to a user counts them.
    limits.check_fps(str(path), info.fps)
    limits.check_duration(str(path), info.duration_s)
    keep(path, _size, _mtime_ns, kept)
    return info


def _variable_rate(times: list[float | None], fps: float) -> tuple[float, tuple[float, ...] | None]:
    """(rate, timestamps) from the decoded frames' presentation times: (the stream's rate, None)
    when frame i is shown at i / rate to within half a frame, as in every constant-rate file;
    else (the typical rate, that of the median gap between frames, so that a pause in the
    recording does not slow every measurement down; each frame's time from the first). A file
    without usable times (missing or going backwards) is taken at the stream's rate."""
    if len(times) < 2 or any(t is None for t in times):
        return fps, None
    relative = np.asarray(times, dtype=np.float64) - times[0]
    if np.any(np.diff(relative) <= 0):
        return fps, None
    if np.max(np.abs(relative - np.arange(len(relative)) / fps)) <= 0.5 / fps:
        return fps, None
    return 1.0 / float(np.median(np.diff(relative))), tuple(float(t) for t in relative)
