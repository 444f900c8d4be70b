"""Frames from a camera, a network stream or a video file, as they come, for scoring a source online.

`parse_source` reads what the user typed (a file, a URL, a camera number or device) and refuses anything
else in one line; `StreamSource.frames()` yields `Frame`s until the source is finished or closed.

A reader thread decodes (PyAV) into a buffer of a few frames, and the consumer (the scorer) takes them from
there. The design follows from watching a live source:

- When the consumer is slower than the source, the reader drops the OLDEST buffered frame rather than wait.
  A camera does not pause while we think: a reader that waited would fall ever further behind, and alerts
  would come later and later. Dropping the oldest keeps the lag at most a buffer's worth of frames, and the
  frame the scorer gets next is always a recent one. Gaps in `Frame.index` show what was dropped. A file read
  with `realtime=False` is no camera: there the reader waits for room, and nothing is lost.
- A network stream or a camera that fails to open, errors or ends is opened again, with exponential backoff,
  for up to `reconnect_for` seconds without a frame (by default 30 s, `None`: forever). Cameras reboot,
  Wi-Fi drops, encoders restart: a watcher that stopped at the first fault would be down most of the time
  nobody looks at it. A fault never raises out of `frames()`; each attempt is one log line. Files are not
  retried: a file that does not decode will not decode on the second try, and raises the usual VideoError.
- `Frame.time_s` keeps counting across reconnects, from the last frame's time plus the wall-clock gap: a
  restarted encoder starts its timestamps again from anywhere, and the scorer's windows and the event
  times it reports need one timeline that never goes back, with the outage as a gap in it.

Every blocking wait is bounded: PyAV's timeouts end an open or a read that hears nothing (FFmpeg's protocols
poll PyAV's interrupt callback while they wait), and the protocols' own options do the same where they have
one. PyAV's callback only checks those timeouts, so `close()` cannot cut a wait short: it returns at once,
and the reader thread ends when its wait does, within `open_timeout` or `read_timeout`.

URLs may hold credentials (rtsp://user:password@camera/...): every message and `StreamSource.name` show
`redacted(spec)`, and PyAV's own messages, which repeat the URL, are never shown (only their reason).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import av
import numpy as np

from vlavad.core.errors import ConfigError, one_line
from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits, duration_text
from vlavad.io import decoder
from vlavad.io.header import DEFAULT_FPS, read_header

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "tcp", "udp")
ACCEPTED = "SOURCE is a video file, a URL (rtsp://, rtsps://, http://, https://, tcp://, udp://) or a camera (0, 1, ... or /dev/videoN)"

FPS_WINDOW_S = 2.0
"""`stats()["fps_in"]` is the rate frames arrived at over this last stretch."""

CLOSE_WAIT_S = 1.0
"""How long `close()` waits for the reader thread; one blocked in FFmpeg ends at its timeout instead."""

MIN_OPEN_TIMEOUT_S = 5.0
"""The shortest open attempt: the last one before giving up gets what is left of `reconnect_for`, but at
least this, or a slow server would never get the chance to answer. Opening includes FFmpeg's probe of the
stream, which reads about two seconds of it: a 10 frames/s stream cut off by a shorter timeout there
stalled after its first frames."""


@dataclass(frozen=True)
class SourceSpec:
    """What `parse_source` made of a SOURCE: what to open (`target`), how, and the name to show for it."""

    kind: Literal["file", "url", "webcam"]
    target: str
    name: str


@dataclass
class Frame:
    index: int  # counts every frame received from the source, dropped ones too: a gap in index is a drop
    time_s: float  # stream time since the first frame; strictly increasing, also across reconnects
    wall_time: float  # time.time() when the frame arrived
    bgr: np.ndarray  # H x W x 3 uint8


# --- what the user typed -----------------------------------------------------------------------------


def parse_source(spec: str) -> SourceSpec:
    """A file path, a URL of an accepted scheme, or a camera ("0" or "/dev/video0"); ConfigError in one line
    for anything else, naming the accepted forms."""
    if not spec.strip():
        raise ConfigError(f"SOURCE is empty; {ACCEPTED}")
    if re.fullmatch(r"\d+|/dev/video\d+", spec):
        return _camera(spec)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]+):", spec)  # two letters at least: "C:\clips" is a path
    if scheme and scheme[1].lower() in URL_SCHEMES:
        return _url(spec)
    path = Path(spec)
    if path.is_file():
        return SourceSpec("file", str(path), spec)
    if path.is_dir():
        raise ConfigError(f"{_shown(spec)} is a folder; {ACCEPTED}")
    if scheme:
        raise ConfigError(f"Cannot watch {_shown(spec)}: {scheme[1]}: is not an accepted scheme; {ACCEPTED}")
    raise ConfigError(f"No such file: {_shown(spec)}; {ACCEPTED}")


def _shown(spec: str) -> str:
    """`spec` redacted, and quoted with escapes if it holds a line break or another control character,
    which would break a one-line message."""
    text = redacted(spec)
    return text if text.isprintable() else repr(text)


def _url(spec: str) -> SourceSpec:
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"Cannot watch {_shown(spec)}: {why}; {ACCEPTED}")

    if any(c.isspace() or not c.isprintable() for c in spec):
        raise refuse("a URL has no spaces (write them %20)")
    parts = urlsplit(spec)
    if not parts.netloc or not parts.hostname:
        raise refuse("it names no host")
    try:
        port = parts.port
    except ValueError:  # not a number, or past 65535
        port = 0
    if port == 0:
        raise refuse("the port must be a number from 1 to 65535")
    if port is None and parts.scheme.lower() in ("tcp", "udp"):
        raise refuse(f"{parts.scheme}:// needs a port")
    return SourceSpec("url", spec, redacted(spec))


def _camera(spec: str) -> SourceSpec:
    device = f"/dev/video{int(spec)}" if spec.isdigit() else spec
    if not sys.platform.startswith("linux"):
        raise ConfigError(f"Cannot watch camera {spec}: cameras are read through Video4Linux2, on Linux only; {ACCEPTED}")
    if not Path(device).exists():
        raise ConfigError(f"no camera at {device}")
    return SourceSpec("webcam", device, device)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
# Cameras that take no user:password@ take them in the query instead (?user=admin&password=...).
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:pass|password|passwd|pwd|token|key|secret|auth|signature|sig)=)[^&;#]*")


def redacted(spec: str) -> str:
    """`spec` safe to show: a URL's credentials and secret query values as ***."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", spec))


