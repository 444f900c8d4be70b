"""Browser-playable video output: the annotated video, a clip cut from an upload, a rendered scene."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from uuid import uuid4

import av
import cv2
import numpy as np

from vlavad.core.errors import VideoError, one_line
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.io.decoder import iter_frames
from vlavad.io.probe import probe


class BrowserVideoWriter:
    """Writes BGR frames to an H.264 mp4 that every browser plays, atomically.

        with BrowserVideoWriter("out.mp4", fps=10, width=320, height=240) as writer:
            for frame in frames:
                writer.write(frame)

    H.264 in yuv420p is the one combination all browsers decode, and `+faststart` puts the index
    first so playback starts before the download ends. yuv420p needs even sizes, so an odd width
    or height is padded by one replicated pixel. Frames go to a hidden temporary file beside
    `path`, renamed onto it only when the `with` block ends cleanly: an exception or Ctrl-C leaves
    `path` untouched. The same frames give the same picture, and nearly always the same bytes
    (see `_open_encoder`).
    With `timestamps` (a variable-rate source's frame times, `VideoInfo.timestamps`) each frame
    is shown at its own time rather than at `i / fps`.
    """

    def __init__(
        self,
        path: str | Path,
        fps: float,
        width: int,
        height: int,
        *,
        crf: int = 23,
        preset: str = "veryfast",
        timestamps: tuple[float, ...] | None = None,
    ) -> None:
        if fps <= 0 or width <= 0 or height <= 0:
            raise ValueError(f"fps, width and height must be positive, got {fps}, {width}, {height}")
        self.path = Path(path)
        self.fps, self.width, self.height = fps, width, height
        self.crf, self.preset = crf, preset
        self.timestamps = timestamps
        self.frames_written = 0
        self._container: av.container.OutputContainer | None = None

    def __enter__(self) -> BrowserVideoWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A unique name rather than tempfile.mkstemp, whose 0600 mode the renamed file would keep.
        self._tmp = self.path.with_name(f".{self.path.name}.{uuid4().hex[:12]}.part")
        try:
            self._open_encoder()
        except BaseException:
            self._discard()
            raise
        return self

    def _open_encoder(self) -> None:
        # 30000/1001-style rates survive the float round trip; 10.0 stays 10.
        rate = Fraction(self.fps).limit_denominator(1001)
        try:
            faststart = {"movflags": "+faststart"}
            self._container = av.open(str(self._tmp), "w", format="mp4", options=faststart)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width = self.width + self.width % 2
            self._stream.height = self.height + self.height % 2
            self._stream.pix_fmt = "yuv420p"
            # Millisecond ticks place a variable-rate source's frames at their own times.
            self._stream.codec_context.time_base = Fraction(1, 1000) if self.timestamps else 1 / rate
            # No B-frames: with them this x264 build's output varies from run to run (it reads
            # uninitialised memory). Without, for about 10% more bytes, the same frames nearly
            # always give the same bytes on one machine; across machines they differ, as x264's
            # thread count follows the CPUs.
            self._stream.codec_context.max_b_frames = 0
            self._stream.options = {"crf": str(self.crf), "preset": self.preset}
        except av.FFmpegError as e:
            raise VideoError(f"Cannot start writing {self.path}: {one_line(e)}") from e

    def write(self, frame_bgr: np.ndarray) -> None:
        """Appends one BGR uint8 frame of exactly `height` x `width` x 3."""
        if self._container is None:
            raise RuntimeError("BrowserVideoWriter.write() must be called inside its `with` block")
        if frame_bgr.dtype != np.uint8 or frame_bgr.shape != (self.height, self.width, 3):
            raise ValueError(f"Expected a uint8 frame of shape {(self.height, self.width, 3)}, got {frame_bgr.dtype} {frame_bgr.shape}")
        padded = cv2.copyMakeBorder(frame_bgr, 0, self.height % 2, 0, self.width % 2, cv2.BORDER_REPLICATE)
        # OpenCV's BGR->I420 is BT.601 limited range like swscale's, but rounds correctly: swscale's
        # default shifts chroma by a level, tinting greys green.
        i420 = cv2.cvtColor(padded, cv2.COLOR_BGR2YUV_I420)
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = round(self.timestamps[self.frames_written] * 1000) if self.timestamps else self.frames_written
        frame.time_base = self._stream.codec_context.time_base
        self._encode(frame)
        self.frames_written += 1

    def _encode(self, frame: av.VideoFrame | None) -> None:
        """Encodes a frame (None flushes the encoder) and muxes the packets it releases."""
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        except av.FFmpegError as e:
            raise VideoError(f"Cannot write {self.path}: {one_line(e)}") from e

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._discard()
            return
        try:
            if self.frames_written == 0:
                raise ValueError(f"No frames were written to {self.path}")
            self._encode(None)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        """Closes the encoder, if open, and deletes the temporary file."""
        if self._container is not None:
            try:
                self._container.close()
            except av.FFmpegError:
                pass  # the file is being thrown away; a failed close changes nothing
            self._container = None
        self._tmp.unlink(missing_ok=True)


def write_clip(video: str | Path, out: str | Path, frames: int, fps_hint: float | None = None, limits: VideoLimits = LIBRARY_LIMITS) -> Path:
    """The first `frames` frames of `video` as a browser-playable clip of their own (atomic), e.g.
    the opening seconds of an upload that the user says are normal. Returns `out`. `video` must
    be within `limits` as a whole, as `probe` checks."""
    info = probe(video, fps_hint=fps_hint, limits=limits)
    with BrowserVideoWriter(out, info.fps, info.width, info.height) as writer:
        for index, frame in iter_frames(info.path, fps_hint=fps_hint, limits=limits):
            if index >= frames:
                break
            writer.write(frame)
    return Path(out)
