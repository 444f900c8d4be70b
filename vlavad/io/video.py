"""Streaming video input and browser-playable video output.

Inputs are video files (anything FFmpeg opens through PyAV: .mp4 .avi .mkv .webm .mov ...) or
folders of numbered frame images, the layout of UCSD Ped (`Train001/001.tif`) and ShanghaiTech
(`01/000.jpg`). Either way frames come out one at a time as BGR uint8 arrays (H x W x 3, the
OpenCV convention used across vlavad), so a long video is never held in memory.

A frame index is the position of a decoded frame, counted from 0. `probe` counts frames by
decoding the whole stream once (and remembers the answer per file version): container headers
cannot be trusted for this. A half-copied mp4 whose header promises 60 frames decodes 27, and
even its demuxed packets (30) over-count, so decoding is the only count that `iter_frames` is
guaranteed to match.

Every reading function takes `limits` (`vlavad.core.limits.VideoLimits`; the library's generous ones
by default) and refuses a video past them before decoding it, from what its header says
(`read_header`), and again while decoding: FFmpeg's decoders refuse a frame over the pixel limit
before allocating it, and a pass stops at the first frame past the frame count or the duration.
A `VideoInfo` carries the limits it was probed with, and every later pass over it keeps them.
"""

from __future__ import annotations

import errno
import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from vlavad.core.errors import VideoError, one_line
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimitError, VideoLimits
from vlavad.core.records import VideoInfo

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv"})
"""Suffixes worth looking for when listing videos; `probe` accepts anything FFmpeg opens."""

IMAGE_SUFFIXES = frozenset({".tif", ".tiff", ".jpg", ".jpeg", ".png", ".bmp"})
"""Suffixes of the frame images in a frame folder (compared case-insensitively)."""

DEFAULT_FPS = 25.0
"""Frame rate assumed for a frame folder (or a video without a rate) when no hint is given.

Images carry no timing. 25 fps suits ShanghaiTech and Avenue; pass `fps_hint=10` for UCSD Ped.
"""

_HASH_CHUNK = 1 << 20
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


# --- frame folders ---------------------------------------------------------------------------


def is_frame_folder(path: str | Path) -> bool:
    """True for a directory that directly holds at least one frame image."""
    path = Path(path)
    return path.is_dir() and any(_is_frame_image(p) for p in path.iterdir())


def list_frame_files(folder: str | Path) -> list[Path]:
    """The frame images of `folder` in natural order: `2.jpg` before `10.jpg`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"Frame folder not found: {folder}")
    return sorted((p for p in folder.iterdir() if _is_frame_image(p)), key=_natural_key)


def _is_frame_image(path: Path) -> bool:
    # Names starting with "." are macOS "._001.tif" resource forks, not frames.
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".") and path.is_file()


def _natural_key(path: Path) -> tuple:
    # Splitting on digit runs alternates text and numbers, so the pieces always compare
    # text-to-text and int-to-int; the full name breaks ties such as "01" vs "1".
    pieces = re.split(r"(\d+)", path.name.lower())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(pieces)), path.name


def _frame_files(folder: Path) -> list[Path]:
    files = list_frame_files(folder)
    if not files:
        suffixes = " ".join(sorted(IMAGE_SUFFIXES))
        raise VideoError(f"No frame images ({suffixes}) in folder {folder}")
    return files


def _image_size(path: Path, limits: VideoLimits) -> tuple[int, int]:
    """(width, height) of a frame image from its header, checked against `limits` before its
    pixels are read: Pillow opens images lazily, reading only the header."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise VideoLimitError(
            f"{path} is over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP; {limits.accepted_by} accepts at most {limits.max_megapixels:g} MP a frame"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:  # what Pillow raises for a file it cannot parse
        raise VideoError(f"Cannot read frame image {path}: {one_line(e)}") from e
    limits.check_size(str(path), width, height)
    return width, height