# --- reading --------------------------------------------------------------------------------------------


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class StreamSource:
    """Frames from one source, decoded by a thread of its own; see the module's docstring."""

    def __init__(
        self,
        spec: str | SourceSpec,
        *,
        realtime: bool = True,
        reconnect_for: float | None = 30.0,
        buffer_frames: int = 8,
        max_width: int = 1920,
        max_height: int = 1080,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        log: Callable[[str], None] = _to_stderr,
        backoff: tuple[float, float] = (0.5, 30.0),
        limits: VideoLimits = LIBRARY_LIMITS,
    ) -> None:
        self.spec = spec if isinstance(spec, SourceSpec) else parse_source(spec)
        self.name = self.spec.name
        if not realtime and self.spec.kind != "file":
            raise ConfigError(f"{self.name} is live: only a file can be read faster than real time")
        for what, value in (("buffer_frames", buffer_frames), ("max_width", max_width), ("max_height", max_height)):
            if value < 1:
                raise ConfigError(f"{what} must be at least 1, not {value}")
        seconds = {"open_timeout": open_timeout, "read_timeout": read_timeout}
        if reconnect_for is not None:
            seconds["reconnect_for"] = reconnect_for
        for what, value in seconds.items():
            if not value > 0:
                raise ConfigError(f"{what} must be a positive number of seconds, not {value}")
        if not 0 < backoff[0] <= backoff[1]:
            raise ConfigError(f"backoff must be (first, longest) seconds with 0 < first <= longest, not {backoff}")
        self.realtime, self.reconnect_for, self.buffer_frames = realtime, reconnect_for, buffer_frames
        self.max_size = (max_width, max_height)
        self.open_timeout, self.read_timeout, self.backoff, self.log = open_timeout, read_timeout, backoff, log
        self.limits = limits
        self.fps: float | None = None

        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._buffer: deque[Frame] = deque()
        self._arrivals: deque[float] = deque()  # time.monotonic() of the frames received in the last FPS_WINDOW_S
        self._received = self._dropped = self._reconnects = 0
        self._done = False
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frames(self) -> Iterator[Frame]:
        """The frames as they come, from the oldest buffered; ends at the end of a file, when a live
        source stayed away past `reconnect_for`, or at `close()`. A file that does not decode raises
        its VideoError here, after the frames that did. Leaving the loop closes the source."""
        with self._cond:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._read, name=f"vlavad-source {self.name}", daemon=True)
                self._thread.start()
        try:
            while True:
                with self._cond:
                    while not self._buffer and not self._done and not self._stop.is_set():
                        self._cond.wait()
                    if self._stop.is_set():
                        return
                    if not self._buffer:
                        if self._error is not None:
                            raise self._error
                        return
                    frame = self._buffer.popleft()
                    self._cond.notify_all()  # a reader waiting for room (realtime=False)
                yield frame
        finally:
            self.close()

    def stats(self) -> dict[str, float]:
        with self._cond:
            arrivals = self._arrivals
            fps_in = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 and arrivals[-1] > arrivals[0] else 0.0
            return {"received": self._received, "dropped": self._dropped, "reconnects": self._reconnects, "fps_in": fps_in}

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_WAIT_S)

    # --- the reader thread ---------------------------------------------------------------------------------

    def _read(self) -> None:
        error = None
        try:
            if self.spec.kind == "file":
                self._read_file()
            else:
                self._read_live()
        except Exception as e:  # raised again in the consumer's thread, by frames()
            error = e
        finally:
            with self._cond:
                self._done, self._error = True, error
                self._cond.notify_all()

    def _read_file(self) -> None:
        path = Path(self.spec.target)
        # Refused past the limits before anything is decoded, as every reading pass does.
        header = read_header(path, limits=self.limits)
        self.fps = header.fps
        timeline, started = _Timeline(), None
        with closing(decoder.decode(path, self.limits, header.fps)) as decoded:
            for _, frame in decoded:
                time_s, bgr = timeline.time_s(frame.time, time.time(), self._step()), self._bgr(frame)
                self.fps = header.fps or timeline.rate()
                # Played at its own speed, a file is a camera; a consumer that falls behind loses frames as it would.
                started = time.monotonic() if started is None else started
                if self.realtime and self._stop.wait(max(0.0, started + time_s - time.monotonic())):
                    return
                if self._stop.is_set() or not self._put(time_s, time.time(), bgr):
                    return

    def _read_live(self) -> None:
        timeline = _Timeline()
        failures = 0  # since the last frame: the attempt count in the log, and the backoff's exponent
        last_frame = time.monotonic()  # the countdown to giving up starts with the watching
        ever_received = False
        while not self._stop.is_set():
            reason = "stream ended"
            open_timeout = self._open_timeout(last_frame)
            opened = False
            try:
                with self._open(open_timeout) as container:
                    if not container.streams.video:
                        raise _NoVideo
                    stream = container.streams.video[0]
                    if stream.codec_context is not None:  # bounds a frame's memory before it is allocated
                        stream.codec_context.options = {"max_pixels": str(self.limits.decoder_max_pixels())}
                    stated = float(stream.average_rate) if stream.average_rate else None
                    self.fps = stated or self.fps
                    opened = True
                    timeline.restart()
                    for packet in container.demux(stream):
                        if self._stop.is_set():
                            return
                        for frame in _decoded(packet):
                            wall = time.time()
                            if failures:
                                away = time.monotonic() - last_frame
                                self.log(f"{self.name}: receiving {'again ' if ever_received else ''}after {duration_text(away)}")
                                if ever_received:
                                    self._reconnects += 1
                                failures = 0
                            last_frame, ever_received = time.monotonic(), True
                            time_s = timeline.time_s(frame.time, wall, self._step())
                            self.fps = stated or timeline.rate()
                            if not self._put(time_s, wall, self._bgr(frame)):
                                return
            except _NoVideo:
                reason = "no video stream"
            except av.ExitError:  # PyAV's timeout interrupted FFmpeg
                reason = f"no data for {duration_text(self.read_timeout)}" if opened else f"no answer within {duration_text(open_timeout)}"
            except av.FFmpegError as e:
                text = one_line(e)  # the reason alone: PyAV's full message repeats the URL, credentials and all
                reason = text[:1].lower() + text[1:]
            if self._stop.is_set():
                return
            failures += 1
            away = time.monotonic() - last_frame
            if self.reconnect_for is not None and away >= self.reconnect_for:
                self.log(f"{self.name}: {reason}; no frames for {duration_text(away)}, giving up")
                return
            delay = min(self.backoff[1], self.backoff[0] * 2 ** (failures - 1))
            if self.reconnect_for is not None:  # the last attempt comes when reconnect_for runs out, not after
                delay = min(delay, self.reconnect_for - away)
            self.log(f"{self.name}: {reason}; retrying in {duration_text(delay)} (attempt {failures})")
            if self._stop.wait(delay):
                return

    def _open_timeout(self, last_frame: float) -> float:
        if self.reconnect_for is None:
            return self.open_timeout
        left = self.reconnect_for - (time.monotonic() - last_frame)
        return min(self.open_timeout, max(left, MIN_OPEN_TIMEOUT_S))

    def _open(self, open_timeout: float) -> av.container.InputContainer:
        scheme = urlsplit(self.spec.target).scheme.lower() if self.spec.kind == "url" else ""
        return av.open(
            self.spec.target,
            format="v4l2" if self.spec.kind == "webcam" else None,
            options=protocol_options(scheme, self.read_timeout),
            timeout=(open_timeout, self.read_timeout),
        )

    def _step(self) -> float:
        """A frame's duration, for a frame whose timestamp says nothing useful."""
        return 1.0 / (self.fps or DEFAULT_FPS)

    def _bgr(self, frame: av.VideoFrame) -> np.ndarray:
        width, height = frame.width, frame.height
        scale = min(1.0, self.max_size[0] / width, self.max_size[1] / height)
        if scale < 1:  # scaled while converting: a 4K camera's frame never exists in memory as BGR
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            frame = frame.reformat(width=width, height=height, format="bgr24", interpolation="AREA")
        return frame.to_ndarray(format="bgr24")

    def _put(self, time_s: float, wall: float, bgr: np.ndarray) -> bool:
        """Buffers a frame that has just arrived; False once closed."""
        with self._cond:
            if self.spec.kind == "file" and not self.realtime:
                while len(self._buffer) >= self.buffer_frames and not self._stop.is_set():
                    self._cond.wait()
            elif len(self._buffer) >= self.buffer_frames:
                self._buffer.popleft()
                self._dropped += 1
            if self._stop.is_set():
                return False
            now = time.monotonic()
            self._arrivals.append(now)
            while now - self._arrivals[0] > FPS_WINDOW_S:
                self._arrivals.popleft()
            self._buffer.append(Frame(self._received, time_s, wall, bgr))
            self._received += 1
            self._cond.notify_all()
            return True


