"""One frame by its index, by seeking rather than decoding from the start: what an event card or
the app's frame viewer shows."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import av
import numpy as np

from vlavad.core.limits import LIBRARY_LIMITS, VideoLimits
from vlavad.io import decoder  # called through its module: see vlavad.io.decoder
from vlavad.io.decoder import to_bgr
from vlavad.io.frame_folders import read_folder_frame
from vlavad.io.header import read_header


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
        return read_folder_frame(path, index, (header.width, header.height), header.fps, limits)
    stat = path.stat()
    table = _frame_table(path, stat.st_size, stat.st_mtime_ns, limits)
    if table is not None:
        if index >= len(table.pts):
            raise IndexError(f"Frame {index} is out of range for {path}")
        frame = _seek_frame(path, table, index, limits)
        if frame is not None:
            return frame
    # A stride of `index` still decodes every frame but converts only frames 0 and `index`.
    for found, frame in decoder.bgr_frames(path, max(index, 1), limits):
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
    which frame is which. Demuxing reads the file without decoding it, dozens of times faster
    than decoding; only the first frame is decoded, for its size."""
    pts, key_pts, key_seek, first, subject = [], [], [], None, str(path)
    with decoder.open_video(path, limits) as (container, stream):
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
    with decoder.open_video(path, limits) as (container, stream):
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
                        return to_bgr(frame, table.size)
                    if frame.pts is None or frame.pts > target:
                        return None
        except av.FFmpegError:
            return None
    return None
