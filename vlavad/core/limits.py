"""How large, long and fast a video may be before any work is done on it.

A few kilobytes of video can ask for an unbounded amount of work: a 6 KB clip of 2x2000-pixel
frames, three 16000x16000 PNG frames in 2 MB, ten seconds at 1000 frames a second. `VideoLimits`
names what `vlavad.io` accepts; every reading pass checks it, first against the container's
header (before anything is decoded) and again frame by frame while decoding, since a header can
lie. Each refusal is one line naming the value and the limit.

`LIBRARY_LIMITS`, what the library and the command line accept unless told otherwise, only keep
a crafted file from exhausting the machine: every real surveillance or phone video passes them.
`APP_LIMITS` are the web app's, for strangers' uploads. An operator changes any limit of either
with an environment variable (`from_environment`, `ENVIRONMENT`): one mechanism for the app and
the command line, each with defaults of its own.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from vlavad.core.errors import ConfigError, VideoError


class VideoLimitError(VideoError):
    """A video larger, longer or faster than the limits accept."""


@dataclass(frozen=True)
class VideoLimits:
    """What one video may be. The defaults are the library's (`LIBRARY_LIMITS`):

    - 8 to 16384 px a side: 16384 is the largest frame H.264, HEVC and AV1 encoders write; a
      side under 8 px holds no object a detector could find.
    - 64 megapixels a frame: an 8K frame is 33 MP; 64 MP is 192 MB as BGR, which one machine can
      hold a few of.
    - an aspect ratio up to 32:1: panoramas stay under 12:1.
    - 240 frames a second: what phones record at most in slow motion (a high-speed camera's
      files need `VLAVAD_MAX_FPS`).
    - 10 million frames and 24 hours: a day of video at 25 fps is 2.2 million frames; the frame
      cap is what bounds the work when a frame rate is high.

    `accepted_by` names who is speaking in the messages ("vlavad accepts at most ...").
    """

    min_side: int = 8
    max_side: int = 16384
    max_megapixels: float = 64.0
    max_aspect: float = 32.0
    max_fps: float = 240.0
    max_frames: int = 10_000_000
    max_duration_s: float = 24 * 3600.0
    accepted_by: str = "vlavad"

    def __post_init__(self) -> None:
        for name in ("min_side", "max_side", "max_megapixels", "max_aspect", "max_fps", "max_frames", "max_duration_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"Video limit {name} must be a positive number, not {value!r}")
        for name in ("min_side", "max_side", "max_frames"):
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(f"Video limit {name} must be a whole number, not {getattr(self, name)!r}")
        if self.min_side > self.max_side:
            raise ConfigError(f"Video limit min_side ({self.min_side}) is above max_side ({self.max_side})")
        if self.max_aspect < 1:
            raise ConfigError(f"Video limit max_aspect must be at least 1 (a square), not {self.max_aspect!r}")

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)

    def decoder_max_pixels(self) -> int:
        """The `max_pixels` option given to FFmpeg's decoders, so that a frame over the limit is
        refused before its buffer is allocated. FFmpeg counts a frame's width rounded up to its
        stride alignment (at most 64 px), so the margin lets every frame within the limit through;
        `check_size` refuses the few between."""
        return self.max_pixels + 64 * int(self.max_side)

    # --- checks: each raises VideoLimitError in one line, naming the value and the limit ----------

    def check_size(self, subject: str, width: int, height: int) -> None:
        """`subject` ("clip.mp4", "frame 12 of clip.mp4") is `width` x `height` pixels."""
        sides = (int(width), int(height))
        if min(sides) < self.min_side or max(sides) > self.max_side or max(sides) > self.max_aspect * min(sides):
            raise VideoLimitError(
                f"{subject} is {width}x{height} pixels; {self.accepted_by} accepts {self.min_side}–{self.max_side} px a side "
                f"and an aspect ratio up to {self.max_aspect:g}:1"
            )
        if width * height > self.max_pixels:
            raise VideoLimitError(
                f"{subject} is {width}x{height} pixels ({width * height / 1e6:.1f} MP); "
                f"{self.accepted_by} accepts at most {self.max_megapixels:g} MP a frame"
            )

    def check_fps(self, subject: str, fps: float) -> None:
        if fps > self.max_fps:
            raise VideoLimitError(f"{subject} plays at {fps:.4g} frames/s; {self.accepted_by} accepts at most {self.max_fps:g}")

    def check_frames(self, subject: str, frames: int, how: str = "") -> None:
        """`how`: how the count was found when it is not exact ("about", with its reason after)."""
        if frames > self.max_frames:
            raise VideoLimitError(f"{subject} has {how}{frames:,} frames; {self.accepted_by} accepts at most {self.max_frames:,}")

    def check_duration(self, subject: str, seconds: float) -> None:
        if seconds > self.max_duration_s:
            raise VideoLimitError(
                f"{subject} lasts {duration_text(seconds)}; {self.accepted_by} accepts at most {duration_text(self.max_duration_s)}"
            )

    def check_frame(self, subject: str, index: int, elapsed_s: float) -> None:
        """While decoding: frame `index`, shown `elapsed_s` after the first, is within the frame
        count and the duration. Called for every frame, so the first one past stops the pass."""
        if index >= self.max_frames:
            raise VideoLimitError(f"{subject} has more than {self.max_frames:,} frames; {self.accepted_by} accepts at most {self.max_frames:,}")
        if elapsed_s > self.max_duration_s:
            raise VideoLimitError(
                f"{subject} lasts over {duration_text(self.max_duration_s)} (frame {index} is at {duration_text(elapsed_s)}); "
                f"{self.accepted_by} accepts at most {duration_text(self.max_duration_s)}"
            )


LIBRARY_LIMITS = VideoLimits()
# Strangers' uploads: 32–4096 px a side, 9 MP (4096x2160, the widest 4K), 8:1, 120 fps, and
# 18,000 frames in at most 10 minutes (10 minutes at 30 fps, 5 at 60): the frame count is what
# bounds the work whatever the rate.
APP_LIMITS = VideoLimits(32, 4096, 9.0, 8.0, 120.0, 18_000, 600.0, "the app")

ENVIRONMENT = {
    "min_side": "VLAVAD_MIN_SIDE",
    "max_side": "VLAVAD_MAX_SIDE",
    "max_megapixels": "VLAVAD_MAX_MEGAPIXELS",
    "max_aspect": "VLAVAD_MAX_ASPECT",
    "max_fps": "VLAVAD_MAX_FPS",
    "max_frames": "VLAVAD_MAX_FRAMES",
    "max_duration_s": "VLAVAD_MAX_DURATION_S",
}
"""The environment variable that sets each limit, for the app and the command line alike."""


def from_environment(defaults: VideoLimits, environ: Mapping[str, str] | None = None) -> VideoLimits:
    """`defaults`, with each limit an operator set in the environment; a value that bounds
    nothing (not a number, 0, negative, NaN, infinite, a fraction of a pixel) is one line naming
    its variable."""
    environ = os.environ if environ is None else environ
    changes = {}
    for name, variable in ENVIRONMENT.items():
        if variable not in environ:
            continue
        try:
            value = float(environ[variable])
        except ValueError:
            raise ConfigError(f"{variable} must be a number, not {environ[variable]!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{variable} must be a positive number, not {environ[variable]!r}")
        if isinstance(getattr(defaults, name), int):
            if value != int(value):
                raise ConfigError(f"{variable} must be a whole number, not {environ[variable]!r}")
            value = int(value)
        changes[name] = value
    return dataclasses.replace(defaults, **changes)


def duration_text(seconds: float) -> str:
    """0.04 s, 2.5 s, 11.7 min, 24 h: a duration in the unit that reads best."""
    if seconds < 1:
        return f"{seconds:.2g} s"
    unit, size = ("h", 3600.0) if seconds >= 7200 else ("min", 60.0) if seconds >= 120 else ("s", 1.0)
    return f"{seconds / size:.1f}".removesuffix(".0") + f" {unit}"
