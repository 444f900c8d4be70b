"""The frames the detection and tracking pass reads: grey (and colour when asked for) at a
working size, from the frames the video's probe kept where it kept them, else decoded afresh;
the same pixels either way. `WorkingFrames` is the tracking pass's one way in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vlavad.core.records import VideoInfo
from vlavad.io import decoder  # called through its module: see vlavad.io.decoder
from vlavad.io.decoder import at_size, grey_at, shrinks, working_size
from vlavad.io.frame_folders import iter_folder
from vlavad.io.kept_frames import BACKGROUND_FRAMES, forget, kept_for


@dataclass(frozen=True)
class WorkingFrames:
    """A video as the detection and tracking pass reads it: every frame scaled to one working
    size, grey, and in colour too only for a detector that looks at colour. Whether the frames
    come from what the video's probe kept or from a decoding pass of their own is this module's
    business: the same pixels either way."""

    info: VideoInfo
    size: tuple[int, int]  # (width, height) every frame is read at
    colour: bool = True

    @classmethod
    def at_height(cls, info: VideoInfo, height: int, colour: bool = True) -> WorkingFrames:
        """The frames of `info` scaled to `height`, the aspect kept."""
        return cls(info, working_size(info.width, info.height, height), colour)

    def background(self) -> Iterator[np.ndarray]:
        """Grey frames spread evenly over the whole video, from which a detector models its
        background before the first frame is detected (`background_samples`)."""
        return background_samples(self.info, self.size)

    def frames(self, stride: int = 1) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """`(index, grey, BGR or None)` for every `stride`-th frame (`iter_working_frames`)."""
        return iter_working_frames(self.info, self.size, stride=stride, colour=self.colour)


def forget_frames(info: VideoInfo) -> None:
    """Lets go of what the probe of `info`'s file kept: a caller done with its frames frees the
    memory; a later pass decodes them again."""
    forget(Path(info.path))


def iter_working_frames(
    info: VideoInfo, size: tuple[int, int], stride: int = 1, colour: bool = True
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """`(index, grey, BGR or None)` at the working `size` for every `stride`-th frame: what the
    detection and tracking pass reads. Grey comes straight from the luminance plane; the colour
    conversion, the costly part, happens only when `colour` is asked for."""
    path = Path(info.path)
    if path.is_dir():
        for index, frame in iter_folder(path, stride, info.limits, info.fps):
            small = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            yield index, cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), small if colour else None
        return
    kept = kept_for(path)
    clip = kept.whole_clip() if kept and not colour else None
    kept_size = clip[0][1].shape[::-1] if clip else None
    if kept_size == size or (kept_size == (info.width, info.height) and not shrinks(size, info.width, info.height)):
        # The probe kept every grey frame, either at this size or at full size, which
        # `grey_at` would resize with OpenCV just so.
        for index, grey in clip[::stride]:
            yield index, at_size(grey, size), None
        return
    for index, frame in decoder.decode(path, info.limits, info.fps):
        if index % stride:
            continue
        grey = grey_at(frame, size)
        bgr = None
        if colour:
            bgr = frame.to_ndarray(format="bgr24")
            bgr = at_size(bgr, size)
        yield index, grey, bgr


def background_samples(info: VideoInfo, size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Grey frames at `size`, every (frame count // BACKGROUND_FRAMES)-th, from the video's probe
    when it kept them (else from a decoding pass of its own)."""
    step = max(1, info.frame_count // BACKGROUND_FRAMES)
    kept = kept_for(Path(info.path))
    frames = kept.samples(step) if kept else []
    if frames and frames[0].shape[0] >= size[1]:  # never upscaled
        return (at_size(frame, size) for frame in frames)
    return (grey for _, grey, _ in iter_working_frames(info, size, stride=step))
