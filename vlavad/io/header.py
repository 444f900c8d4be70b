"""What a video says about itself before any frame is decoded, and refusing it early from that.

Inputs are video files (anything FFmpeg opens through PyAV: .mp4 .avi .mkv .webm .mov ...) or
folders of numbered frame images (`vlavad.io.frame_folders`). Every reading function takes
`limits` (`vlavad.core.limits.VideoLimits`; the library's generous ones by default) and refuses a
video past them before decoding it, from what its header says (`read_header`, here), and again
while decoding (`vlavad.io.decoder`), since a header may say nothing, or lie.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av

from vlavad.core.errors import VideoError, one_line
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.io.frame_folders import frame_files, image_size

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""Suffixes worth looking for when listing videos; `probe` accepts anything FFmpeg opens."""

DEFAULT_FPS = 25.0
"""Frame rate assumed for a frame folder (or a video without a rate) when no hint is given.

Images carry no timing. 25 fps suits ShanghaiTech and Avenue; pass `fps_hint=10` for UCSD Ped.
"""

# A header's duration may round up a little past the decoded one (an audio track, a last frame's
# length): it refuses from the header only past this margin; decoding checks the exact duration.
HEADER_SLACK_S = 1.0


@dataclass(frozen=True)
class VideoHeader:
    """What a video says about itself before any frame is decoded (`read_header`): cheap to
    learn, and not to be trusted for anything but refusing early. 0 or None where it does not say."""

    path: str
    width: int
    height: int
    fps: float | None  # the average rate the container states
    frame_count: int | None
    duration_s: float | None


def read_header(path: str | Path, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS) -> VideoHeader:
    """What a video file's container (or a frame folder's listing and first image header) says
    about its size, rate, length and frame count, refused if past `limits`: milliseconds, and
    nothing is decoded. `fps_hint` is a frame folder's rate (default `DEFAULT_FPS`)."""
    path = existing(path)
    if path.is_dir():
        return folder_header(path, fps_hint, limits)
    header = file_header(path)
    check_header(header, limits)
    return header


def existing(path: str | Path) -> Path:
    """`path` as a Path, or VideoError if there is nothing to read there."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"Video not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"Video file is empty: {path}")
    return path


def folder_header(folder: Path, fps_hint: float | None, limits: VideoLimits) -> VideoHeader:
    """A frame folder's count, rate and first image's size, checked, without reading a pixel."""
    files = frame_files(folder)
    fps = fps_hint or DEFAULT_FPS
    limits.check_frames(str(folder), len(files))
    limits.check_fps(str(folder), fps)
    limits.check_duration(str(folder), len(files) / fps)
    width, height = image_size(files[0], limits)
    return VideoHeader(str(folder), width, height, fps, len(files), len(files) / fps)


@contextmanager
def first_video_stream(path: Path, options: dict[str, str]) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """The container opened with FFmpeg `options`, and its first video stream; PyAV's errors and
    a file without video become one-line VideoErrors."""
    try:
        container = av.open(str(path), options=options)
    except av.FFmpegError as e:
        raise VideoError(f"Cannot open {path} as a video: {one_line(e)}") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"No video stream in {path}")
        yield container, container.streams.video[0]


def file_header(path: Path) -> VideoHeader:
    """What the container says, read with every decoder barred: opening a file otherwise decodes
    its first frame to learn its pixel format, at whatever size the file claims, before any check
    of ours can run (three 16000x16000 PNG frames took 290 MB)."""
    with first_video_stream(path, {"codec_whitelist": "none"}) as (container, stream):
        context = stream.codec_context
        width, height = (context.width, context.height) if context is not None else (0, 0)
        # Only a stated average: the guessed rate of a variable-rate WebM is its 1000 Hz clock.
        fps = float(stream.average_rate) if stream.average_rate else None
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration and len(container.streams) == 1:  # the whole file's: an audio track may be longer
            duration = container.duration / 1e6
        else:
            duration = None
        return VideoHeader(str(path), width, height, fps, stream.frames or None, duration)


def check_header(header: VideoHeader, limits: VideoLimits) -> None:
    """Refuses what the header says is past `limits`. It may say nothing, or lie: decoding checks again."""
    subject = header.path
    if header.width > 0 and header.height > 0:
        limits.check_size(subject, header.width, header.height)
    if header.fps:
        limits.check_fps(subject, header.fps)
    if header.frame_count:
        limits.check_frames(subject, header.frame_count)
    if header.duration_s is not None and header.duration_s > limits.max_duration_s + HEADER_SLACK_S:
        limits.check_duration(subject, header.duration_s)
    if header.duration_s and header.fps and not header.frame_count:
        estimate = int(header.duration_s * header.fps)
        if estimate > limits.max_frames + header.fps * HEADER_SLACK_S:
            limits.check_frames(subject, estimate, how="about ")
