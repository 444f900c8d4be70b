"""The grey frames a probe keeps, so that the detection pass need not decode the video again.

`probe` decodes every frame anyway (to count them), so it keeps what the detection pass will
need: grey frames spread over the whole clip (a background model needs them before detection
starts) and, for a clip that fits `CLIP_BUDGET`, every grey frame, which spares the detection
pass (and a fit's second, faster-played pass) a decoding pass of their own. What is kept is
process-wide, keyed on the file's version, and bounded by `KEPT_BUDGET` over all videos.
`vlavad.io.working_frames` reads it and lets it go; nothing else needs to know it exists.
"""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np

from vlavad.io.decoder import grey_at, working_size

BACKGROUND_FRAMES = 50  # grey frames spread over a video, from which detectors model its background
KEPT_HEIGHT = 240  # frames are kept at most this high: the default working height
CLIP_BUDGET = 64 * 2**20  # a clip whose grey frames fit this is kept whole (740 frames at 360x240)
# Bytes of kept frames over all videos: the whole of Ped2 (training and test, about 390 MB), so that a
# benchmark decodes each video once.
KEPT_BUDGET = 512 * 2**20
_KEPT: dict[tuple, KeptFrames] = {}
_KEPT_LOCK = threading.Lock()  # the web app probes for several visitors at once


class KeptFrames:
    """The grey frames a probe keeps: all of them while they fit CLIP_BUDGET; past that every
    `step`-th, the step doubling (and every other kept frame dropped) whenever twice `count`
    are kept, so they stay evenly spread even when the container did not say how many it holds.
    Kept frames are read-only: the detection passes of several runs may share them."""

    def __init__(self, count: int, step: int = 1, whole: bool = True):
        self.count, self.step, self.kept, self.bytes = count, step, [], 0
        self.whole = whole  # every frame is kept, at index == position

    @classmethod
    def for_clip(cls, first: av.VideoFrame, expected_frames: int) -> KeptFrames:
        """Ready to keep the frames of a clip whose container says it holds `expected_frames`
        (0: unknown). One it says is over budget keeps only samples from the start: keeping
        whole frames only to drop them grows the process by memory it rarely gets back."""
        kept_width, kept_height = working_size(first.width, first.height, min(first.height, KEPT_HEIGHT))
        fits = expected_frames * kept_width * kept_height <= CLIP_BUDGET
        return cls(BACKGROUND_FRAMES, step=max(1, expected_frames // BACKGROUND_FRAMES), whole=fits)

    def offer(self, index: int, frame: av.VideoFrame) -> None:
        if not self.whole and index % self.step:
            return
        grey = grey_at(frame, working_size(frame.width, frame.height, min(frame.height, KEPT_HEIGHT)))
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


def keep(path: Path, size: int, mtime_ns: int, kept: KeptFrames) -> None:
    """Remembers what the probe of this version of the file kept, within KEPT_BUDGET: over it,
    the oldest whole clips first fall back to their background samples (a decoding pass costs
    less than the background's own pass), then the oldest samples go."""
    with _KEPT_LOCK:
        _KEPT[(path, size, mtime_ns)] = kept
        for older in list(_KEPT.values()):
            if sum(k.bytes for k in _KEPT.values()) <= KEPT_BUDGET:
                break
            older.keep_samples_only()
        while sum(k.bytes for k in _KEPT.values()) > KEPT_BUDGET:
            _KEPT.pop(next(iter(_KEPT)))


def forget(path: Path) -> None:
    """Drops what the probes of this file (any version) kept: for a caller done with its frames,
    such as a fit once it has read its normal videos, before the S3M's training, when a
    benchmark's memory peaks."""
    with _KEPT_LOCK:
        for key in [key for key in _KEPT if key[0] == path]:
            del _KEPT[key]


def kept_for(path: Path) -> KeptFrames | None:
    """What the probe of this version of the file kept, if it is still in memory."""
    if not path.is_file():
        return None
    stat = path.stat()
    return _KEPT.get((path, stat.st_size, stat.st_mtime_ns))
