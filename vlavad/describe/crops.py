"""Object crops for the describers that look at pixels (a VLM, the appearance classifier).

Crops are cut from the original frames in one streaming pass, padded with some context around the
box (it helps to tell riding from walking), enlarged around their centre when tiny, and kept
inside the frame.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from vlavad.core.records import VideoInfo
from vlavad.io.decoder import iter_frames


def crop_box(box: np.ndarray, frame_width: int, frame_height: int, margin: float, min_side: int) -> np.ndarray:
    """Integer crop windows (N, 4) x1, y1, x2, y2 for source-pixel boxes (N, 4).

    Each box grows by `margin` of its width/height on every side (context helps a VLM tell
    riding from walking), sides shorter than `min_side` grow around the centre, and the window
    is shifted, then clipped, to stay inside the frame.
    """
    box = np.asarray(box, dtype=np.float64).reshape(-1, 4)
    centre = (box[:, :2] + box[:, 2:]) / 2
    size = (box[:, 2:] - box[:, :2]) * (1 + 2 * margin)
    frame = np.array([frame_width, frame_height], dtype=np.float64)
    size = np.minimum(np.maximum(size, min_side), frame)
    low = np.clip(centre - size / 2, 0, frame - size)
    low = np.floor(low)
    high = np.minimum(np.ceil(low + size), frame)
    return np.concatenate([low, high], axis=1).astype(int)


def iter_crops(info: VideoInfo, asked: pd.DataFrame, margin: float, min_side: int) -> Iterator[tuple[int, np.ndarray]]:
    """(position in `asked`, RGB crop) in frame order, from one streaming pass over the video (or
    over the frames a live stream holds)."""
    windows = crop_box(asked[["x1", "y1", "x2", "y2"]].to_numpy(), info.width, info.height, margin, min_side)
    positions_by_frame = pd.Series(np.arange(len(asked))).groupby(asked["frame"].to_numpy()).agg(list).to_dict()
    last_frame = max(positions_by_frame, default=-1)
    frames = info.held_frames() if info.held_frames else iter_frames(info.path, fps_hint=info.fps, limits=info.limits)
    for frame_index, frame in frames:
        for position in positions_by_frame.get(frame_index, ()):
            x1, y1, x2, y2 = windows[position]
            yield position, np.ascontiguousarray(frame[y1:y2, x1:x2, ::-1])
        if frame_index >= last_frame:
            return  # the rest of the video has nothing to describe