def _read_image(path: Path) -> np.ndarray:
    """One frame image as BGR uint8, whatever its channels and bit depth."""
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise VideoError(f"Cannot read frame image {path}: {one_line(e)}") from e
    if image is None:
        raise VideoError(f"Cannot read frame image {path}")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)  # maps 0..65535 onto 0..255 for every frame alike
    elif image.dtype != np.uint8:
        raise VideoError(f"Unsupported pixel type {image.dtype} in frame image {path}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _folder_header(folder: Path, fps_hint: float | None, limits: VideoLimits) -> VideoHeader:
    """A frame folder's count, rate and first image's size, checked, without reading a pixel."""
    files = _frame_files(folder)
    fps = fps_hint or DEFAULT_FPS
    limits.check_frames(str(folder), len(files))
    limits.check_fps(str(folder), fps)
    limits.check_duration(str(folder), len(files) / fps)
    width, height = _image_size(files[0], limits)
    return VideoHeader(str(folder), width, height, fps, len(files), len(files) / fps)


def _iter_folder(folder: Path, stride: int, limits: VideoLimits, fps: float) -> Iterator[tuple[int, np.ndarray]]:
    files = _frame_files(folder)
    limits.check_frames(str(folder), len(files))
    first_shape = None
    for index in range(0, len(files), stride):
        limits.check_frame(str(folder), index, index / fps)
        _image_size(files[index], limits)
        frame = _read_image(files[index])
        first_shape = first_shape or frame.shape
        if frame.shape != first_shape:
            raise VideoError(
                f"Frame image {files[index]} is {frame.shape[1]}x{frame.shape[0]}, the folder's first frame is {first_shape[1]}x{first_shape[0]}"
            )
        yield index, frame


# --- video files -----------------------------------------------------------------------------


def _file_header(path: Path) -> VideoHeader:
    """What the container says, read with every decoder barred: opening a file otherwise decodes
    its first frame to learn its pixel format, at whatever size the file claims (three
    16000x16000 PNG frames took 290 MB of memory before the first line of our code ran)."""
    try:
        container = av.open(str(path), options={"codec_whitelist": "none"})
    except av.FFmpegError as e:
        raise VideoError(f"Cannot open {path} as a video: {one_line(e)}") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"No video stream in {path}")
        stream = container.streams.video[0]
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


def _check_header(header: VideoHeader, limits: VideoLimits) -> None:
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


def read_header(path: str | Path, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS) -> VideoHeader:
    """What a video file's container (or a frame folder's listing and first image header) says
    about its size, rate, length and frame count, refused if past `limits`: milliseconds, and
    nothing is decoded. `fps_hint` is a frame folder's rate (default `DEFAULT_FPS`)."""
    path = _existing(path)
    if path.is_dir():
        return _folder_header(path, fps_hint, limits)
    header = _file_header(path)
    _check_header(header, limits)
    return header


@contextmanager
def _open_video(path: Path, limits: VideoLimits) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """The container and its first video stream, ready to decode no frame over `limits`, with
    PyAV errors turned into VideoError."""
    # The option bounds the frames FFmpeg decodes while opening, for formats that list their
    # streams in a header; our own decoder gets it too, below.
    max_pixels = {"max_pixels": str(limits.decoder_max_pixels())}
    try:
        container = av.open(str(path), options=max_pixels)
    except av.FFmpegError as e:
        raise VideoError(f"Cannot open {path} as a video: {one_line(e)}") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"No video stream in {path}")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on large videos
        if stream.codec_context is not None:
            stream.codec_context.options = max_pixels
        yield container, stream


def _decode_error(path: Path, index: int, error: av.FFmpegError, limits: VideoLimits) -> VideoError:
    if error.errno == errno.EINVAL:  # what FFmpeg's size check returns: a frame over `max_pixels`
        return VideoLimitError(
            f"{path} cannot be decoded at frame {index} within {limits.max_megapixels:g} MP a frame, "
            f"the most {limits.accepted_by} accepts ({one_line(error)})"
        )
    return VideoError(f"Cannot decode {path} at frame {index}: {one_line(error)}")


