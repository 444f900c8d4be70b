"""Decoding: a video's frames, one at a time, as BGR or as grey at a working size.

`open_video` and `decode` are the only places a video file is opened for decoding (the header is
read with every decoder barred, in `vlavad.io.header`). Other modules call them through this
module (`decoder.decode(...)`), so that a test can bar decoding everywhere by replacing them here.

A frame index is the position of a decoded frame, counted from 0, and `decode` is the one place
that defines it. Frames come out one at a time (BGR uint8 H x W x 3, the OpenCV convention used
across vlavad), so a long video is never held in memory.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import cv2
import numpy as np

from vlavad.core.errors import VideoError, one_line
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimitError, VideoLimits
from vlavad.io.frame_folders import iter_folder
from vlavad.io.header import DEFAULT_FPS, first_video_stream, read_header


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
        return iter_folder(path, stride, limits, header.fps)
    return bgr_frames(path, stride, limits)


def bgr_frames(path: Path, stride: int, limits: VideoLimits) -> Iterator[tuple[int, np.ndarray]]:
    """`(index, BGR)` for every `stride`-th frame of a video file, all at the first frame's size."""
    size = None
    for index, frame in decode(path, limits):
        size = size or (frame.width, frame.height)
        if index % stride == 0:
            # Scaling to the first frame's size keeps every array alike if the stream changes
            # resolution midway; it is a no-op otherwise.
            yield index, to_bgr(frame, size)


def to_bgr(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    return frame.to_ndarray(format="bgr24", width=size[0], height=size[1])


@contextmanager
def open_video(path: Path, limits: VideoLimits) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """The container and its first video stream, ready to decode no frame over `limits`, with
    PyAV errors turned into VideoError."""
    # The option bounds the frames FFmpeg decodes while opening, for formats that list their
    # streams in a header; our own decoder gets it too, below.
    max_pixels = {"max_pixels": str(limits.decoder_max_pixels())}
    with first_video_stream(path, max_pixels) as (container, stream):
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster on large videos
        if stream.codec_context is not None:
            stream.codec_context.options = max_pixels
        yield container, stream


def decode(path: Path, limits: VideoLimits = LIBRARY_LIMITS, fps: float | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
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
    with open_video(path, limits) as (container, stream):
        fps = fps or stream_fps(stream) or DEFAULT_FPS
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


def _decode_error(path: Path, index: int, error: av.FFmpegError, limits: VideoLimits) -> VideoError:
    if error.errno == errno.EINVAL:  # what FFmpeg's size check returns: a frame over `max_pixels`
        return VideoLimitError(
            f"{path} cannot be decoded at frame {index} within {limits.max_megapixels:g} MP a frame, "
            f"the most {limits.accepted_by} accepts ({one_line(error)})"
        )
    return VideoError(f"Cannot decode {path} at frame {index}: {one_line(error)}")


def stream_fps(stream: av.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


# --- grey frames at a working size ---------------------------------------------------------------


def working_size(width: int, height: int, working_height: int) -> tuple[int, int]:
    """(width, height) of a width x height frame scaled to `working_height`, aspect kept."""
    return max(1, int(round(width * (working_height / height)))), working_height


def shrinks(size: tuple[int, int], width: int, height: int) -> bool:
    """Whether `size` is smaller than width x height both ways: then FFmpeg shrinks the frame."""
    return size[0] < width and size[1] < height


def grey_at(frame: av.VideoFrame, size: tuple[int, int]) -> np.ndarray:
    """A decoded frame's grey at `size` (width, height), uint8, full range. Shrinking, FFmpeg
    scales the luminance by area averaging: within one grey level of converting the whole frame
    and resizing it with OpenCV, and eight times faster on 4K. Otherwise the whole frame's grey,
    resized by OpenCV."""
    if shrinks(size, frame.width, frame.height):
        small = frame.reformat(width=size[0], height=size[1], format="gray", interpolation="AREA", dst_color_range=2)  # 2: full range
        return np.ascontiguousarray(small.to_ndarray())
    return at_size(grey(frame), size)


def at_size(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` (grey or BGR) resized to `size` (width, height) by area averaging; itself when it
    is that size already."""
    return image if image.shape[1::-1] == size else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def grey(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame's luminance as full-range grey, uint8, without a colour conversion: the Y
    plane itself (full-range "yuvj" streams), or stretched from the TV range (16-235)."""
    name = frame.format.name
    if name in _FULL_RANGE_Y or name in _TV_RANGE_Y:
        plane = frame.planes[0]
        y = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        full_range = name in _FULL_RANGE_Y or getattr(frame, "color_range", 0) == 2  # 2: AVCOL_RANGE_JPEG
        luminance = y if full_range else cv2.LUT(y, _TV_TO_FULL)
    else:
        luminance = frame.to_ndarray(format="gray")
    return np.ascontiguousarray(luminance)


_FULL_RANGE_Y = {"yuvj420p", "yuvj422p", "yuvj444p", "gray"}
_TV_RANGE_Y = {"yuv420p", "yuv422p", "yuv444p", "nv12"}
_TV_TO_FULL = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