def protocol_options(scheme: str, read_timeout: float) -> dict[str, str]:
    """FFmpeg options for opening a URL of `scheme` (none for a file or a camera).

    RTSP over TCP: RTP over UDP is what RTSP does by default, and it loses packets, or all of them
    through NAT and firewalls. The protocols' own timeouts (microseconds) end a connect or a read that
    hears nothing with a reason ("Connection timed out") where PyAV's would say "Immediate exit requested";
    UDP's `timeout` ends its reads with a bare "Input/output error", so UDP is left to PyAV's.
    """
    microseconds = str(round(read_timeout * 1e6))
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": "tcp", "timeout": microseconds}
    if scheme in ("tcp", "http", "https"):
        return {"rw_timeout": microseconds}
    if scheme == "udp":
        # A burst that overfills the receive buffer costs the packets lost, not the connection.
        return {"overrun_nonfatal": "1"}
    return {}


def _decoded(packet: av.Packet) -> list[av.VideoFrame]:
    """A live packet's frames; none for a damaged one, which on a live source is a glitch to skip
    (the decoder conceals what follows), not a reason to connect again."""
    try:
        return packet.decode()
    except av.InvalidDataError:
        return []


class _NoVideo(Exception):
    """A live source that opened with no video stream."""


class _Timeline:
    """`Frame.time_s` from a source's timestamps: seconds since the first frame, strictly increasing.

    After `restart()` (a new connection) the next frame continues from the last one's time plus the
    wall-clock gap between them. A frame without a timestamp, or one that goes back (an encoder that
    restarted without the connection noticing, a wrapped clock), follows the last by `step` and starts
    the count again from its own timestamp. `rate()` is the frame rate measured since the restart, for a
    stream that does not state one.
    """

    def __init__(self) -> None:
        self.origin: tuple[float, float] | None = None  # (timestamp, time_s) of the frame the count starts from
        self.last: tuple[float, float] | None = None  # (time_s, wall time) of the last frame
        self.run: tuple[float, int] | None = None  # (time_s, frames since) of the first frame since the restart
        self.gap = False  # whether the next frame is the first of a new connection, after another's

    def restart(self) -> None:
        self.origin = self.run = None
        self.gap = self.last is not None

    def rate(self) -> float | None:
        if self.run is None or self.last is None or self.last[0] <= self.run[0]:
            return None
        return (self.run[1] - 1) / (self.last[0] - self.run[0])

    def time_s(self, timestamp: float | None, wall: float, step: float) -> float:
        counted = None if self.origin is None or timestamp is None else self.origin[1] + timestamp - self.origin[0]
        if self.last is None:
            time_s = 0.0
        elif self.gap:
            time_s = self.last[0] + max(wall - self.last[1], step)
        elif counted is not None and counted > self.last[0]:
            time_s = counted
        else:  # no timestamp, or one that goes back
            time_s = self.last[0] + step
        self.gap = False
        if timestamp is not None and time_s != counted:
            self.origin = (timestamp, time_s)
        self.last = (time_s, wall)
        self.run = (time_s, 1) if self.run is None else (self.run[0], self.run[1] + 1)
        return time_s