def _decode(path: Path, limits: VideoLimits = LIBRARY_LIMITS, fps: float | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
    """Every decoded frame of `path` with its index; the one place that defines frame indices.

    The demuxer flags a packet cut short by the end of the file as corrupt. Damage in the middle
    of a stream (a glitch in a camera recording) is left to the decoder, which conceals it; a
    damaged final packet means the file was truncated, and that raises after the frames that did
    decode, so `probe` (which raises too) never promises more frames than this yields. A stream
    from which no frame decodes at all raises too.

    Each frame is checked against `limits` as it comes: its size (the decoder has already
    refused any frame over the pixel limit), its index, and its time from the first frame (the
    lower of its timestamp's and index / `fps`, so that a timestamp glitch alone does not
    refuse a video); the first one past raises, whatever the header said.
    """
    index, truncated, subject = 0, False, str(path)
    with _open_video(path, limits) as (container, stream):
        fps = fps or _stream_fps(stream) or DEFAULT_FPS
        start = size = None
        try:
            for packet in container.demux(stream):
                if packet.size:  # the final empty packet only flushes the decoder
                    truncated = packet.is_corrupt
                for frame in packet.decode():
                    if (frame.width, frame.height) != size:  # the first frame, and any change of size
                        size = (frame.width, frame.height)
                        limits.check_size(f"frame {index} of {subject}", *size)
                    start = frame.time if index == 0 else start
                    elapsed = index / fps
                    if frame.time is not None and start is not None:
                        elapsed = min(elapsed, frame.time - start)
                    limits.check_frame(subject, index, elapsed)
                    yield index, frame
                    index += 1
        except av.FFmpegError as e:
            raise _decode_error(path, index, e, limits) from e
    if truncated:
        raise VideoError(f"Video {path} is truncated: decoding stops at frame {index}")
    if index == 0:
        raise VideoError(f"Video {path} has a video stream but no frame decodes")


def _iter_video(path: Path, stride: int, limits: VideoLimits) -> Iterator[tuple[int, np.ndarray]]:
    size = None
    for index, frame in _decode(path, limits):
        size = size or (frame.width, frame.height)
        if index % stride == 0:
            # Scaling to the first frame's size keeps every array alike if the stream changes
            # resolution midway; it is a no-op otherwise.
            yield index, _bgr(frame, size)


def _bgr(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    return frame.to_ndarray(format="bgr24", width=size[0], height=size[1])


def _stream_fps(stream: av.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


# --- public reading API ----------------------------------------------------------------------


def probe(path: str | Path, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS) -> VideoInfo:
    """Size, frame rate and exact frame count of a video file or frame folder.

    `fps_hint` is the rate of a frame folder (default `DEFAULT_FPS`); for a video file it is used
    only when the container states no rate. The count comes from decoding every frame, so it is
    exactly what `iter_frames` yields. Raises VideoError for anything that cannot be read, and
    VideoLimitError for a video past `limits`: from its header before decoding, else at the
    first frame past them, else (rate and duration from the decoded timestamps) at the end.
    """
    path = _existing(path)
    stat = path.stat()
    # Keyed on size and mtime, so a file rewritten in place is probed afresh.
    return _probe_cached(path, stat.st_size, stat.st_mtime_ns, fps_hint, limits)


@lru_cache(maxsize=256)
def _probe_cached(path: Path, _size: int, _mtime_ns: int, fps_hint: float | None, limits: VideoLimits) -> VideoInfo:
    if path.is_dir():
        header = _folder_header(path, fps_hint, limits)
        height, width = _read_image(_frame_files(path)[0]).shape[:2]
        return VideoInfo(str(path), header.fps, width, height, header.frame_count, limits=limits)

    _check_header(_file_header(path), limits)
    with _open_video(path, limits) as (_, stream):
        fps = _stream_fps(stream) or fps_hint or DEFAULT_FPS
        expected_frames = stream.frames  # the container's word for it (0: unknown)
    frames = _decode(path, limits, fps)
    _, first = next(frames)  # _decode raises rather than yield nothing
    # This pass decodes every frame anyway, so it keeps what the detection pass will need: grey
    # frames spread over the whole clip (a background model needs them before detection
    # starts) and, for a clip that fits CLIP_BUDGET, every grey frame, which spares the
    # detection pass (and a fit's second, faster-played pass) a decoding pass of their own.
    # A clip the container says is over budget keeps only samples from the start: keeping
    # 64 MB of frames only to drop them left a 10-minute clip's process 57 MB larger for good.
    kept_width, kept_height = working_size(first.width, first.height, min(first.height, KEPT_HEIGHT))
    fits = expected_frames * kept_width * kept_height <= CLIP_BUDGET
    kept = _KeptFrames(BACKGROUND_FRAMES, step=max(1, expected_frames // BACKGROUND_FRAMES), whole=fits)
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
    with _KEPT_LOCK:
        _KEPT[(path, _size, _mtime_ns)] = kept
        # Over budget, the oldest whole clips first fall back to their background samples (a
        # decoding pass costs less than the background's own pass), then the oldest samples go.
        for older in list(_KEPT.values()):
            if sum(k.bytes for k in _KEPT.values()) <= KEPT_BUDGET:
                break
            older.keep_samples_only()
        while sum(k.bytes for k in _KEPT.values()) > KEPT_BUDGET:
            _KEPT.pop(next(iter(_KEPT)))
    return info


BACKGROUND_FRAMES = 50  # grey frames spread over a video, from which detectors model its background
KEPT_HEIGHT = 240  # frames are kept at most this high: the default working height
CLIP_BUDGET = 64 * 2**20  # a clip whose grey frames fit this is kept whole (740 frames at 360x240)
# Bytes of kept frames over all videos: the whole of Ped2 (training 220 MB, test 173 MB), so a
# benchmark decodes each video once; at 256 MB its test videos were decoded again to be scored.
KEPT_BUDGET = 512 * 2**20
_KEPT: dict[tuple, _KeptFrames] = {}
_KEPT_LOCK = threading.Lock()  # the web app probes for several visitors at once


class _KeptFrames:
    """The grey frames a probe keeps: all of them while they fit CLIP_BUDGET; past that every
    `step`-th, the step doubling (and every other kept frame dropped) whenever twice `count`
    are kept, so they stay evenly spread even when the container did not say how many it holds.
    Kept frames are read-only: the detection passes of several runs may share them."""

    def __init__(self, count: int, step: int = 1, whole: bool = True):
        self.count, self.step, self.kept, self.bytes = count, step, [], 0
        self.whole = whole  # every frame is kept, at index == position

    def offer(self, index: int, frame: av.VideoFrame) -> None:
        if not self.whole and index % self.step:
            return
        grey = _grey_at(frame, working_size(frame.width, frame.height, min(frame.height, KEPT_HEIGHT)))
        grey.flags.writeable = False
        self.kept.append((index, grey))
        self.bytes += grey.nbytes
        if self.whole and self.bytes > CLIP_BUDGET:
            self.keep_samples_only()
        elif not self.whole and len(self.kept) >= 2 * self.count:
            self._keep_every(2 * self.step)

    def keep_samples_only(self) -> None:
        if self.whole:
            self.whole = False
            self._keep_every(self.step)
            while len(self.kept) >= 2 * self.count:
                self._keep_every(2 * self.step)

    def _keep_every(self, step: int) -> None:
        self.step = step
        self.kept = [(i, f) for i, f in self.kept if i % step == 0]  # a new list: readers keep theirs
        self.bytes = sum(f.nbytes for _, f in self.kept)

    # Readers take what is kept under the lock that the probe of another video holds while it
    # makes this one keep only samples.

    def whole_clip(self) -> list[tuple[int, np.ndarray]] | None:
        """Every frame as (index, grey), or None when only samples are kept."""
        with _KEPT_LOCK:
            return self.kept if self.whole else None

    def samples(self, step: int) -> list[np.ndarray]:
        """Every `step`-th frame, or as near to that spacing as the kept frames allow."""
        with _KEPT_LOCK:
            kept, evenly = self.kept, self.whole or self.step == step
        if evenly:
            return [f for i, f in kept if i % step == 0]
        frames = [f for _, f in kept]  # the container misjudged its length: the nearest to even spacing
        return [frames[i] for i in np.linspace(0, len(frames) - 1, min(BACKGROUND_FRAMES, len(frames))).round().astype(int)]


def _kept(path: Path) -> _KeptFrames | None:
    """What the probe of this version of the file kept, if it is still in memory."""
    if not path.is_file():
        return None
    stat = path.stat()
    return _KEPT.get((path, stat.st_size, stat.st_mtime_ns))


def background_samples(info: VideoInfo, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Grey frames at `size`, every (frame count // BACKGROUND_FRAMES)-th, from the video's probe
    when it kept them (else from a decoding pass of its own)."""
    step = max(1, info.frame_count // BACKGROUND_FRAMES)
    kept = _kept(Path(info.path))
    frames = kept.samples(step) if kept else []
    if frames and frames[0].shape[0] >= size[1]:  # never upscaled
        return (_at_size(frame, size) for frame in frames)
    return (grey for _, grey, _ in iter_working_frames(info, size, stride=step))


def working_size(width: int, height: int, working_height: int) -> tuple[int, int]:
    """(width, height) of a width x height frame scaled to `working_height`, aspect kept."""
    return max(1, int(round(width * (working_height / height)))), working_height


def _shrinks(size: tuple[int, int], width: int, height: int) -> bool:
    """Whether `size` is smaller than width x height both ways: then FFmpeg shrinks the frame."""
    return size[0] < width and size[1] < height


def _grey_at(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame's grey at `size` (width, height), uint8, full range. Shrinking, FFmpeg
    scales the luminance by area averaging: within one grey level of converting the whole
    frame and resizing it with OpenCV, and eight times faster on 4K (where that conversion
    took as long as decoding). Otherwise the whole frame's grey, resized by OpenCV."""
    if _shrinks(size, frame.width, frame.height):
        small = frame.reformat(width=size[0], height=size[1], format="gray", interpolation="AREA", dst_color_range=2)  # 2: full range
        return np.ascontiguousarray(small.to_ndarray())
    grey = _grey(frame)
    return _at_size(grey, size)


def _at_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (grey or BGR) resized to `size` (width, height) by area averaging; itself when it
    is that size already."""
    return image if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _grey(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame's luminance as full-range grey, uint8, without a colour conversion: the Y
    plane itself (full-range "yuvj" streams), or stretched from the TV range (16-235)."""
    name = frame.format.name
    if name in _FULL_RANGE_Y or name in _TV_RANGE_Y:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full_range = name in _FULL_RANGE_Y or getattr(frame, "color_range", 0) == 2  # 2: AVCOL_RANGE_JPEG
        grey = y if full_range else cv2.LUT(y, _TV_TO_FULL)
    else:
        grey = frame.to_ndarray(format="gray")
    return np.ascontiguousarray(grey)


_FULL_RANGE_Y = {"yuvj420p", "yuvj422p", "yuvj444p", "gray"}
_TV_RANGE_Y = {"yuv420p", "yuv422p", "yuv444p", "nv12"}
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)


def iter_working_frames(
    info: VideoInfo, size: tuple[int, int], stride: int = 1, colour: bool = True
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """`(index, grey, BGR or None)` at the working `size` for every `stride`-th frame: what the
    detection and tracking pass reads. Grey comes straight from the luminance plane; the colour
    conversion, the costly part, happens only when `colour` is asked for."""
    path = Path(info.path)
    if path.is_dir():
        for index, frame in _iter_folder(path, stride, info.limits, info.fps):
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            yield index, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), small if colour else None
        return
    kept = _kept(path)
    clip = kept.whole_clip() if kept and not colour else None
    kept_size = clip[0][1].shape[::-1] if clip else None
    if kept_size == size or (kept_size == (info.width, info.height) and not _shrinks(size, info.width, info.height)):
        # The probe kept every grey frame, either at this size or at full size, which
        # `_grey_at` would resize with OpenCV just so.
        for index, grey in clip[::stride]:
            yield index, _at_size(grey, size), None
        return
    for index, frame in _decode(path, info.limits, info.fps):
        if index % stride:
            continue
        grey = _grey_at(frame, size)
        bgr = None
        if colour:
            bgr = frame.to_ndarray(format="bgr24")
            bgr = _at_size(bgr, size)
        yield index, grey, bgr


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


def iter_frames(
    path: str | Path, stride: int = 1, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields `(frame_index, BGR uint8 H x W x 3 array)` for every `stride`-th frame, streaming.

    Indices are true frame positions (0, stride, 2*stride, ...). `fps_hint` is a frame folder's
    rate, as for `probe`; frames do not depend on it. A file that fails to decode midway raises
    VideoError naming the last frame reached; one past `limits` raises VideoLimitError, from its
    header before any frame, or at the first frame past them.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    header = read_header(path, fps_hint, limits)
    path = Path(header.path)
    if path.is_dir():
        return _iter_folder(path, stride, limits, header.fps)
    return _iter_video(path, stride, limits)


def read_frame(path: str | Path, index: int, limits: VideoLimits = LIBRARY_LIMITS) -> np.ndarray:
    """Frame `index` as BGR uint8, identical to what `iter_frames` yields for it.

    A video file is read by seeking, not from its start: a pass that only demuxes (remembered
    per file version) gives every packet's timestamp, and in sorted order they are the frames'
    order, so frame `index`'s timestamp is known; decoding starts at the last keyframe shown no
    later than it, and stops there. Where that order cannot be trusted (packets without
    timestamps, two alike, damaged or discarded ones, a stream that does not start with a
    keyframe, a seek that lands elsewhere), it decodes from the start as `iter_frames` does.
    Raises IndexError for an index outside the video.
    """
    if index < 0:
        raise IndexError(f"Frame {index} is out of range for {path}")
    header = read_header(path, None, limits)
    path = Path(header.path)
    if path.is_dir():
        files = _frame_files(path)
        if index >= len(files):
            raise IndexError(f"Frame {index} is out of range for {path}")
        limits.check_frame(str(path), index, index / header.fps)
        _image_size(files[index], limits)
        frame = _read_image(files[index])
        if frame.shape[1::-1] != (header.width, header.height):  # as `_iter_folder` refuses it
            raise VideoError(
                f"Frame image {files[index]} is {frame.shape[1]}x{frame.shape[0]}, the folder's first frame is {header.width}x{header.height}"
            )
        return frame
    stat = path.stat()
    table = _frame_table(path, stat.st_size, stat.st_mtime_ns, limits)
    if table is not None:
        if index >= len(table.pts):
            raise IndexError(f"Frame {index} is out of range for {path}")
        frame = _seek_frame(path, table, index, limits)
        if frame is not None:
            return frame
    # A stride of `index` still decodes every frame but converts only frames 0 and `index`.
    for found, frame in _iter_video(path, max(index, 1), limits):
        if found == index:
            return frame
    raise IndexError(f"Frame {index} is out of range for {path}")


@dataclass(frozen=True)
class _FrameTable:
    """Where each frame of a video file is, from its packets alone."""

    pts: np.ndarray  # every frame's presentation timestamp, in order: frame i's is pts[i]
    key_pts: np.ndarray  # the keyframes' presentation timestamps, in decoding order
    key_seek: np.ndarray  # the timestamp to seek to for each: its decoding timestamp, which the
    # demuxers that index by it (mp4) need, and no later than the presentation one the others use
    size: tuple[int, int]  # the first frame's (width, height), which `iter_frames` scales all to


@lru_cache(maxsize=16)
def _frame_table(path: Path, _size: int, _mtime_ns: int, limits: VideoLimits) -> _FrameTable | None:
    """The frame table of this version of a video file, or None where its packets cannot say
    which frame is which. Demuxing reads the file without decoding it (48 ms for 6,000 frames of
    640x360 H.264 that take 3 s to decode); only the first frame is decoded, for its size."""
    pts, key_pts, key_seek, first, subject = [], [], [], None, str(path)
    with _open_video(path, limits) as (container, stream):
        try:
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None or packet.is_corrupt or packet.is_discard or not (pts or packet.is_keyframe):
                    return None
                limits.check_frame(subject, len(pts), 0.0)  # the frame count: a packet is a frame here
                pts.append(packet.pts)
                if packet.is_keyframe:
                    key_pts.append(packet.pts)
                    key_seek.append(packet.pts if packet.dts is None else min(packet.dts, packet.pts))
                if first is None:
                    first = next(iter(packet.decode()), None)
        except av.FFmpegError:
            return None  # decoding from the start reports what is wrong
    ordered = np.sort(np.asarray(pts, dtype=np.int64))
    if first is None or first.pts != ordered[0] or np.any(np.diff(ordered) == 0):
        return None
    limits.check_size(f"frame 0 of {path}", first.width, first.height)
    return _FrameTable(ordered, np.asarray(key_pts, dtype=np.int64), np.asarray(key_seek, dtype=np.int64), (first.width, first.height))


def _seek_frame(path: Path, table: _FrameTable, index: int, limits: VideoLimits) -> np.ndarray | None:
    """Frame `index` decoded from the keyframe before it, or None if the seek or the decoded
    frames do not match the table."""
    target = table.pts[index]
    candidates = np.flatnonzero(table.key_pts <= target)
    k = int(candidates[-1]) if len(candidates) else 0  # 0: the file's first packet, a keyframe
    with _open_video(path, limits) as (container, stream):
        try:
            if k:  # frame 0's keyframe opens the file: no seek needed (some formats cannot)
                container.seek(int(table.key_seek[k]), backward=True, stream=stream)
            landed = False
            for packet in container.demux(stream):
                # The seek must land on this keyframe or an earlier one: a packet after it may
                # need frames that were never decoded, which the decoder would only conceal.
                if not landed and packet.size and not (packet.is_keyframe and packet.pts in table.key_pts[: k + 1]):
                    return None
                landed = True
                for frame in packet.decode():
                    limits.check_size(f"frame {index} of {path}", frame.width, frame.height)
                    if frame.pts == target:
                        return _bgr(frame, table.size)
                    if frame.pts is None or frame.pts > target:
                        return None
        except av.FFmpegError:
            return None
    return None


def content_key(path: str | Path) -> str:
    """A 16-hex-digit digest of a video's bytes (or a frame folder's names and bytes).

    Independent of where the file lives, so a copied or renamed video reuses its cached results.
    """
    path = _existing(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for file in _frame_files(path):
            # Name and size delimit each file's bytes so that no two folders hash alike.
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
            _hash_file(digest, file)
    else:
        _hash_file(digest, path)
    return digest.hexdigest()[:16]


def _hash_file(digest, path: Path) -> None:
    try:
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as e:
        raise VideoError(f"Cannot read {path}: {e.strerror}") from e


def _existing(path: str | Path) -> Path:
    """`path` as a Path, or VideoError if there is nothing to read there."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"Video not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise VideoError(f"Video file is empty: {path}")
    return path
